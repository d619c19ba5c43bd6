"""Each function's latency objective has two readers that must agree: its latency
contract (functions/<name>/slo, read by `make slo` and the load tools) and the runtime's
LATENCY_OBJECTIVE_MS (stack.yml, else the runtime's default), which marks the slow
requests the Prometheus and Loki alerts count. A contract changed without its setting
(or the other way round) fails here."""
import pytest
import yaml

from loadkit.localrun import REPO
from logslo.objectives import latency_objective_ms
from torchfaas.settings import Settings, env_fields

STACK = yaml.safe_load((REPO / "stack.yml").read_text())["functions"]


@pytest.mark.parametrize("name", sorted(STACK))
def test_the_runtime_objective_is_the_contracts_bound(name):
    environment = STACK[name].get("environment") or {}
    setting = float(environment.get("LATENCY_OBJECTIVE_MS", env_fields(Settings)["LATENCY_OBJECTIVE_MS"]))
    assert setting == latency_objective_ms(REPO / "functions" / name / "slo"), (
        f"stack.yml's LATENCY_OBJECTIVE_MS for {name} is {setting:g}: set it to its latency contract's bound")


def test_the_two_functions_promise_different_bounds():
    # the check above compares something: the classifier keeps the default, diabetes sets its own
    assert latency_objective_ms(REPO / "functions" / "classifier" / "slo") == 250
    assert STACK["diabetes"]["environment"]["LATENCY_OBJECTIVE_MS"] == "50"
