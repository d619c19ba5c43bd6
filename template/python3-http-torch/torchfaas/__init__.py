"""torchfaas: the runtime of the python3-http-torch OpenFaaS template."""
from .errors import (ApiError, BadRequest, InferenceTimeout, MethodNotAllowed, NotFound,  # noqa: F401
                     PayloadTooLarge, UnsupportedMediaType)
from .model_handler import InferenceRequest, ModelHandler  # noqa: F401
