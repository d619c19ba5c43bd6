"""functions/classifier's modules in the test process (once per session)."""
from types import SimpleNamespace

from loadkit.localrun import CLASSIFIER, import_function

MODULES = ("config", "preprocessing", "network", "loading", "packages", "handler")


def classifier_module(module: str = "handler"):
    """A module of the classifier (handler, config, preprocessing, network, loading, packages),
    imported as the image imports it (the template's torchfaas is on sys.path)."""
    return import_function(CLASSIFIER, "classifier_under_test", module)


def classifier_parts() -> SimpleNamespace:
    """Every module of the classifier by name: parts.handler.Classifier, parts.network.build_network..."""
    return SimpleNamespace(**{name: classifier_module(name) for name in MODULES})

# the limits the classifier runs with in the tests (small, so tests stay fast),
# in process (environment) and in-process (Settings)
MAX_BODY = 2 * 1024 * 1024
MAX_PIXELS = 4_000_000
LIMITS_ENV = {"MAX_BODY_BYTES": str(MAX_BODY), "MAX_PIXELS": str(MAX_PIXELS)}
