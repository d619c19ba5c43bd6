"""behave hooks: pick the backend from the environment once, collect every contract's
result, and print/write the report at the end (behave's exit code says pass/fail)."""

import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from logslo import report, settings  # noqa: E402


def before_all(context):
    context.slo_results = []
    context.slo_errors = []
    try:
        context.slo = settings.from_env()
    except settings.SettingsError as err:
        print(f"SLO runner: {err}", file=sys.stderr)
        context.slo = None
        context.slo_errors.append(str(err))
        return
    print(f"SLO contracts evaluated at {context.slo.at:g} against {context.slo.backend.describe()}")


def before_scenario(context, scenario):
    if context.slo is None:
        scenario.skip("no backend configured")


def after_step(context, step):
    # A backend error (Loki down, bad answer) is not a violation but the run must fail.
    failed = getattr(step.status, "name", str(step.status)) in ("failed", "error")
    if failed and step.exception is not None and not isinstance(step.exception, AssertionError):
        message = f"{step.name}: {type(step.exception).__name__}: {step.exception}"
        context.slo_errors.append(message)
        if os.environ.get("SLO_DEBUG"):
            traceback.print_exception(step.exception)


def after_all(context):
    results = context.slo_results
    source = context.slo.backend.describe() if context.slo else "nothing (not configured)"
    at = context.slo.at if context.slo else 0.0
    # behave captures hook output; the report must reach the real stdout whatever the flags.
    out = sys.__stdout__
    print("\n" + report.human(results, source, at), file=out)
    for error in context.slo_errors:
        print(f"ERROR (contract not judged): {error}", file=out)
    path = context.slo.report_path if context.slo else os.environ.get("SLO_REPORT")
    if path:
        report.write_json(path, report.as_json(results, source, at, context.slo_errors))
        print(f"JSON report written to {path}", file=out)
    if context.slo is None:
        # No scenario ran; make sure the exit code still says "not OK".
        sys.exit(2)
