"""The SLO tool as a user installs it (`pip install ./slo`): the `torchfaas-slo` command's
flags and environment, a features folder with nothing but .feature files, the one-line
shims for plain behave, and a package that needs behave and nothing else."""

import ast
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import logslo
from logslo import cli
from test_slo_logql import T0
from test_slo_runner import FEATURES, REPO, features_dir, healthy_hour, run_slo, write_log

SLO = REPO / "slo"
CONTRACT = """Feature: errors
  Background:
    Given the function "classifier"
  Scenario: few 5xx
    When I look at the requests of the last 1 hour
    Then for every model version, at most 1% of requests failed with a server error (5xx)
"""


def test_flags_and_environment_give_the_same_report(fixture_log, answers, tmp_path):
    at = str(answers["instant_time"])
    by_env, by_flags = tmp_path / "env.json", tmp_path / "flags.json"
    code_env, out_env = run_slo({"LOG_FILE": fixture_log, "SLO_AT": at, "SLO_REPORT": str(by_env),
                                 "SLO_TAGS": "not @production-mix"})
    # a --log-file on the command line wins over a LOKI_URL in the environment
    code_flags, out_flags = run_slo({"LOKI_URL": "http://127.0.0.1:9"}, args=[
        "--log-file", fixture_log, "--at", at, "--report", str(by_flags), "--tags", "not @production-mix"])
    assert code_env == code_flags == 1, out_env + out_flags
    assert "1 of 7 SLO checks VIOLATED" in out_env and "1 of 7 SLO checks VIOLATED" in out_flags
    assert json.loads(by_env.read_text()) == json.loads(by_flags.read_text())


def test_slo_tags_in_the_environment_filter_scenarios(fixture_log, answers):
    code, out = run_slo({"LOG_FILE": fixture_log, "SLO_AT": str(answers["instant_time"]),
                         "SLO_TAGS": "not @production-mix and not @needs-history"})
    assert code == 1
    assert "1 of 6 SLO checks VIOLATED" in out and "class mix shift" not in out


def test_check_is_the_default_command(tmp_path):
    log = write_log(tmp_path, healthy_hour())
    features = features_dir(tmp_path, CONTRACT)
    assert sorted(p.name for p in features.iterdir()) == ["contract.feature"]  # no steps/, no environment.py
    code, out = run_slo({}, features=features, args=["--log-file", log, "--at", str(T0)])
    assert code == 0 and "all 1 SLO checks passed" in out, out
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOKI_", "SLO_", "LOG_FILE"))}
    env["PYTHONPATH"] = str(Path(logslo.__file__).parents[1])
    done = subprocess.run([sys.executable, "-m", "logslo", "check", str(features), "--log-file", log, "--at", str(T0)],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "all 1 SLO checks passed" in done.stdout, done.stdout + done.stderr


def test_plain_behave_with_one_line_shims(tmp_path):
    """Without the command: environment.py and a steps file of one line each."""
    log = write_log(tmp_path, healthy_hour(v1={0: {"status": 500}}))
    features = features_dir(tmp_path, CONTRACT)
    (features / "environment.py").write_text("from logslo.hooks import *\n")
    (features / "steps").mkdir()
    (features / "steps" / "slo.py").write_text("from logslo.steps import register; register()\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOKI_", "SLO_"))}
    env.update(LOG_FILE=log, SLO_AT=str(T0), PYTHONPATH=str(Path(logslo.__file__).parents[1]))
    done = subprocess.run([sys.executable, "-m", "behave", "-f", "plain", "--no-timings", str(features)],
                          env=env, capture_output=True, text=True, timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert "FAIL  5xx ratio of classifier model version v1, last 1h: 10% (bound: at most 1%)" in out, out
    # the command reads the same folder the same way (its own steps and hooks win)
    code, again = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=features)
    assert code != 0 and "FAIL  5xx ratio of classifier model version v1, last 1h: 10%" in again, again


def test_a_teams_own_steps_load_beside_the_packages(tmp_path):
    log = write_log(tmp_path, healthy_hour())
    features = features_dir(tmp_path, CONTRACT + "    And the on-call team is told\n")
    (features / "steps").mkdir()
    (features / "steps" / "team.py").write_text(
        "from behave import then\n\n@then('the on-call team is told')\ndef told(context):\n    print('TOLD')\n")
    code, out = run_slo({"LOG_FILE": log, "SLO_AT": str(T0)}, features=features)
    assert code == 0 and "all 1 SLO checks passed" in out and "TOLD" in out, out


