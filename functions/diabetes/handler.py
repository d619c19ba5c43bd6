"""diabetes: a PyTorch linear regression of disease progression one year on.

Trained at image build time (prepare()) on scikit-learn's bundled diabetes data set
(442 patients, 10 features, scaled as `load_diabetes()` gives them): a fixed seed,
a held-out 20%, and a quality gate: the build fails when the held-out R² is below
MIN_HELDOUT_R2. The manifest records the R²; the weights are hash-checked at cold start.

    POST / {"instances": [{"age": 0.04, "sex": 0.05, "bmi": 0.06, ..., "s6": -0.02}, ...]}
    -> {"predictions": [206.1, ...], "model_name", "model_version", "request_id"}
"""
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from torchfaas import BadRequest, ModelHandler, PayloadTooLarge, Settings, UnsupportedMediaType, ValueHistogram, env
from torchfaas.toolkit import write_manifest

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
WEIGHTS = "weights.pt"
SEED, HELDOUT_SHARE = 0, 0.2
# measured on this fixed split: held-out R² 0.576, as closed-form least squares gets;
# other seeds' splits give 0.39-0.58. 0.45 leaves 0.12 of margin and fails a model cut
# off after 5 LBFGS steps (0.22), fitted to misaligned targets (0.03) or the mean (0)
MIN_R2 = 0.45


@dataclass(frozen=True)
class DiabetesSettings:
    max_instances: int = env("MAX_INSTANCES", 64, int)
    min_heldout_r2: float = env("MIN_HELDOUT_R2", MIN_R2, float)


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum())


def train() -> tuple[torch.nn.Linear, dict]:
    from sklearn.datasets import load_diabetes  # build time only
    data = load_diabetes()
    assert tuple(data.feature_names) == FEATURES, data.feature_names
    x, y = torch.tensor(data.data, dtype=torch.float32), torch.tensor(data.target, dtype=torch.float32)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED))
    cut = len(y) - round(len(y) * HELDOUT_SHARE)
    train_i, test_i = order[:cut], order[cut:]
    mean, std = y[train_i].mean(), y[train_i].std()
    torch.manual_seed(SEED)
    model = torch.nn.Linear(len(FEATURES), 1)
    optimiser = torch.optim.LBFGS(model.parameters(), max_iter=200, line_search_fn="strong_wolfe")
    target = ((y[train_i] - mean) / std).unsqueeze(1)  # fit the standardised target

    def closure():
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x[train_i]), target)
        loss.backward()
        return loss
    optimiser.step(closure)
    with torch.no_grad():  # fold the scaling into the layer: it answers in the target's units
        model.weight.mul_(std)
        model.bias.mul_(std).add_(mean)
        quality = {"heldout_r2": round(r2(model(x[test_i]).squeeze(1), y[test_i]), 4),
                   "train_r2": round(r2(model(x[train_i]).squeeze(1), y[train_i]), 4),
                   "train_rows": len(train_i), "heldout_rows": len(test_i), "seed": SEED}
    return model.eval(), quality


class Handler(ModelHandler):
    model_name = "diabetes-linear"
    # 5 wide from 0 to 400 (the model predicts 35-291 on the data set): a mean read from
    # these buckets is within 2.5 of the answers' own, 1.7% of the usual ~150, well inside
    # the canary's 5% bound; the lowest and highest buckets stay empty (docs/aggregates.md)
    prediction_metrics = (ValueHistogram(
        "prediction_mean", "diabetes_prediction", "Mean predicted disease progression of each 200 answer.",
        buckets=tuple(range(0, 405, 5))),)

    def __init__(self):
        self.own = DiabetesSettings()

    def prepare(self, artifacts_dir: Path, settings: Settings) -> None:
        model, quality = train()
        print(f"diabetes: {quality}", file=sys.stderr)
        if quality["heldout_r2"] < self.own.min_heldout_r2:
            raise RuntimeError(f"held-out R² {quality['heldout_r2']} is below the gate "
                               f"{self.own.min_heldout_r2}: not shipping this model")
        torch.save(model.state_dict(), artifacts_dir / WEIGHTS)
        write_manifest(artifacts_dir, [WEIGHTS], model_name=self.model_name, features=list(FEATURES),
                       min_heldout_r2=self.own.min_heldout_r2, **quality)

    def load(self, artifacts_dir: Path, manifest: dict | None, settings: Settings) -> None:
        self.model = torch.nn.Linear(len(FEATURES), 1).eval()
        self.model.load_state_dict(torch.load(artifacts_dir / WEIGHTS, weights_only=True))
        self.heldout_r2 = (manifest or {}).get("heldout_r2")

    def load_info(self) -> dict:
        return {"heldout_r2": self.heldout_r2}

    def warmup(self) -> None:
        self.predict([torch.zeros(1, len(FEATURES))])

    def preprocess(self, request) -> torch.Tensor:
        media = request.content_type.split(";")[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise UnsupportedMediaType(f"send application/json, not {media}")
        try:
            instances = json.loads(request.body)["instances"]
        except (ValueError, KeyError, TypeError):
            raise BadRequest('send JSON {"instances": [{"age": ..., ..., "s6": ...}, ...]}',
                             code="invalid_json") from None
        if not isinstance(instances, list) or not instances:
            raise BadRequest("instances must be a non-empty list of rows", code="no_instances")
        if len(instances) > self.own.max_instances:
            raise PayloadTooLarge(f"{len(instances)} instances; at most {self.own.max_instances} per request",
                                  code="too_many_instances")
        return torch.tensor([row_values(i, row) for i, row in enumerate(instances)], dtype=torch.float32)

    def predict(self, items: list) -> list:
        with torch.inference_mode():
            out = self.model(torch.cat(items)).squeeze(1)
        return list(out.split([len(item) for item in items]))

    def postprocess(self, output, request) -> dict:
        return {"predictions": [round(v, 3) for v in output.tolist()]}

    def log_fields(self, output) -> dict:
        return {"instances": len(output), "prediction_mean": round(float(output.mean()), 3)}

    def metadata(self) -> dict:
        return {"input": {"instances": list(FEATURES), "max_instances": self.own.max_instances},
                "heldout_r2": self.heldout_r2}


def row_values(i: int, row) -> list[float]:
    """One instance -> its 10 features in order; 400 naming what is wrong with it."""
    if not isinstance(row, dict):
        raise BadRequest(f"instances[{i}] is not an object of features", code="invalid_instance")
    missing = [f for f in FEATURES if f not in row]
    if missing:
        raise BadRequest(f"instances[{i}] lacks {', '.join(missing)}", code="missing_features")
    extra = sorted(set(row) - set(FEATURES))
    if extra:
        raise BadRequest(f"instances[{i}] has unknown features {', '.join(extra)[:200]}",
                         code="unknown_features")
    values = [row[name] if type(row[name]) in (int, float) else math.nan for name in FEATURES]
    for name, value in zip(FEATURES, values):
        if not -1e6 < value < 1e6:  # NaN, inf, huge; strings, bools, nulls are NaN above
            raise BadRequest(f"instances[{i}].{name} must be a finite number (the features are "
                             "scaled as load_diabetes() gives them, about -0.2 to 0.2)",
                             code="invalid_feature_value")
    return [float(v) for v in values]
