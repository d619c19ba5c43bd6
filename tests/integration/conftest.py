import pytest

from support.function_process import (CLASSIFIER_ARTIFACTS, FunctionProcess)


@pytest.fixture(scope="module")
def classifier(classifier_build):
    """One classifier process shared by a test module."""
    with FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS),
                                                "MAX_BODY_BYTES": str(2 * 1024 * 1024),
                                                "MAX_PIXELS": "4000000"}) as fn:
        yield fn
