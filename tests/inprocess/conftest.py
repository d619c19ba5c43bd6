"""In-process fixtures: the real app around a stand-in handler or the real classifier."""
import pytest

from loadkit.localrun import CLASSIFIER_ARTIFACTS
from support.classifier import MAX_BODY, MAX_PIXELS, classifier_module
from support.functions.standin.handler import StandIn
from support.inprocess import InProcessFunction


@pytest.fixture
def make_function():
    """make_function(handler=None, load=True, **settings) -> InProcessFunction.

    handler None: a fresh StandIn(); `load` runs the model load (and starts the
    batcher) before returning. Everything made is closed after the test.
    """
    made = []

    def make(handler=None, load: bool = True, **settings) -> InProcessFunction:
        settings.setdefault("function_name", "standin")
        fn = InProcessFunction(StandIn() if handler is None else handler, **settings)
        made.append(fn)
        if load:
            assert fn.load(), fn.raw_lines
        return fn

    yield make
    for fn in made:
        fn.close()


@pytest.fixture
def standin(make_function) -> InProcessFunction:
    """A loaded stand-in with production defaults."""
    return make_function()


@pytest.fixture(scope="session")
def classifier(classifier_build):
    """The real classifier (artifacts/classifier, prepared by classifier_build when
    missing), loaded once for the session."""
    module = classifier_module()
    fn = InProcessFunction(module.Classifier(), function_name="classifier",
                           artifacts_dir=str(CLASSIFIER_ARTIFACTS), max_body_bytes=MAX_BODY,
                           max_pixels=MAX_PIXELS, tenants="acme")
    assert fn.load(), fn.raw_lines
    yield fn
    fn.close()
