import pytest

from support.function_process import (CLASSIFIER, CLASSIFIER_ARTIFACTS, FunctionProcess,
                                      prepare_artifacts, shrinkwrap)


@pytest.fixture(scope="session")
def classifier_build(tmp_path_factory):
    """build/classifier as faas-cli lays it out, with its build-time artifacts."""
    build = shrinkwrap(CLASSIFIER, tmp_path_factory.mktemp("build") / "classifier")
    prepare_artifacts(build, CLASSIFIER_ARTIFACTS)
    return build


@pytest.fixture(scope="module")
def classifier(classifier_build):
    """One classifier process shared by a test module."""
    with FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS),
                                                "MAX_BODY_BYTES": str(2 * 1024 * 1024),
                                                "MAX_PIXELS": "4000000"}) as fn:
        yield fn
