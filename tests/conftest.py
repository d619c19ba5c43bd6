import pytest
from localrun import CLASSIFIER, CLASSIFIER_ARTIFACTS, prepare_artifacts, shrinkwrap


@pytest.fixture(scope="session")
def classifier_build(tmp_path_factory):
    """build/classifier as faas-cli lays it out, with its build-time artifacts (one per session)."""
    build = shrinkwrap(CLASSIFIER, tmp_path_factory.mktemp("build") / "classifier")
    prepare_artifacts(build, CLASSIFIER_ARTIFACTS)
    return build
