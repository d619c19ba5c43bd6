"""Fixtures of the fault suite: builds laid out as faas-cli does, real processes."""
import pytest
from faultkit import HANDLERS, MAX_BODY, MAX_PIXELS
from support.function_process import (CLASSIFIER_ARTIFACTS, FunctionProcess,
                                      shrinkwrap)


@pytest.fixture(scope="session")
def faults_build(tmp_path_factory):
    return shrinkwrap(HANDLERS / "faults", tmp_path_factory.mktemp("rel-faults") / "build")


@pytest.fixture(scope="module")
def classifier(classifier_build):
    env = {"ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS), "MAX_BODY_BYTES": str(MAX_BODY),
           "MAX_PIXELS": str(MAX_PIXELS), "TENANTS": "acme"}
    with FunctionProcess(classifier_build, env=env) as fn:
        yield fn
