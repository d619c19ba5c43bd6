"""logslo: SLO contracts over the torchfaas JSON request log, in LogQL.

The `torchfaas-slo` command (cli.py) runs Gherkin contracts with behave (runner.py),
using this package's steps (steps.py) and hooks (hooks.py). Underneath: logql (query
objects), queries (the contracts' LogQL), file_backend / loki_backend (the two ways of
answering them), contracts (turning answers into pass/fail), psi, report, settings
(environment). Needs only the standard library and behave.
"""

__version__ = "0.1.0"
