"""Errors a request can end with, each with its HTTP status and a stable code.

Handlers raise these for client mistakes; anything else is a server fault (500).
The code is what clients, log lines and SLO queries key on. The runtime raises
the rest (a full queue, not ready, a timeout, a client that hung up).
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


class QueueFull(ApiError):
    """The batcher's queue is full: the client should retry after `retry_after_s`."""
    status, code = 429, "queue_full"

    def __init__(self, retry_after_s: int = 1):
        super().__init__("too many requests queued; retry later", headers={"Retry-After": str(retry_after_s)})


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
