"""Load tests: the load/ tools against a real classifier process.

Locust monkey-patches the standard library with gevent when it is imported, so
it never is in the pytest process: everything that needs it runs as a
subprocess, as users run it. The parts that do not import Locust (traffic,
shapes, percentiles, capacity arithmetic, log summary) are imported from load/
directly (pyproject.toml puts load/ on pytest's path).
"""
import pytest

from loadkit.localrun import CLASSIFIER_ARTIFACTS
from support.function_process import FunctionProcess


@pytest.fixture(scope="session")
def classifier_fn(classifier_build):
    """A classifier with the default limits (the load sends up to ~1.2 MB PNGs)."""
    with FunctionProcess(classifier_build, env={"ARTIFACTS_DIR": str(CLASSIFIER_ARTIFACTS)}) as fn:
        yield fn

