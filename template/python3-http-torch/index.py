"""Entry point the of-watchdog starts (fprocess="python index.py").

The runtime in ./torchfaas serves the handler in ./function over HTTP on
127.0.0.1:$PORT (default 5000, the watchdog's upstream_url).
"""
import sys

from torchfaas.server import main

if __name__ == "__main__":
    sys.exit(main())
