"""Entry point the of-watchdog starts (fprocess="python index.py").

The runtime in ./torchfaas serves the handler in ./function over HTTP on
127.0.0.1:$PORT (default 5000, the watchdog's upstream_url).
"""
import time

# first: the interpreter's own start-up ends here and the imports begin (model_loaded's
# interpreter_ms and imports_ms, torchfaas.startup)
ENTERED = time.time()

import sys  # noqa: E402

from torchfaas.server import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(ENTERED))
