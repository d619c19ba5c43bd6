"""Process entry point: logs, handler, waitress, readiness, SIGTERM.

Start-up: claim stdout for the JSON log, import the handler, start serving at
once (so /ready can answer 503 while loading), load the model in a thread.
A model that fails to load ends the process with exit code 1.

SIGTERM (forwarded at once by of-watchdog, which keeps routing traffic for
its healthcheck_interval): /ready turns 503, requests are still served for
DRAIN_SECONDS, then the listener closes, every accepted request is finished
and flushed, a `shutdown` line is written and the process exits 0.

SIGINT (Ctrl-C on `make run`): the same without the DRAIN_SECONDS wait, which
only serves the watchdog's routing (a local run has none): the process stops at
once when nothing is in flight, else as soon as what is in flight is answered,
and says so in one stderr line.
"""
import logging
import signal
import sys
import threading
import time

from .artifacts import verify_in_background
from .assembly import Function, assemble
from .handler_loader import load_handler
from .identity import CurrentModel, ModelIdentity
from .logs import EventLog, claim_stdout
from .settings import Settings
from .startup import StartupPhases
from .waitress_channel import WaitressServer


class Server:
    def __init__(self, function: Function):
        settings = self.settings = function.settings
        self.events, self.runtime = function.events, function.runtime
        self.exit_code = 0
        self.http = WaitressServer(function.app, settings)
        self._listener_closed = threading.Event()

    def serve(self) -> int:
        signal.signal(signal.SIGTERM, self._on_sigterm)
        signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._load, name="model-loader", daemon=True).start()
        self.http.run()
        return self.exit_code

    def _load(self):
        if not self.runtime.load():
            self.exit_code = 1
            self.http.call_in_loop(self.http.stop_loop)

    def _on_sigterm(self, signum, _frame):
        self._shutdown(signum, self.settings.drain_seconds)

    def _on_sigint(self, signum, _frame):
        if self._shutting_down():
            return
        inflight = self.runtime.inflight
        now = f"finishing {inflight} request(s) in flight, then stopping" if inflight else \
            "nothing in flight, stopping now"
        print(f"torchfaas: Ctrl-C: {now} (SIGTERM would keep serving {self.settings.drain_seconds:g} s "
              "for the watchdog's routing; a local run has none)", file=sys.stderr, flush=True)
        self._shutdown(signum, 0.0)

    def _shutting_down(self) -> bool:
        return self.runtime.state in ("draining", "stopping")

    def _shutdown(self, signum: int, drain_seconds: float):
        if self._shutting_down():
            return
        self.runtime.begin_drain()
        self.http.start_draining()  # answers close their connections from now on
        self.events.emit("shutdown_started", "signal received, draining", signal=signal.Signals(signum).name,
                         drain_seconds=drain_seconds, inflight=self.runtime.inflight)
        threading.Thread(target=self._drain, args=(drain_seconds,), name="drain", daemon=True).start()

    def shutdown_line_at(self, drain_seconds: float) -> float | None:
        """Under the of-watchdog: when (seconds after SIGTERM) to write the `shutdown` line.

        The watchdog routes for its healthcheck_interval H after SIGTERM, then exits as
        soon as its own requests are answered (at once when idle), and the container
        ends with it: a line written after that is lost, and the watchdog relays our
        stdout. So the line is written a little before H (H - min(1 s, H/2)) while
        the app keeps serving until DRAIN_SECONDS (> H): nothing the watchdog routes
        is refused, and requests answered after the line still get their own lines.
        None (no watchdog, or DRAIN_SECONDS not past that point): the line comes last.
        """
        routing = self.settings.watchdog_routing_s
        if routing is None or routing <= 0:
            return None
        at = routing - min(1.0, routing / 2)
        return at if drain_seconds > at else None

    def _drain(self, drain_seconds: float):
        started = time.monotonic()
        early = self.shutdown_line_at(drain_seconds)
        if early is not None:
            time.sleep(early)
            self.events.emit("shutdown", "drain complete; serving until the watchdog exits",
                             drain_ms=round((time.monotonic() - started) * 1000, 1),
                             inflight=self.runtime.inflight, still_serving=True,
                             serving_until_ms=round(drain_seconds * 1000, 1))
        # still serving: routes are being withdrawn
        time.sleep(max(0.0, drain_seconds - (time.monotonic() - started)))
        self.runtime.stop_accepting()
        self.http.call_in_loop(self._close_listener)
        self._listener_closed.wait(5)
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        while not self._idle() and time.monotonic() < deadline:
            time.sleep(0.02)
        unfinished = 0 if self._idle() else self.runtime.inflight
        self.runtime.stop()
        if early is None or unfinished:  # under the watchdog only if something is wrong
            self.events.emit("shutdown", "shutdown complete", logging.WARNING if unfinished else logging.INFO,
                             drain_ms=round((time.monotonic() - started) * 1000, 1), unfinished=unfinished)
        self.http.call_in_loop(self.http.stop_loop)

    def _idle(self) -> bool:
        """No request in the app, queued in waitress, unsent, or unread in a socket buffer."""
        return not self.runtime.inflight and self.http.idle()

    def _close_listener(self):
        self.http.close_listener()
        self._listener_closed.set()


def main(entered: float | None = None) -> int:
    """Serve the function. `entered`: when index.py's first line ran (default: now),
    where the interpreter's start-up ends and the imports begin (torchfaas.startup)."""
    entered = time.time() if entered is None else entered
    log_stream = claim_stdout()
    events = None
    try:
        settings = Settings()
        settings.apply_malloc()  # before any thread allocates
        events = EventLog(log_stream, CurrentModel(ModelIdentity(settings.function_name)))
        settings.apply_torch_allocator()  # before the handler imports torch
        # hashed on the other core while the handler imports torch
        artifact_check = verify_in_background(settings.artifacts_dir)
        handler = load_handler(settings.handler_module)
        startup = StartupPhases.since(entered)
        function = assemble(settings, handler, log_stream, events, artifact_check=artifact_check, startup=startup)
        # the settings in force, the handler's defaults filled in
        events.emit("startup", "starting", settings=function.settings.public(),
                    python=sys.version.split()[0])
        server = Server(function)
    except Exception as exc:
        if events is None:  # no settings, so no function name yet
            events = EventLog(log_stream, CurrentModel(ModelIdentity("function")))
        events.emit("startup_failed", f"start-up failed: {exc}", logging.ERROR,
                    error=type(exc).__name__, error_message=str(exc)[:500])
        return 1
    return server.serve()
