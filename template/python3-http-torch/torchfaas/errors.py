"""Errors a request can end with, each with its HTTP status and a stable code.

Handlers raise these for client mistakes; anything else is a server fault (500).
The code is what clients, log lines and SLO queries key on. A full queue is the
batcher's `QueueFull`, answered 429 by the app.
"""


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.headers = headers or {}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class NotReady(ApiError):
    status, code = 503, "not_ready"


class InferenceTimeout(ApiError):
    status, code = 504, "inference_timeout"


class ClientGone(ApiError):
    """The client hung up before its batch ran: not computed, answered to nobody.
    499 as in nginx's "client closed request"; only the log line and metrics see it."""
    status, code = 499, "client_gone"


# werkzeug raises its own HTTP exceptions before our code runs (routing, body limit)
STATUS_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
