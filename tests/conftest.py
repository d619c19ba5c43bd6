import sys
from pathlib import Path

import pytest

# tests import `support.*`; the runtime under test is imported from the template
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "template" / "python3-http-torch"))

from support.function_process import CLASSIFIER, CLASSIFIER_ARTIFACTS, prepare_artifacts, shrinkwrap  # noqa: E402


@pytest.fixture(scope="session")
def classifier_build(tmp_path_factory):
    """build/classifier as faas-cli lays it out, with its build-time artifacts (one per session)."""
    build = shrinkwrap(CLASSIFIER, tmp_path_factory.mktemp("build") / "classifier")
    prepare_artifacts(build, CLASSIFIER_ARTIFACTS)
    return build
