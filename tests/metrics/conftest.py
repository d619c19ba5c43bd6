"""Fixtures of the metrics tests: one build, a private artifacts copy, a real Prometheus."""
import shutil
from pathlib import Path

import pytest

from loadkit.localrun import CLASSIFIER_ARTIFACTS
from support.prometheus import RULES, Prometheus


@pytest.fixture(scope="session")
def metrics_artifacts(classifier_build, tmp_path_factory):
    """A private copy: every process of the test serves the very same files."""
    return Path(shutil.copytree(CLASSIFIER_ARTIFACTS, tmp_path_factory.mktemp("metrics-artifacts") / "classifier"))


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory):
    prom = Prometheus(tmp_path_factory.mktemp("prometheus"), [RULES]).start()
    try:
        yield prom
    finally:
        prom.stop()
