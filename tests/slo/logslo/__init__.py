"""logslo: SLO contracts over the torchfaas JSON request log, in LogQL.

Modules: logql (query objects), queries (the contracts' LogQL), file_backend / loki_backend
(the two ways of answering them), contracts (turning answers into pass/fail), psi,
report, settings (environment).
"""
