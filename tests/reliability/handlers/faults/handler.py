"""A stand-in model that misbehaves on request, for the fault suite.

It goes through the real runtime (ids, limits, batching, errors, the log line);
only the model is replaced. What it does is chosen by the request body:

    b"bad..."        preprocess raises BadRequest (a client mistake, 400)
    b"preboom..."    preprocess raises RuntimeError (a fault in the handler, 500)
    b"boom..."       predict raises for the whole batch (500 for every member)
    b"postboom..."   postprocess raises KeyError (500)
    b"unjson..."     postprocess returns a body that is not JSON-serialisable (500)
    b"logboom..."    log_fields raises (500)
    b"big:N..."      log_fields adds a field of N characters (quotes, backslashes,
                     newlines, non-ASCII: it must be escaped into one line)
    b"sleep:S..."    predict sleeps S seconds for its batch

SLOW_PREDICT_S (env) adds a sleep to every batch. Error messages carry a fake
secret and a newline, so tests can check they never reach the client.
"""
import os
import re
import time

from torchfaas import BadRequest, ModelHandler

SECRET = "s3cr3t-db-password"
BLOB_UNIT = 'ab"c\\d\n\té☃ '  # 12 characters that JSON must escape or encode


def blob(n: int) -> str:
    return (BLOB_UNIT * (n // len(BLOB_UNIT) + 1))[:n]


class Faults(ModelHandler):
    model_name = "faults"
    model_version = "v-test"

    def load(self, artifacts_dir, manifest, settings):
        pass

    def preprocess(self, request):
        body = request.body
        if body.startswith(b"bad"):
            raise BadRequest("the stand-in rejects this input", code="invalid_input")
        if body.startswith(b"preboom"):
            raise RuntimeError(f"preprocess failed, password={SECRET}\nsecond line")
        return body

    def predict(self, items):
        delay = float(os.environ.get("SLOW_PREDICT_S", "0"))
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
