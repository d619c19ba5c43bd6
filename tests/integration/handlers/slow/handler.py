"""A stand-in model whose timing the test controls, for lifecycle and fault tests.

It goes through the real runtime (batching, limits, logging, draining); only
the model is replaced, by one whose load and predict take known times.
"""
import os
import sys
import time

from torchfaas import ModelHandler


class Slow(ModelHandler):
    model_name = "slow-echo"

    def load(self, artifacts_dir, manifest, settings):
        if os.environ.get("NOISY_LOAD"):
            # what third-party code does: print, and write to fd 1 directly
            print("Loaded pretrained weights for something")
            sys.stdout.flush()
            os.write(1, b"a C library writing to fd 1\n")
        time.sleep(float(os.environ.get("SLOW_LOAD_S", "0")))
        if os.environ.get("FAIL_LOAD"):
            raise RuntimeError("weights are corrupt")

    def preprocess(self, request):
        return request.body

    def predict(self, items):
        time.sleep(float(os.environ.get("SLOW_PREDICT_S", "0")))
        if b"boom" in items:
            raise ValueError("model blew up on this batch")
        return [len(item) for item in items]

    def postprocess(self, output, request):
        return {"length": output}

    def log_fields(self, output):
        return {"top1_class": "echo", "top1_prob": 1.0}
