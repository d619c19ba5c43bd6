"""functions/classifier/handler.py as a module in the test process (once per session)."""
import functools
import importlib.util

from localrun import CLASSIFIER


@functools.cache
def classifier_module():
    """The classifier's handler module (the template's torchfaas is on sys.path)."""
    spec = importlib.util.spec_from_file_location("classifier_handler_under_test", CLASSIFIER / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

# the limits the classifier runs with in the tests (small, so tests stay fast),
# in process (environment) and in-process (Settings)
MAX_BODY = 2 * 1024 * 1024
MAX_PIXELS = 4_000_000
LIMITS_ENV = {"MAX_BODY_BYTES": str(MAX_BODY), "MAX_PIXELS": str(MAX_PIXELS)}
