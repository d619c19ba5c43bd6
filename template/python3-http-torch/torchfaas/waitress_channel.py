"""waitress, and the channel and task tweaks that keep the one-line-per-request promise.

Everything that reaches into waitress internals (HTTPChannel.service,
WSGITask.build_response_header, the server's socket map, channels, task queue and
trigger) or its own environ keys is here, so a waitress upgrade is checked here;
server.py only calls `WaitressServer`, the app `client_gone_check`.
"""
import select
from collections.abc import Callable

import waitress
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.task import WSGITask


def client_gone_check(environ: dict) -> Callable[[], bool] | None:
    """waitress's `waitress.client_disconnected`: a callable that says whether the
    request's client has hung up; None when not served by waitress (a test client)."""
    return environ.get("waitress.client_disconnected")


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


class WaitressServer:
    """One waitress server with the runtime's tuning, and the shutdown steps it needs."""

    def __init__(self, app, settings):
        self.wsgi = waitress.create_server(
            app, host=settings.host, port=settings.port, threads=settings.threads,
            # waitress answers bodies over its own limit itself (plain text, no log
            # line); keep it above ours so the app sees and logs the 413.
            max_request_body_size=settings.max_body_bytes * 4 + 1024,
            # lets the app see a client that hung up while it waited
            channel_request_lookahead=1,
            # a photo in a few reads of the socket, not 8 KiB (waitress's default) per
            # pass of the main loop: measured 0.63 vs 0.75 ms of server CPU per
            # request with a stand-in model and the real JPEGs (docs/benchmarks.md, "The fast path")
            recv_bytes=256 * 1024,
            # an answer leaves in one send() by the socket loop, not as two (waitress's
            # default of 1 sends the header and then the body from the request thread,
            # two TCP segments that wake the client twice): with a stand-in model 0.95 vs
            # 1.08 ms of server CPU per request at c1 (docs/benchmarks.md, "The fast path"). Bodies past
            # this size are still sent as they are written. (waitress marks the option
            # deprecated; the pinned 3.0.2 has it, an upgrade that drops it fails at start.)
            send_bytes=64 * 1024,
            connection_limit=max(100, settings.threads * 8), ident="torchfaas")
        self.wsgi.channel_class = LoggedChannel

    def run(self):
        """Serve until `stop_loop()`, then let the worker threads finish what they hold."""
        self.wsgi.run()  # returns once stop_loop has emptied the loop's socket map
        self.wsgi.task_dispatcher.shutdown(cancel_pending=False, timeout=1)

    def start_draining(self):
        self.wsgi.draining = True  # DrainingTask: answers close their connections from now on

    def call_in_loop(self, fn):
        # waitress's loop is single-threaded; its trigger runs thunks inside it
        self.wsgi.trigger.pull_trigger(fn)

    def idle(self) -> bool:
        """No request queued in waitress, unsent, or unread in a socket buffer."""
        if self.wsgi.task_dispatcher.queue:
            return False
        channels = list(self.wsgi.active_channels.values())
        if not all(not ch.requests and not ch.total_outbufs_len for ch in channels):
            return False
        try:  # bytes (or an EOF) the loop has not read yet: a request may be arriving
            return not select.select([ch.socket for ch in channels], [], [], 0)[0]
        except (OSError, ValueError):  # a channel closed meanwhile: look again
            return False

    def close_listener(self):
        """In the loop: stop accepting, after taking in the connections already made."""
        wsgi = self.wsgi
        wsgi.accepting = False
        # Connections the kernel has completed but waitress has not accepted yet
        # would be reset by close(): take them in first (their requests are
        # answered 503 draining and logged). A connect after this is refused.
        for _ in range(wsgi.adj.connection_limit):
            if not select.select([wsgi.socket], [], [], 0)[0]:
                break
            wsgi.handle_accept()
        wsgi.del_channel()
        wsgi.socket.close()

    def stop_loop(self):
        """In the loop: end run(). waitress's loop runs while its socket map is non-empty
        (it swallows exceptions raised in thunks), so closing everything is how it ends."""
        for dispatcher in list(self.wsgi._map.values()):
            dispatcher.close()
