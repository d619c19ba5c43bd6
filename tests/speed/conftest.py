import pytest

from loadkit.localrun import CLASSIFIER_ARTIFACTS
from support.classifier import classifier_parts


@pytest.fixture(scope="session")
def artifacts(classifier_build):
    if not (CLASSIFIER_ARTIFACTS / "model.pt2").is_file():
        pytest.fail("artifacts/classifier has no model.pt2: the AOTInductor compile did not run "
                    "(see `make install` output)")
    return CLASSIFIER_ARTIFACTS


@pytest.fixture(scope="session")
def classifier():
    """The classifier's modules (support.classifier.classifier_parts): classifier.handler, .network..."""
    return classifier_parts()


def load_handler(module, artifacts_dir, backend: str):
    from torchfaas.toolkit import ImageSettings, read_verified_manifest

    handler = module.handler.Classifier(module.config.ClassifierSettings(model_backend=backend))
    settings = ImageSettings(max_pixels=50_000_000, batch_size=4).for_handler(handler)
    handler.load(artifacts_dir, read_verified_manifest(artifacts_dir), settings)
    return handler


@pytest.fixture(scope="session")
def make_handler(classifier):
    """make_handler(artifacts_dir, backend) -> a loaded Classifier."""
    return lambda artifacts_dir, backend: load_handler(classifier, artifacts_dir, backend)


@pytest.fixture(scope="session")
def aoti_handler(make_handler, artifacts):
    return make_handler(artifacts, "aoti")


@pytest.fixture(scope="session")
def eager_handler(make_handler, artifacts):
    return make_handler(artifacts, "eager")


@pytest.fixture(scope="session")
def photo_items(classifier):
    """Every real photo of load/loadkit/photos.py as the served preprocessing gives it (uint8
    224x224x3), in name order."""
    from loadkit.photos import PHOTOS
    from torchfaas.toolkit import open_image

    return [classifier.preprocessing.to_pixels(open_image(PHOTOS[n].read_bytes(), 50_000_000)) for n in sorted(PHOTOS)]
