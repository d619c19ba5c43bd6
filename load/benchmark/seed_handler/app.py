"""The seed approach, kept as the benchmark's baseline (not shipped).

What blog posts about "PyTorch on OpenFaaS" do: load the eager model at import,
and per request open the image with PIL, apply torchvision-style transforms
(Resize(256) -> CenterCrop(224) -> ToTensor -> Normalize, written by hand
because torchvision is not installable here), run model(x) on a batch of one
under no_grad, and return the top 5 with Flask behind waitress. Same weights
and labels as the classifier, so only the serving approach differs.

    python load/benchmark/seed_handler/app.py --artifacts artifacts/classifier --port 8081
"""
import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from flask import Flask, jsonify, request
from PIL import Image

MEAN = torch.tensor([0.498, 0.498, 0.498]).view(3, 1, 1)  # (127/255): the Lite models' normalisation
STD = torch.tensor([0.502, 0.502, 0.502]).view(3, 1, 1)   # (128/255)

app = Flask(__name__)
model = None
labels: list[str] = []


def transform(image: Image.Image) -> torch.Tensor:
    # Resize(256): the shorter side to 256, keeping the aspect ratio
    w, h = image.size
    scale = 256 / min(w, h)
    image = image.resize((round(w * scale), round(h * scale)), Image.BICUBIC)
    # CenterCrop(224)
    w, h = image.size
    left, top = (w - 224) // 2, (h - 224) // 2
    image = image.crop((left, top, left + 224, top + 224))
    # ToTensor + Normalize
    x = torch.from_numpy(np.array(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - MEAN) / STD


@app.route("/", methods=["POST"])
def predict():
    image = Image.open(io.BytesIO(request.get_data())).convert("RGB")
    x = transform(image).unsqueeze(0)
    with torch.no_grad():
        probs = torch.nn.functional.softmax(model(x), dim=1)[0]
    top = torch.topk(probs, 5)
    return jsonify({"predictions": [{"label": labels[i], "class_index": i, "probability": float(p)}
                                    for p, i in zip(top.values.tolist(), top.indices.tolist())]})


@app.route("/ready", methods=["GET"])
def ready():
    return jsonify({"status": "ready"})


def main():
    global model, labels
    parser = argparse.ArgumentParser()
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    artifacts = Path(args.artifacts)
    model = EfficientNet.from_name("efficientnet-lite0")
    model.load_state_dict(torch.load(artifacts / "weights.pt", map_location="cpu", weights_only=True))
    model.eval()
    labels = json.loads((artifacts / "labels.json").read_text())
    from waitress import serve
    serve(app, host=args.host, port=args.port)  # waitress defaults: 4 threads


if __name__ == "__main__":
    main()
