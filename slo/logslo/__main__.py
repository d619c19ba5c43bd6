"""`python -m logslo ...` is `torchfaas-slo ...`."""

import sys

from .cli import main

sys.exit(main())