def test_usage_errors_say_what_is_wrong(tmp_path, capsys):
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in ("--loki-url", "--log-file", "--at", "--report", "--tags", "LOKI_URL", "SLO_TAGS"):
        assert flag in text
    code, out = run_slo({"LOG_FILE": str(tmp_path / "x.jsonl")}, features=tmp_path / "nowhere")
    assert code == 2 and "no features folder or file" in out
    code, out = run_slo({}, args=["--log-file", "a", "--loki-url", "http://b"])  # argparse's own message
    assert code == 2 and "not allowed with argument" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out = run_slo({"LOG_FILE": write_log(tmp_path, healthy_hour())}, features=empty)
    assert code != 0 and "no .feature files" in out


def test_the_package_needs_behave_the_judges_statistics_and_the_gates_server_nothing_else():
    """behave (and its parse) for the contracts, numpy + scipy for the comparison's
    statistics, flask + waitress for the rollout controllers' gate: no torch. The SLO
    check itself never imports the statistics, nor the web server."""
    project = tomllib.loads((SLO / "pyproject.toml").read_text())["project"]
    assert [d.split(">")[0].split("=")[0].strip() for d in project["dependencies"]] == [
        "behave", "parse", "numpy", "scipy", "flask", "waitress"]
    assert project["scripts"] == {"torchfaas-slo": "logslo.cli:main"}
    imported = {}
    for path in (SLO / "logslo").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = {node.module.split(".")[0]}
            else:
                continue
            for name in names - set(sys.stdlib_module_names):
                imported.setdefault(name, set()).add(path.stem)
    # werkzeug comes with flask (the gate's HTTP errors)
    assert set(imported) == {"behave", "parse", "numpy", "scipy", "flask", "werkzeug", "waitress"}
    # the judges (from requests, from counts), the counts themselves, the calibration; html: none today
    assert imported["numpy"] | imported["scipy"] <= {"judge", "judge_binned", "binned", "html", "calibration"}
    assert imported["flask"] | imported["werkzeug"] | imported["waitress"] == {"gate"}
    done = subprocess.run([sys.executable, "-c", "import sys, logslo.cli, logslo.hooks, logslo.steps, "
                           "logslo.file_backend, logslo.loki_backend, logslo.html, logslo.compare.text; "
                           "print(sorted(m for m in ('numpy', 'scipy', 'flask', 'waitress') if m in sys.modules))"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(SLO)})
    assert done.stdout.strip() == "[]", done.stderr


def test_each_functions_contracts_live_in_its_own_folder():
    """functions/<name>/slo and functions/<name>/compare, for every function: the SLO tool's
    folder holds the tool only, so adding a function adds its contracts beside its handler."""
    assert FEATURES == REPO / "functions" / "classifier" / "slo"
    for function in sorted(p for p in (REPO / "functions").iterdir() if (p / "handler.py").is_file()):
        assert sorted(p.name for p in (function / "slo").iterdir()) == [
            "errors.feature", "latency.feature", "predictions.feature", "traffic.feature"], function.name
        assert [p.name for p in (function / "compare").iterdir()] == ["canary.feature"], function.name
    assert not (SLO / "features").exists() and not (SLO / "compare").exists()
    assert not (REPO / "tests" / "slo" / "features").exists() and not (REPO / "tests" / "slo" / "logslo").exists()


def _unreadable(tmp_path):
    path = tmp_path / "locked.jsonl"
    path.write_text(healthy_hour()[0] + "\n")
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anything: a directory stands in
        return str(tmp_path)
    return str(path)


@pytest.mark.parametrize("case,message", [
    ("missing", "does not exist"), ("empty", "is empty: no request to judge"),
    ("blank", "is empty: no request to judge"), ("unreadable", "cannot be read|is not a file"),
])
def test_a_log_that_cannot_be_judged_is_one_error_line_and_exit_2(tmp_path, case, message):
    path = {"missing": lambda: str(tmp_path / "missing.log"),
            "empty": lambda: (tmp_path / "empty.log").write_text("") and "" or str(tmp_path / "empty.log"),
            "blank": lambda: (tmp_path / "blank.log").write_text("\n  \n") and str(tmp_path / "blank.log"),
            "unreadable": lambda: _unreadable(tmp_path)}[case]()
    for args, env in (([], {"LOG_FILE": path}), (["--log-file", path], {})):
        code, out = run_slo(env, args=args)
        assert code == 2, out
        lines = out.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("torchfaas-slo: LOG_FILE="), out
        assert re.search(message, lines[0]), out
