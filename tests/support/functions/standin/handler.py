"""A stand-in model whose timing and faults the test controls.

It goes through the real runtime (ids, limits, batching, errors, the log line,
draining); only the model is replaced. The same class serves the in-process
tests (`StandIn(predict_s=...)`) and the process tests (shrinkwrapped as
`function/handler.py`, configured by environment variables).

Timing, from keyword arguments or the environment:

    load_s     SLOW_LOAD_S      load() sleeps this long
    predict_s  SLOW_PREDICT_S   predict() sleeps this long per batch
    noisy_load NOISY_LOAD       load() prints and writes to fd 1 (third-party noise)
    fail_load  FAIL_LOAD        load() raises
    load_gate                   (in-process) load() waits for this threading.Event
    predict_gate                (in-process) predict() waits for this threading.Event

What a request does is chosen by its body:

    b"bad..."        preprocess raises BadRequest (a client mistake, 400)
    b"preboom..."    preprocess raises RuntimeError (a fault in the handler, 500)
    b"boom..."       predict raises for any batch it is in: the runtime re-runs the batch
                     in halves, so only the boom request gets the 500
    b"postboom..."   postprocess raises KeyError (500)
    b"unjson..."     postprocess returns a body that is not JSON-serialisable (500)
    b"logboom..."    log_fields raises (500)
    b"big:N..."      log_fields adds a field of N characters (quotes, backslashes,
                     newlines, non-ASCII: it must be escaped into one line)
    b"sleep:S..."    predict sleeps S seconds for its batch

Anything else is echoed: the answer is `{"length": len(body)}`. Error messages
carry a fake secret and a newline, so tests can check they never reach the client.
Every batch predict() was called with is kept in `batches`.
"""
import os
import re
import sys
import threading
import time

from torchfaas import TOP1_PROBABILITY, BadRequest, ModelHandler

SECRET = "s3cr3t-db-password"
BLOB_UNIT = 'ab"c\\d\n\té☃ '  # 12 characters that JSON must escape or encode


def blob(n: int) -> str:
    return (BLOB_UNIT * (n // len(BLOB_UNIT) + 1))[:n]


def _env_float(name: str) -> float:
    return float(os.environ.get(name) or 0)


class StandIn(ModelHandler):
    model_name = "standin"
    model_version = "v-test"
    prediction_metrics = (TOP1_PROBABILITY,)

    def __init__(self, *, load_s: float | None = None, predict_s: float | None = None,
                 noisy_load: bool | None = None, fail_load: bool | None = None,
                 load_gate: threading.Event | None = None, predict_gate: threading.Event | None = None):
        self.load_s = _env_float("SLOW_LOAD_S") if load_s is None else load_s
        self.predict_s = _env_float("SLOW_PREDICT_S") if predict_s is None else predict_s
        self.noisy_load = bool(os.environ.get("NOISY_LOAD")) if noisy_load is None else noisy_load
        self.fail_load = bool(os.environ.get("FAIL_LOAD")) if fail_load is None else fail_load
        self.load_gate = load_gate
        self.predict_gate = predict_gate
        self.batches: list[list] = []
        self._lock = threading.Lock()

    def load(self, artifacts_dir, manifest, settings):
        if self.noisy_load:
            # what third-party code does: print, and write to fd 1 directly
            print("Loaded pretrained weights for something")
            sys.stdout.flush()
            os.write(1, b"a C library writing to fd 1\n")
        if self.load_gate is not None:
            self.load_gate.wait(30)
        time.sleep(self.load_s)
        if self.fail_load:
            raise RuntimeError("weights are corrupt")

    def preprocess(self, request):
        body = request.body
        if body.startswith(b"bad"):
            raise BadRequest("the stand-in rejects this input", code="invalid_input")
        if body.startswith(b"preboom"):
            raise RuntimeError(f"preprocess failed, password={SECRET}\nsecond line")
        return body

    def predict(self, items):
        with self._lock:
            self.batches.append(list(items))
        if self.predict_gate is not None:
            self.predict_gate.wait(30)
        delay = self.predict_s
        for item in items:
            match = re.match(rb"sleep:([0-9.]+)", item)
            if match:
                delay = max(delay, float(match.group(1)))
        time.sleep(delay)
        if any(item.startswith(b"boom") for item in items):
            raise ValueError(f"model blew up, password={SECRET}\nsecond line")
        return list(items)

    def postprocess(self, output, request):
        if output.startswith(b"postboom"):
            raise KeyError(SECRET)
        if output.startswith(b"unjson"):
            return {"length": object()}
        return {"length": len(output)}

    def log_fields(self, output):
        if output.startswith(b"logboom"):
            raise RuntimeError(f"log_fields failed, password={SECRET}")
        fields = {"top1_class": "echo", "top1_prob": 1.0}
        match = re.match(rb"big:(\d+)", output)
        if match:
            fields["blob"] = blob(int(match.group(1)))
        return fields
