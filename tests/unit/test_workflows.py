"""The CI workflows follow the functions: the scheduled SLO check runs for every function
that keeps contracts, and a pull request is reviewed for each function it can move. The
steps that decide which are run here, as GitHub runs them (bash, GITHUB_OUTPUT)."""
import json
import os
import subprocess

import yaml

from loadkit.localrun import REPO


def step(workflow: str, job: str, step_id: str) -> dict:
    jobs = yaml.safe_load((REPO / ".github" / "workflows" / workflow).read_text())["jobs"]
    return next(s for s in jobs[job]["steps"] if s.get("id") == step_id)


def outputs_of(run: str, cwd, tmp_path, env=None) -> dict:
    output = tmp_path / "github_output"
    output.write_text("")
    subprocess.run(["bash", "-e", "-c", run], cwd=cwd, check=True, timeout=60,
                   env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **(env or {})})
    return dict(line.split("=", 1) for line in output.read_text().splitlines())


def test_the_scheduled_slo_check_runs_for_every_function_with_contracts(tmp_path):
    names = json.loads(outputs_of(step("slo.yml", "functions", "list")["run"], REPO, tmp_path)["names"])
    assert names == sorted(p.parent.name for p in (REPO / "functions").glob("*/slo"))
    assert {"classifier", "diabetes"} <= set(names)


def git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_a_pull_request_is_reviewed_for_the_functions_it_can_move(tmp_path):
    repo = tmp_path / "repo"
    for name in ("classifier", "diabetes"):
        (repo / "functions" / name / "compare").mkdir(parents=True)
        (repo / "functions" / name / "handler.py").write_text("# v1\n")
    (repo / "template").mkdir()
    (repo / "template" / "index.py").write_text("# v1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base")
    base = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    run = step("review.yml", "functions", "list")["run"]

    def reviewed(path: str) -> list:
        (repo / path).write_text((repo / path).read_text() + "# changed\n")
        git(repo, "commit", "-q", "-am", f"change {path}")
        names = json.loads(outputs_of(run, repo, tmp_path, {"BASE": base})["names"])
        git(repo, "reset", "-q", "--hard", base)
        return names

    assert reviewed("functions/diabetes/handler.py") == ["diabetes"]
    assert reviewed("template/index.py") == ["classifier", "diabetes"]  # the runtime moves every function
