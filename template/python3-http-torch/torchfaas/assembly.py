"""Wire one function together: identity, log, runtime, metrics and the WSGI app.

`server.main()` serves what this builds; the in-process tests build the same
thing around a stub handler and drive it with Flask's test client.
"""
import time
from dataclasses import dataclass

from flask import Flask

from .app import create_app
from .identity import CurrentModel, ModelIdentity
from .logs import EventLog
from .metrics import Metrics, TenantLabels
from .runtime import Runtime
from .settings import Settings
from .startup import StartupPhases


@dataclass
class Function:
    settings: Settings  # the handler's (Settings.for_handler)
    model: CurrentModel
    events: EventLog
    runtime: Runtime
    metrics: Metrics
    app: Flask


def assemble(settings: Settings, handler, log_stream, events: EventLog | None = None,
             process_started: float | None = None, artifact_check=None,
             startup: StartupPhases | None = None) -> Function:
    """Everything but the model load (`function.runtime.load()`) and the server.

    `artifact_check`: `artifacts.verify_in_background()` started earlier, which
    the load then waits for instead of hashing the artifacts itself. `startup`: the
    process's phases before the load (server.main), which `model_loaded` reports and
    whose process start counts as the cold start's; else the cold start counts from
    `process_started` (default: now)."""
    settings = settings.for_handler(handler)  # e.g. an image function's ImageSettings
    if events is None:
        events = EventLog(log_stream, CurrentModel(ModelIdentity(settings.function_name)))
    if startup is not None:
        process_started = startup.process_started
    runtime = Runtime(settings, handler, events, events.model,
                      time.time() if process_started is None else process_started, artifact_check, startup)
    metrics = Metrics(events.model, TenantLabels(settings.tenants, settings.tenant_header), runtime,
                      handler.prediction_metrics, latency_objective_s=settings.latency_objective_s)
    return Function(settings, events.model, events, runtime, metrics,
                    create_app(runtime, events, metrics, settings))
