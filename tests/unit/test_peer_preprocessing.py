"""The peer servers (load/benchmark/peers/) preprocess exactly as the classifier does.

load/benchmark/peer_bench.py compares torchfaas with LitServe, TorchServe and BentoML serving
the same model; that comparison only means something if they all see the same input
tensor. load/benchmark/peers/common.py re-implements the classifier's preprocessing without
torchfaas (it runs in each peer's own venv), so it is checked here against the
classifier's own `to_pixels` + the normalisation its compiled graph applies, on the
real photos (JPEG and PNG) and on a large JPEG that takes the draft-decoding path.
No peer needs to be installed.
"""
import importlib.util
import io

import numpy as np
import pytest
import torch
from PIL import Image

from loadkit.localrun import REPO
from loadkit.photos import PHOTOS
from support.classifier import classifier_module
from torchfaas.toolkit import open_image

MAX_PIXELS = 50_000_000


@pytest.fixture(scope="module")
def common():
    common = REPO / "load" / "benchmark" / "peers" / "common.py"
    spec = importlib.util.spec_from_file_location("peers_common_under_test", common)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def classifier_tensor(data: bytes) -> torch.Tensor:
    """What the classifier's model computes on: to_pixels, then (x - 127) / 128, NCHW."""
    config, preprocessing = classifier_module("config"), classifier_module("preprocessing")
    pixels = torch.from_numpy(preprocessing.to_pixels(open_image(data, MAX_PIXELS)).copy())
    return pixels.permute(2, 0, 1).float().sub(config.MEAN).div(config.STD)


def upscaled_jpeg(name: str, factor: int) -> bytes:
    image = Image.open(PHOTOS[name]).convert("RGB")
    out = io.BytesIO()
    image.resize((image.width * factor, image.height * factor), Image.LANCZOS).save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_same_tensor_as_the_classifier(common, name):
    data = PHOTOS[name].read_bytes()
    ours, theirs = common.preprocess(data), classifier_tensor(data)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.max(torch.abs(ours - theirs)).item() <= 1e-6


def test_same_tensor_on_a_draft_decoded_jpeg(common):
    """china.jpg upscaled 4x: both decode it at reduced scale (Image.draft) and crop alike."""
    data = upscaled_jpeg("china.jpg", 4)
    assert common.draft_jpeg(Image.open(io.BytesIO(data))) > 1
    assert torch.max(torch.abs(common.preprocess(data) - classifier_tensor(data))).item() <= 1e-6


def test_same_constants_as_the_classifier(common):
    module = classifier_module("config")
    assert (common.IMAGE_SIZE, common.CROP_PADDING, common.MEAN, common.STD) == \
        (module.IMAGE_SIZE, module.CROP_PADDING, module.MEAN, module.STD)
    assert common.JPEG_DRAFT_MARGIN == module.SETTINGS.jpeg_draft_margin
    assert common.labels() == json_labels(module)


def json_labels(module):
    import json

    return [full.split(",")[0].strip() for full in json.loads((module.HERE / "imagenet_labels.json").read_text())]


def test_batch_is_the_stacked_images(common):
    """to_batch (what the peers' batched forward passes get) stacks the same tensors."""
    datas = [PHOTOS[n].read_bytes() for n in ("china.jpg", "flower.jpg", "rocket.jpg")]
    batch = common.to_batch([common.to_pixels(d) for d in datas])
    assert batch.shape == (3, 3, 224, 224)
    for row, data in zip(batch, datas):
        assert torch.equal(row, classifier_tensor(data))
    assert np.all(np.isfinite(batch.numpy()))
