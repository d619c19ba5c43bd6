"""A torchfaas function: replace the tiny model with yours.

The runtime calls prepare() at image build time, load() and warmup() once at
cold start, then preprocess() per request, predict() per batch of concurrent
requests and postprocess() per request. Raise torchfaas.BadRequest (or another
torchfaas error) for client mistakes; anything else is a 500.
"""
import json
from pathlib import Path

import torch

from torchfaas import TOP1_PROBABILITY, BadRequest, ModelHandler, Settings
from torchfaas.toolkit import write_manifest

FEATURES = 4
WEIGHTS = "weights.pt"


def build_model() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(FEATURES, 3), torch.nn.Softmax(dim=-1))


class Handler(ModelHandler):
    model_name = "tiny-linear"
    # Prometheus series fed from log_fields() (torchfaas.predictions)
    prediction_metrics = (TOP1_PROBABILITY,)

    def prepare(self, artifacts_dir: Path, settings: Settings) -> None:
        torch.manual_seed(0)  # stands in for training or downloading real weights
        torch.save(build_model().state_dict(), artifacts_dir / WEIGHTS)
        write_manifest(artifacts_dir, [WEIGHTS], model_name=self.model_name)

    def load(self, artifacts_dir: Path, manifest: dict | None, settings: Settings) -> None:
        self.model = build_model()
        self.model.load_state_dict(torch.load(artifacts_dir / WEIGHTS, weights_only=True))
        self.model.eval()

    def warmup(self) -> None:
        self.predict([torch.zeros(FEATURES)])

    def preprocess(self, request):
        try:
            features = json.loads(request.body)["features"]
            tensor = torch.tensor(features, dtype=torch.float32)
        except (ValueError, KeyError, TypeError):
            raise BadRequest('send JSON {"features": [4 numbers]}', code="invalid_input") from None
        if tensor.shape != (FEATURES,):
            raise BadRequest(f"features must hold {FEATURES} numbers", code="invalid_input")
        return tensor

    def predict(self, items: list) -> list:
        with torch.inference_mode():
            return list(self.model(torch.stack(items)))

    def postprocess(self, output, request) -> dict:
        return {"scores": [round(x, 6) for x in output.tolist()]}

    def log_fields(self, output) -> dict:
        return {"top1_class": str(int(output.argmax())), "top1_prob": round(float(output.max()), 4)}
