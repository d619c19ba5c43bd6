"""behave hooks: take the tool's settings (read once, settings.py), collect every contract's
result, and print/write the report at the end (behave's exit code says pass/fail).

`torchfaas-slo` installs these itself (see runner.py); a features folder needs no
environment.py. To run plain `behave` instead, a one-line `environment.py` is enough:
`from logslo.hooks import *`.
"""

import os
import sys
import traceback

from . import report, settings

__all__ = ["before_all", "before_scenario", "after_step", "after_all"]


class Hooks:
    """The four hooks, given the run's `Settings` (read from os.environ when the run
    starts if none is given: a plain-behave environment.py)."""

    def __init__(self, settings_: settings.Settings | None = None):
        self.settings = settings_

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in __all__}

    def before_all(self, context):
        context.slo_results = []
        context.slo_errors = []
        context.slo = self._settings(context)
        if context.slo is None:
            return
        print(f"SLO contracts evaluated at {report.evaluation_time(context.slo.at)} "
              f"against {context.slo.backend.describe()}")

    def before_scenario(self, context, scenario):
        if context.slo is None:
            scenario.skip("no backend configured")

    def after_step(self, context, step):
        # A backend error (Loki down, bad answer) is not a violation but the run must fail.
        failed = getattr(step.status, "name", str(step.status)) in ("failed", "error")
        if failed and step.exception is not None and not isinstance(step.exception, AssertionError):
            message = f"{step.name}: {type(step.exception).__name__}: {step.exception}"
            context.slo_errors.append(message)
            if context.slo is not None and context.slo.debug:
                traceback.print_exception(step.exception)

    def after_all(self, context):
        results = context.slo_results
        source = context.slo.backend.describe() if context.slo else "nothing (not configured)"
        at = context.slo.at if context.slo else 0.0
        # behave captures hook output; the report must reach the real stdout whatever the flags.
        out = sys.__stdout__
        print("\n" + report.human(results, source, at), file=out)
        for error in context.slo_errors:
            print(f"ERROR (contract not judged): {error}", file=out)
        path = context.slo.report_path if context.slo else None
        if path:
            report.write_json(path, report.as_json(results, source, at, context.slo_errors))
            print(f"JSON report written to {path}", file=out)
        if context.slo is not None and context.slo.html_path:
            self._write_html(context, context.slo.html_path, results, source, at, out)
        if context.slo is None:
            # No scenario ran; make sure the exit code still says "not OK".
            sys.exit(2)

    def _write_html(self, context, page, results, source, at, out):
        """The HTML report (SLO_HTML): verdicts and charts over the last SLO_HTML_WINDOW
        seconds (default 1 hour) of the function the contracts name."""
        from . import html, timeline
        document = report.as_json(results, source, at, context.slo_errors)
        function = getattr(context, "function", None) or context.slo.chart_function
        try:
            window = context.slo.html_window_s
            document["timeline"] = timeline.slo_charts(context.slo.backend, function, at, window, results)
        except Exception as err:  # the charts are a view: the verdicts above still stand
            document["errors"] = document["errors"] + [f"charts not drawn: {type(err).__name__}: {err}"]
        os.makedirs(os.path.dirname(os.path.abspath(page)), exist_ok=True)
        with open(page, "w", encoding="utf-8") as handle:
            handle.write(html.slo_page(document))
        print(f"HTML report written to {page}", file=out)

    def _settings(self, context):
        """The run's settings with a usable source, or None (the error recorded, printed)."""
        try:
            slo = self.settings or settings.from_env()
            slo.backend  # noqa: B018 -- built now: a missing source is reported before any scenario
        except settings.SettingsError as err:
            print(f"SLO runner: {err}", file=sys.stderr)
            context.slo_errors.append(str(err))
            return None
        return slo


# For a plain-behave environment.py (`from logslo.hooks import *`).
_default = Hooks()
before_all = _default.before_all
before_scenario = _default.before_scenario
after_step = _default.after_step
after_all = _default.after_all
