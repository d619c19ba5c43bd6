"""One home per setting: the table of variables in docs/settings.md is what the code reads.

Every variable in docs/settings.md's table exists in the
runtime's `Settings` (with `ImageSettings`, the image functions' MAX_PIXELS) or the
classifier's `ClassifierSettings` with the documented default, and every variable
they read is in the table.
"""
import re

import pytest

from loadkit.localrun import CLASSIFIER, REPO, import_function
from support.dockerfile import image_env
from torchfaas import Settings
from torchfaas.settings import env_fields
from torchfaas.toolkit import ImageSettings

ROW = re.compile(r"^\| `([A-Z_]+)` \| `([^`]*)`")


def documented_table() -> dict:
    """docs/settings.md's table (its first section: the variables)."""
    text = (REPO / "docs" / "settings.md").read_text()
    section = text.split("\n## ", 1)[0]
    rows = dict(ROW.match(line).groups() for line in section.splitlines() if ROW.match(line))
    assert len(rows) >= 20, "the table of variables in docs/settings.md was not found"
    return rows


@pytest.fixture(scope="module")
def classifier_settings():
    return import_function(CLASSIFIER, "classifier_settings_under_test", "config").ClassifierSettings


def same(documented: str, default) -> bool:
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        return float(documented) == float(default)
    return documented == str(default)


def test_every_documented_variable_is_read_with_its_documented_default(classifier_settings):
    code = {**env_fields(ImageSettings), **env_fields(classifier_settings)}
    documented = documented_table()
    assert set(documented) == set(code), (f"only in docs/settings.md: {sorted(set(documented) - set(code))}; "
                                          f"only in the code: {sorted(set(code) - set(documented))}")
    for name, text in documented.items():
        assert same(text, code[name]), f"{name}: docs/settings.md says {text!r}, the code {code[name]!r}"


def test_no_variable_is_read_twice(classifier_settings):
    runtime, classifier = env_fields(ImageSettings), env_fields(classifier_settings)
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
    from torchfaas import ModelHandler

    class TwoWorkers(ModelHandler):
        batch_workers = 2

        def load(self, artifacts_dir, manifest, settings): ...

        def predict(self, items): ...

    assert Settings().for_handler(TwoWorkers()).batch_workers == 2
    monkeypatch.setenv("BATCH_WORKERS", "3")
    assert Settings().for_handler(TwoWorkers()).batch_workers == 3


def test_stack_yml_restates_no_default(classifier_settings):
    """stack.yml lists only what differs from the defaults (the code's and the image's)."""
    import yaml

    stack = yaml.safe_load((REPO / "stack.yml").read_text())
    environment = stack["functions"]["classifier"].get("environment") or {}
    image = image_env()
    assert "prefix_logs" in image and "DRAIN_SECONDS" in image  # the Dockerfile was read
    defaults = {**env_fields(ImageSettings), **env_fields(classifier_settings)}
    for name, value in environment.items():
        if name in image:
            assert str(value) != image[name], f"stack.yml restates {name}={value}, the image's default"
        elif name in defaults:
            assert not same(str(value), defaults[name]), f"stack.yml restates {name}={value}, the default"


def test_image_limits_are_for_the_functions_that_opt_in(monkeypatch):
    """MAX_PIXELS is no runtime setting: an image function names ImageSettings as its
    settings_class and the runtime builds those for it; others never see it."""
    from torchfaas import ModelHandler

    class Tabular(ModelHandler):
        def load(self, artifacts_dir, manifest, settings): ...

        def predict(self, items): ...

    class Photos(Tabular):
        settings_class = ImageSettings

    monkeypatch.setenv("MAX_PIXELS", "1000")
    monkeypatch.setenv("BATCH_SIZE", "3")
    runtime = Settings()
    assert "MAX_PIXELS" not in env_fields(Settings) and not hasattr(runtime, "max_pixels")
    tabular = runtime.for_handler(Tabular())
    assert type(tabular) is Settings and tabular.batch_size == 3
    assert tabular.for_handler(Tabular()) is tabular  # worked out once: returned as it is
    image = runtime.for_handler(Photos())
    assert type(image) is ImageSettings and image.max_pixels == 1000 and image.batch_size == 3
    assert image.for_handler(Photos()) is image and image.for_handler(Tabular()) is image
    monkeypatch.setenv("MAX_PIXELS", "0")
    with pytest.raises(ValueError, match="max_pixels"):
        ImageSettings()
