"""Fixtures of the fault suite: real processes (the real classifier, the stand-in)."""
import pytest
from support.classifier import LIMITS_ENV


@pytest.fixture(scope="module")
def classifier(function_process):
    """One classifier process per module, with the tests' small limits."""
    return function_process("classifier", env={**LIMITS_ENV, "TENANTS": "acme"})
