"""torchfaas: the runtime of the python3-http-torch OpenFaaS template.

What a handler needs: `ModelHandler` (the lifecycle it declares), `InferenceRequest`,
the prediction metrics it declares (`ValueHistogram`, `LabelCounter`, `TOP1_PROBABILITY`),
`Settings` (the runtime's settings, passed to prepare() and load(); `env()` builds a
function's own settings the same way) and the client errors to raise. Tools for
writing a handler (image decoding, manifests, AOTInductor packages) are in
`torchfaas.toolkit`.
"""
from .errors import (
    ApiError,
    BadRequest,
    InferenceTimeout,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from .model_handler import InferenceRequest, ModelHandler
from .predictions import TOP1_PROBABILITY, LabelCounter, ValueHistogram
from .settings import Settings, env

__all__ = ["ApiError", "BadRequest", "InferenceTimeout", "MethodNotAllowed", "NotFound", "PayloadTooLarge",
           "UnsupportedMediaType", "InferenceRequest", "ModelHandler", "TOP1_PROBABILITY", "LabelCounter",
           "ValueHistogram", "Settings", "env"]
