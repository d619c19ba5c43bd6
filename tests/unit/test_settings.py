"""One home per setting: the README's table of variables is what the code reads.

Every variable in the README's "Environment variables" table exists in the
runtime's `Settings` or the classifier's `ClassifierSettings` with the
documented default, and every variable they read is in the table.
"""
import re

import pytest
from localrun import CLASSIFIER, REPO, import_function
from support.dockerfile import image_env
from torchfaas import Settings
from torchfaas.settings import env_fields

ROW = re.compile(r"^\| `([A-Z_]+)` \| `([^`]*)`")


def readme_table() -> dict:
    text = (REPO / "README.md").read_text()
    section = text.split("## Environment variables", 1)[1].split("\n## ", 1)[0]
    rows = dict(ROW.match(line).groups() for line in section.splitlines() if ROW.match(line))
    assert len(rows) >= 20, "the README's table of variables was not found"
    return rows


@pytest.fixture(scope="module")
def classifier_settings():
    return import_function(CLASSIFIER, "classifier_settings_under_test", "config").ClassifierSettings


def same(documented: str, default) -> bool:
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float(documented) == float(default)
    return documented == str(default)


def test_every_documented_variable_is_read_with_its_documented_default(classifier_settings):
    code = {**env_fields(Settings), **env_fields(classifier_settings)}
    documented = readme_table()
    assert set(documented) == set(code), (f"only in the README: {sorted(set(documented) - set(code))}; "
                                          f"only in the code: {sorted(set(code) - set(documented))}")
    for name, text in documented.items():
        assert same(text, code[name]), f"{name}: README says {text!r}, the code {code[name]!r}"


def test_no_variable_is_read_twice(classifier_settings):
    runtime, classifier = env_fields(Settings), env_fields(classifier_settings)
    assert not set(runtime) & set(classifier)


def test_environment_overrides_and_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("BATCH_SIZE", "4")
    monkeypatch.setenv("QUEUE_SIZE", "10")
    settings = Settings()
    assert settings.batch_size == 4 and settings.threads == 10 + 2 * 4 + 4  # derived WORKER_THREADS
    monkeypatch.setenv("BATCH_SIZE", "eight")
    with pytest.raises(ValueError, match="BATCH_SIZE='eight'"):
        Settings()
    monkeypatch.setenv("BATCH_SIZE", "0")
    with pytest.raises(ValueError, match="batch_size"):
        Settings()


def test_handler_defaults_fill_only_what_the_environment_left_unset(monkeypatch):
    assert Settings().with_handler_defaults(2).batch_workers == 2
    monkeypatch.setenv("BATCH_WORKERS", "3")
    assert Settings().with_handler_defaults(2).batch_workers == 3


def test_stack_yml_restates_no_default(classifier_settings):
    """stack.yml lists only what differs from the defaults (the code's and the image's)."""
    import yaml

    stack = yaml.safe_load((REPO / "stack.yml").read_text())
    environment = stack["functions"]["classifier"].get("environment") or {}
    image = image_env()
    assert "prefix_logs" in image and "DRAIN_SECONDS" in image  # the Dockerfile was read
    defaults = {**env_fields(Settings), **env_fields(classifier_settings)}
    for name, value in environment.items():
        if name in image:
            assert str(value) != image[name], f"stack.yml restates {name}={value}, the image's default"
        elif name in defaults:
            assert not same(str(value), defaults[name]), f"stack.yml restates {name}={value}, the default"
