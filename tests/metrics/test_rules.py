"""The Prometheus rules pass promtool: syntax (check rules) and behaviour (test rules)."""
import subprocess

from support.prometheus import RULES, RULES_TEST, require_binary


def promtool(*args) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("promtool"), *args], capture_output=True, text=True, timeout=120)


def test_promtool_check_rules():
    result = promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 25 rules found" in result.stdout


def test_promtool_unit_tests_fire_the_burn_rate_alerts():
    # burn-rate pages for the version that fails, none for the healthy one,
    # per-version busiest hour, 0 (not absent) 5xx ratio without faults
    result = promtool("test", "rules", str(RULES_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
