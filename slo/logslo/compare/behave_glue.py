"""`torchfaas-slo compare` under behave: the hooks (settings once, the verdict and the
reports at the end) and the comparison steps, which build a `Comparison` and record each
contract's judgement.
"""

from __future__ import annotations

import sys
from types import SimpleNamespace

from .. import report, settings, steps
from ..contracts import window_name
from ..hooks import Hooks
from ..settings import CompareSettings
from ..steps import parse_percent, parse_window, step_table
from ..verdicts import HOLD
from . import paths
from .judgements import (
    DEFAULT_CONFIDENCE,
    Judgement,
    class_mix,
    enough_requests,
    latency_quantile,
    latency_shift,
    status_ratio,
    value_mean,
)
from .reports import document, write_reports
from .sampling import Comparison
from .text import human, interval_text, value_text

# -- behave hooks -----------------------------------------------------------------------

class CompareHooks(Hooks):
    """The check's hooks (before_scenario, after_step), with their own before_all (the two
    versions from the settings) and after_all (the verdict and the three reports)."""

    def before_all(self, context):
        context.slo_results, context.slo_errors = [], []
        # one object made at the root level: behave drops what a step sets on context
        # when its scenario ends, the comparison must outlive the scenarios
        context.state = SimpleNamespace(comparison=None, window=None, problem=None, confidence=DEFAULT_CONFIDENCE,
                                        reading=None)
        context.slo = self._settings(context)
        if context.slo is None:
            return
        wanted = context.slo.compare
        print(f"comparing {wanted.candidate} (candidate) with {wanted.baseline} (baseline) at "
              f"{report.evaluation_time(context.slo.at)} against {context.state.reading.describe()}")

    def _settings(self, context):
        """The settings and the path the versions are read by (paths.choose): a log file read
        as aggregates is streamed, never held whole; a line path over its budget refuses here."""
        try:
            slo = self.settings or settings.from_env()
            context.state.reading = paths.choose(slo)
        except settings.SettingsError as err:
            print(f"SLO runner: {err}", file=sys.stderr)
            context.slo_errors.append(str(err))
            return None
        return slo

    def after_all(self, context):
        slo = context.slo
        wanted = slo.compare if slo else self.settings.compare if self.settings else CompareSettings()
        doc = document(context.state.comparison, context.slo_results, context.slo_errors,
                       context.state.reading.describe() if slo else "nothing (not configured)", slo.at if slo else 0.0,
                       wanted.baseline, wanted.candidate, context.state.window, wanted.context)
        if wanted.review_seconds:
            doc["review_seconds"] = wanted.review_seconds
        out = sys.__stdout__
        print("\n" + human(doc), file=out)
        if doc.get("timeline") is not None and slo and slo.slo_p99_ms:
            doc["timeline"]["slo_p99_ms"] = slo.slo_p99_ms
        for path in write_reports(wanted.report_dir, doc):
            print(f"report written to {path}", file=out)


# -- behave steps -----------------------------------------------------------------------

STEPS, given, when, then = step_table()


def register(registry=None) -> None:
    """The SLO steps (Given the function ...) and the comparison steps."""
    if registry is None:
        from behave.runner import the_step_registry as registry
    steps.register(registry)
    for keyword, text, func in STEPS:
        registry.add_step_definition(keyword, text, func)


def _comparison(context) -> Comparison:
    if context.state.comparison is None:
        raise RuntimeError('say "When I compare the requests of the last <window>" first')
    return context.state.comparison


def _judge(context, judgement: Judgement):
    context.slo_results.append(judgement)
    # behave's own pass/fail follows the verdict; the command's exit code comes from report.json
    assert judgement.verdict != HOLD, f"comparison contract broken: {judgement.contract}: " \
        f"{interval_text(judgement.as_json())}, bound {value_text(judgement.bound, judgement.unit)}"


@given("a confidence level of {level}")
def step_confidence(context, level):
    value = parse_percent(level)
    if not 0.5 <= value < 1:
        raise ValueError(f"a confidence level is between 50% and 100%, got {level!r}")
    context.state.confidence = value


# A watch sees each version start: requests of its first seconds (a cold process, caches
# filling) are left out of every look. A fixed window (compare, review) judges what it is
# given: both sides of a review start together and warm alike.
WARMUP_STEP = "a watch leaves out the first {seconds:d} seconds of each version (its warm-up)"


@given(WARMUP_STEP)
def step_warmup(context, seconds):
    if seconds < 0:
        raise ValueError(f"a warm-up is 0 seconds or more, got {seconds}")


@when("I compare the requests of the last {window}")
def step_compare(context, window):
    window_s = parse_window(window)
    wanted = context.slo.compare
    if not wanted.baseline or not wanted.candidate:
        raise settings.SettingsError("set COMPARE_BASELINE and COMPARE_CANDIDATE (the two model versions)")
    state = context.state
    if state.window != window_s:
        state.comparison, state.window, state.problem = None, window_s, None
        try:
            reading = state.reading
            comparison = Comparison(reading.backend, context.function, context.slo.at, window_s,
                                    wanted.baseline, wanted.candidate, wanted.process_sd, reading.path,
                                    wanted.lines_max, wanted.memory_mb, reading.why)
        except Exception as err:  # Loki failing: every scenario reports it, none asks again
            state.problem = f"{type(err).__name__}: {err}"
            raise
        silent = [v for v in comparison.versions if not comparison.samples[v].requests]
        if silent:  # a misspelt version or a window that misses the run: nothing to compare
            state.problem = (f"no request of model version {', '.join(silent)} in the {window_name(window_s)} "
                             f"up to {report.evaluation_time(context.slo.at)}")
        else:
            state.comparison = comparison
    if state.problem:
        raise LookupError(state.problem)


@then("each version served at least {count:d} requests")
def step_enough(context, count):
    _judge(context, enough_requests(_comparison(context), count))


@then("the candidate's latency is at most {bound:g}% above the baseline's")
def step_latency_shift(context, bound):
    _judge(context, latency_shift(_comparison(context), bound, context.state.confidence))


@then("the candidate's p{pct:g} latency is at most {bound:g}% above the baseline's")
def step_latency_quantile(context, pct, bound):
    _judge(context, latency_quantile(_comparison(context), pct / 100, bound, context.state.confidence))


@then("the candidate's server-error ratio (5xx) is at most {bound:g} points above the baseline's")
@then("the candidate's server-error ratio (5xx) is at most {bound:g} point above the baseline's")
def step_5xx(context, bound):
    _judge(context, status_ratio(_comparison(context), "5xx", bound, context.state.confidence))


@then("the candidate's client-error ratio (4xx) is at most {bound:g} points above the baseline's")
@then("the candidate's client-error ratio (4xx) is at most {bound:g} point above the baseline's")
def step_4xx(context, bound):
    _judge(context, status_ratio(_comparison(context), "4xx", bound, context.state.confidence))


@then("the candidate's class mix differs from the baseline's in at most {bound:g}% of answers")
def step_mix(context, bound):
    _judge(context, class_mix(_comparison(context), bound, context.state.confidence))


@then("the candidate's mean \"{name}\" is at most {bound:g}% away from the baseline's")
def step_value_mean(context, name, bound):
    _judge(context, value_mean(_comparison(context), name, bound, context.state.confidence))
