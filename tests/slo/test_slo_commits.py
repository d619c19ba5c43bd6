"""`torchfaas-slo commits`: which commit each served model version was built from.

The scheduled SLO job comments on that commit when a contract fails. The answer comes
from the `model_loaded` lines (SOURCE_COMMIT of the image), read with the same LogQL
from a log file or from Loki.
"""
import json
from datetime import UTC

from logslo import cli, queries

AT = 1_800_000_000.0


def line(seconds_before: float, event: str, version: str, **fields) -> str:
    from datetime import datetime

    ts = datetime.fromtimestamp(AT - seconds_before, tz=UTC)
    stamp = ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
    return json.dumps({"timestamp": stamp, "level": "INFO", "message": event, "event": event,
                       "function": "classifier", "model_name": "m", "model_version": version, **fields})


def write_log(tmp_path) -> str:
    path = tmp_path / "function.log"
    path.write_text("\n".join([
        line(7200, "model_loaded", "v1", source_commit="aaa111"),
        line(7100, "inference", "v1", status=200, latency_ms=10.0, source_commit="not-a-deployment"),
        line(3600, "model_loaded", "v2", source_commit="bbb222"),
        line(3500, "model_loaded", "v2", source_commit="bbb222"),  # a second replica
        line(3400, "model_loaded", "v3"),  # built without SOURCE_COMMIT: nothing to comment on
        line(30 * 86400, "model_loaded", "v0", source_commit="old000"),  # outside the window
        "not json: a watchdog line",
    ]) + "\n")
    return str(path)


def run(capsys, argv, env) -> tuple[int, str, str]:
    code = cli.main(["commits", *argv]) if env is None else cli.commits(argv, env)
    out, err = capsys.readouterr()
    return code, out, err


def test_commits_from_a_log_file(tmp_path, capsys):
    env = {"LOG_FILE": write_log(tmp_path), "SLO_AT": str(AT)}
    code, out, _ = run(capsys, [], env)
    assert code == 0 and json.loads(out) == {"v1": ["aaa111"], "v2": ["bbb222"]}
    code, out, _ = run(capsys, ["--version", "v2"], env)
    assert code == 0 and json.loads(out) == {"v2": ["bbb222"]}


def test_the_same_question_goes_to_loki(tmp_path, capsys, fake_loki):
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"model_version": "v2", "source_commit": "bbb222"}, "value": [AT, "2"]}]}}
    loki = fake_loki(lambda path, params: (200, answer))
    code, out, _ = run(capsys, ["--window", "3600"], {"LOKI_URL": loki.url, "SLO_AT": str(AT)})
    assert code == 0 and json.loads(out) == {"v2": ["bbb222"]}
    sent = loki.requests[0]["params"]["query"]
    assert sent == queries.deployments("classifier", 3600).render()
    assert '| json event, model_version, source_commit | __error__="" | event="model_loaded"' in sent
    assert "by (model_version, source_commit)" in sent


def test_no_source_or_loki_failing_cannot_say(tmp_path, capsys, fake_loki):
    code, _, err = run(capsys, [], {})
    assert code == 2 and "LOKI_URL" in err
    loki = fake_loki(lambda path, params: (500, b"boom"))
    code, _, err = run(capsys, [], {"LOKI_URL": loki.url, "SLO_AT": str(AT)})
    assert code == 2 and err.strip()


def test_only_the_commits_of_versions_a_violated_contract_names(tmp_path, capsys):
    env = {"LOG_FILE": write_log(tmp_path), "SLO_AT": str(AT)}

    def report(*contracts) -> str:
        path = tmp_path / "report.json"
        path.write_text(json.dumps({"contracts": [{"contract": name, "passed": ok} for name, ok in contracts]}))
        return str(path)

    named = report(("p99 latency, model version v2, last 1h", False), ("p99 latency, model version v1, last 1h", True),
                   ("5xx ratio of classifier model version v20, last 1h", False))  # v20 is not v2
    assert run(capsys, ["--failed-in", named], env)[:2] == (0, '{"v2": ["bbb222"]}\n')
    everyone = report(("no class above 40% of predictions, last 1h", False))
    assert json.loads(run(capsys, ["--failed-in", everyone], env)[1]) == {"v1": ["aaa111"], "v2": ["bbb222"]}
    nothing = report(("p99 latency, model version v2, last 1h", True))
    assert json.loads(run(capsys, ["--failed-in", nothing], env)[1]) == {}
    assert run(capsys, ["--failed-in", str(tmp_path / "missing.json")], env)[0] == 2


def test_the_scheduled_job_comments_on_the_failing_versions_commit(tmp_path):
    """Run the workflow's comment step as written, with `gh` replaced by a recorder."""
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    repo = Path(__file__).resolve().parents[2]
    workflow = yaml.safe_load((repo / ".github/workflows/slo.yml").read_text())
    [step] = [s for s in workflow["jobs"]["contracts"]["steps"] if s.get("name", "").startswith("Comment")]
    assert "failure()" in step["if"] and workflow["jobs"]["contracts"]["permissions"]["contents"] == "write"
    script = (step["run"].replace("${{ github.server_url }}", "https://github.com")
              .replace("${{ github.repository }}", "acme/torchfaas").replace("${{ github.run_id }}", "42"))
    work = tmp_path / "job"
    (work / ".venv" / "bin").mkdir(parents=True)
    command = shutil.which("torchfaas-slo") or str(Path(sys.executable).parent / "torchfaas-slo")
    (work / ".venv" / "bin" / "torchfaas-slo").symlink_to(command)
    (work / "slo-report.json").write_text(json.dumps({"errors": [], "contracts": [
        {"contract": "p99 latency of classifier model version v2, last 1h", "passed": False,
         "miss": "40 ms (16%) above the bound"},
        {"contract": "p99 latency of classifier model version v1, last 1h", "passed": True, "miss": ""}]}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "gh-calls.jsonl"
    (bin_dir / "gh").write_text(f"#!{sys.executable}\nimport json, sys\n"
                                f"open({str(calls)!r}, 'a').write(json.dumps({{'args': sys.argv[1:], "
                                f"'input': json.load(sys.stdin)}}) + '\\n')\n")
    (bin_dir / "gh").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LOG_FILE": write_log(tmp_path),
           "SLO_AT": str(AT), "GH_TOKEN": "x"}
    env.pop("LOKI_URL", None)
    done = subprocess.run(["bash", "-e", "-c", script], cwd=work, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    [call] = [json.loads(line) for line in calls.read_text().splitlines()]
    assert call["args"] == ["api", "repos/acme/torchfaas/commits/bbb222/comments", "--input", "-"]
    body = call["input"]["body"]
    assert "model version `v2`" in body and "40 ms (16%) above the bound" in body
    assert "https://github.com/acme/torchfaas/actions/runs/42" in body
