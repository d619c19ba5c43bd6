"""Fixtures of the fault suite: real processes (the real classifier, the stand-in)."""
import pytest

from support.classifier import LIMITS_ENV


@pytest.fixture(scope="module")
def classifier_env() -> dict:
    """More environment for the module's classifier process: a module overrides this."""
    return {}


@pytest.fixture(scope="module")
def classifier(function_process, classifier_env):
    """One classifier process per module, with the tests' small limits."""
    return function_process("classifier", env={**LIMITS_ENV, "TENANTS": "acme", **classifier_env})
