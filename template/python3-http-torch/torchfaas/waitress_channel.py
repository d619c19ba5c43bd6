"""waitress channel and task tweaks that keep the one-line-per-request promise.

Kept apart from server.py: they reach into waitress internals (HTTPChannel.service,
WSGITask.build_response_header), so a waitress upgrade is checked here.
"""
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.task import WSGITask


class DrainingTask(WSGITask):
    """Once SIGTERM has arrived, every answer closes its connection (`Connection: close`).

    Keep-alive clients (the watchdog's proxy among them) then open a new connection
    for their next request, which the closed listener refuses cleanly, instead of
    sending it on a kept-alive connection that the exiting process resets (a request
    sent, never answered, never logged).
    """

    def build_response_header(self):
        if getattr(self.channel.server, "draining", False):
            self.set_close_on_finish()
        return super().build_response_header()


class LoggedChannel(HTTPChannel):
    """A waitress channel that never drops a whole request without the app seeing it.

    waitress skips a request whose client hung up while it waited for a free
    worker thread (`HTTPChannel.service`: `if self.connected: task.service()`), so
    it got no log line. Here the app still runs it: nothing can be sent back, but
    the request is answered internally and logged once, with `client_gone: true`.
    """

    task_class = DrainingTask

    def service(self):
        if not self.connected and self.requests and not self.requests[0].error:
            try:
                self.task_class(self, self.requests[0]).service()
            except ClientDisconnected:
                pass  # expected: the answer has nowhere to go
            except Exception:
                self.logger.exception("Exception while serving a disconnected client")
        super().service()  # waitress's own clean-up of the closed channel
