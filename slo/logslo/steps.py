"""Plain-language steps for the SLO contracts; each one asks logslo.contracts a question.

The steps are collected here and added to behave's step registry by `register()`:
`torchfaas-slo` does it for every run (see runner.py), so a features folder needs no
steps/ of its own. To run plain `behave` instead, a one-line `steps/slo.py` is enough:
`from logslo.steps import register; register()`.
"""

import re

from . import contracts


def step_table():
    """A table of (keyword, step text, function), in definition order, and the given/when/
    then decorators that fill it (the runner registers a table's steps with behave)."""
    table = []

    def step(keyword):
        def decorator(text):
            def add(func):
                table.append((keyword, text, func))
                return func
            return add
        return decorator

    return table, step("given"), step("when"), step("then")


STEPS, given, when, then = step_table()


def register(registry=None) -> None:
    """Add every step to `registry` (by default the one behave's Runner looks steps up in,
    which is also the one `from behave import given` adds to). Adding twice is harmless."""
    if registry is None:
        from behave.runner import the_step_registry as registry
    for keyword, text, func in STEPS:
        registry.add_step_definition(keyword, text, func)

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def parse_window(text: str) -> int:
    """'1 hour', '30 minutes', '24 hours', '7 days' -> seconds."""
    match = re.fullmatch(r"\s*(\d+)\s+(second|minute|hour|day)s?\s*", text)
    if not match:
        raise ValueError(f"cannot read the time window {text!r} (say e.g. '1 hour' or '30 minutes')")
    return int(match.group(1)) * _UNITS[match.group(2)]


def parse_percent(text: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*%\s*", text)
    if not match:
        raise ValueError(f"cannot read the percentage {text!r} (say e.g. '5%')")
    return float(match.group(1)) / 100


def judge(context, results):
    """Record for the report, then fail the step naming each contract missed and by how much."""
    results = results if isinstance(results, list) else [results]
    context.slo_results.extend(results)
    failed = [r for r in results if not r.passed]
    assert not failed, "SLO violated:\n" + "\n".join(f"  {r.contract}: {r.measured_text()}, {r.miss}" for r in failed)


def _ask(context):
    return context.slo.backend, context.function, context.slo.at, context.window_s


@given('the function "{function}"')
def step_function(context, function):
    context.function = function


# The function the run was started for (SLO_FUNCTION; `make slo|compare FUNCTION=<name>`
# sets it): the template's skeleton contracts say this, so a function made with
# `faas-cli new` is judged under its own name before anyone edits them.
@given("the function being checked")
def step_function_being_checked(context):
    if not context.slo.function:
        raise ValueError("SLO_FUNCTION names no function: run `make slo FUNCTION=<name>` (or set SLO_FUNCTION)")
    context.function = context.slo.function


@when("I look at the requests of the last {window}")
@when("I look at the successful predictions of the last {window}")
def step_window(context, window):
    context.window_s = parse_window(window)


# the latency contract's wording; objectives.py reads a function's p99 bound (the load
# tools' default SLO) with this same pattern, so the two cannot drift apart
LATENCY_STEP = "for every model version, {pct:g}% of requests took at most {bound:g} ms"


@then(LATENCY_STEP)
def step_latency(context, pct, bound):
    judge(context, contracts.latency_per_version(*_ask(context), phi=pct / 100, bound_ms=bound))


@then("for every model version, at most {pct:g}% of requests failed with a server error (5xx)")
def step_errors(context, pct):
    judge(context, contracts.error_ratio_per_version(*_ask(context), bound_ratio=pct / 100))


@then("the function was called at least {count:d} times")
def step_function_called(context, count):
    judge(context, contracts.function_traffic(*_ask(context), at_least=count))


@then('model version "{version}" is still called')
def step_still_called(context, version):
    judge(context, contracts.version_traffic(*_ask(context), version, at_least=1))


@then('model version "{version}" was called at least {count:d} times')
def step_called_at_least(context, version, count):
    judge(context, contracts.version_traffic(*_ask(context), version, at_least=count))


@then('model version "{version}" is no longer called')
def step_no_longer_called(context, version):
    judge(context, contracts.version_traffic(*_ask(context), version, at_most=0))


@then("no class is the top prediction of more than {pct:g}% of them")
def step_dominant(context, pct):
    judge(context, contracts.dominant_class(*_ask(context), bound_share=pct / 100))


@then("each of these classes keeps its share of the top predictions")
def step_bands(context):
    bands = {row["class"]: (parse_percent(row["at least"]), parse_percent(row["at most"])) for row in context.table}
    judge(context, contracts.class_bands(*_ask(context), bands=bands))


@then("compared with the same window {offset} earlier, the class mix shifted by a PSI of at most {bound:g}")
def step_shift(context, offset, bound):
    judge(context, contracts.class_shift(*_ask(context), baseline_offset_s=parse_window(offset), bound_psi=bound))


@then('compared with the same window {offset} earlier, the distribution of "{field}" over the bins '
      '{edges} shifted by a PSI of at most {bound:g}')
def step_value_shift(context, offset, field, edges, bound):
    """A regression's drift: `edges` are the bins' boundaries, e.g. "100, 150, 200, 250"."""
    try:
        values = [float(e) for e in edges.replace(" and ", ",").split(",") if e.strip()]
    except ValueError:
        raise ValueError(f"cannot read the bins {edges!r} (say e.g. '100, 150, 200, 250')") from None
    judge(context, contracts.value_shift(*_ask(context), baseline_offset_s=parse_window(offset),
                                         field=field, edges=values, bound_psi=bound))
