"""`torchfaas-slo objective`: the p99 bound a function's latency contract promises, read from
its real .feature files with the step definition's own wording (the load tools' default SLO)."""
from pathlib import Path

import pytest

from logslo import cli, objectives, steps

REPO = Path(__file__).resolve().parents[2]
CLASSIFIER_SLO = REPO / "functions" / "classifier" / "slo"
DIABETES_SLO = REPO / "functions" / "diabetes" / "slo"


def test_each_function_promises_its_own_p99():
    assert objectives.latency_objective_ms(CLASSIFIER_SLO) == 250
    assert objectives.latency_objective_ms(DIABETES_SLO) == 50
    # a file as well as a folder, and where the bound was read
    assert objectives.latency_objective_ms(DIABETES_SLO / "latency.feature") == 50
    assert objectives.latency_bounds(CLASSIFIER_SLO) == [(250.0, f"{CLASSIFIER_SLO / 'latency.feature'}:11")]


def test_the_bound_is_read_with_the_step_definitions_pattern():
    # one wording: the step the checker runs is the one the objective is read with
    assert ("then", steps.LATENCY_STEP, steps.step_latency) in steps.STEPS
    assert "{bound:g} ms" in steps.LATENCY_STEP


def test_the_command_prints_the_number(capsys):
    assert cli.main(["objective", str(DIABETES_SLO)]) == 0
    assert capsys.readouterr().out == "50\n"
    assert cli.main(["objective", str(CLASSIFIER_SLO / "latency.feature"), "--where"]) == 0
    first, where = capsys.readouterr().out.splitlines()
    assert first == "250" and where.startswith("250\t") and where.endswith("latency.feature:11")


@pytest.mark.parametrize("features", [REPO / "functions" / "classifier" / "compare", DIABETES_SLO / "errors.feature"])
def test_no_latency_contract_is_a_clear_error(features, capsys):
    with pytest.raises(objectives.ObjectiveError, match="no latency contract"):
        objectives.latency_objective_ms(features)
    assert cli.main(["objective", str(features)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no latency contract" in err
    assert "99% of requests took at most <N> ms" in err  # says what it looked for


def test_a_missing_folder_is_an_error_not_a_default(tmp_path, capsys):
    assert cli.main(["objective", str(tmp_path / "nope")]) == 2
    assert "no features folder or file" in capsys.readouterr().err
    with pytest.raises(objectives.ObjectiveError, match="no .feature file to say"):
        objectives.latency_objective_ms(tmp_path)


def test_and_steps_outlines_other_percentiles_and_the_strictest_of_several(tmp_path):
    (tmp_path / "latency.feature").write_text("""Feature: fast
  Scenario: p95 and p99
    Given the function "f"
    When I look at the requests of the last 1 hour
    Then for every model version, 95% of requests took at most 20 ms
    And for every model version, 99% of requests took at most 80 ms

  Scenario Outline: per window
    Given the function "f"
    When I look at the requests of the last <window>
    Then for every model version, 99% of requests took at most <bound> ms

    Examples:
      | window    | bound |
      | 1 hour    | 120   |
      | 5 minutes | 60.5  |
""")
    assert [b for b, _ in objectives.latency_bounds(tmp_path)] == [80, 120, 60.5]
    assert objectives.latency_objective_ms(tmp_path) == 60.5  # the strictest p99 a contract holds
    assert objectives.latency_objective_ms(tmp_path, percent=95) == 20
