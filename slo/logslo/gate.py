"""The HTTP gate: what Flagger's webhooks and Argo Rollouts' web metric ask during a rollout.

`torchfaas-slo serve` keeps one watch per canary (namespace, name) and answers the
rollout controllers from its document (`watches.document(namespace, name, metadata)`):

    POST /flagger/rollback            200 exactly on hold: Flagger rolls back at once
    POST /flagger/confirm-promotion   200 only on promote: Flagger waits and asks again
    POST /flagger/rollout             200 unless hold: each analysis iteration's check
    GET|POST /argo/<namespace>/<name> always 200 with the verdict and figures as JSON
    GET /healthz, GET /ready          the gate's own liveness and readiness

A look whose data could not be read (Loki down, slow, 429, 5xx) decides nothing, so a
data fault answers like "watching": no promotion, no rollback. Only the exact verdicts
"hold" and "promote" ever make a controller act; anything else is a wait. Every answer,
errors included, is JSON.
"""

from __future__ import annotations

import json
import re
import sys
import time
import traceback

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from .report import finite

HOLD, PROMOTE = "hold", "promote"
# the metadata keys passed on to the watches; Flagger's webhook metadata may carry
# others (tokens, commands) that are no business of the watch. `revision` is Flagger's
# checksum or Argo's pod-template hash: a new rollout of the same canary has a new one.
METADATA_KEYS = ("function", "baseline", "candidate", "revision")
CONTRACT_KEYS = ("contract", "unit", "estimate", "low", "high", "bound", "verdict")
# Kubernetes object names: DNS-1123 labels for namespaces, subdomains for names
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
# a webhook payload is a few hundred bytes; anything near this is not one
MAX_BODY_BYTES = 64 * 1024

# Which Flagger hook passes (answers 200) on which verdict, and why:
#   rollback: a 2xx makes Flagger roll back at once, so only a confident hold may pass.
#   confirm-promotion: a non-2xx keeps the canary waiting (and asked again each interval).
#   rollout: a non-2xx counts toward the analysis threshold and ends in a rollback, so it
#   fails only on hold, never while the watch waits or its data is failing.
FLAGGER_HOOKS = {
    "rollback": lambda verdict: verdict == HOLD,
    "confirm-promotion": lambda verdict: verdict == PROMOTE,
    "rollout": lambda verdict: verdict != HOLD,
}


class BadPayload(ValueError):
    """The request cannot name a canary: answered 400."""


class UnknownCanary(LookupError):
    """The watches know no such canary (their KeyError): answered 404."""


def make_app(watches, *, log=True) -> Flask:
    """The gate's WSGI app over `watches` (`document(namespace, name, metadata) -> dict`).

    `log`: one JSON line per request on stdout (False: none; a file object: there)."""
    app = Flask("logslo.gate", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    watch = watcher(watches)
    add_flagger_hooks(app, watch)
    add_argo_metric(app, watch)
    add_own_routes(app)
    add_error_handlers(app)
    if log:
        add_request_log(app, None if log is True else log)
    return app


def watcher(watches):
    """`watch(namespace, name, metadata)`: the canary's document, its names checked; its
    verdict is kept for the request's log line."""

    def watch(namespace: str, name: str, metadata: dict) -> dict:
        check_names(namespace, name)
        try:
            doc = watches.document(namespace, name, metadata)
        except KeyError as exc:
            raise UnknownCanary(f"{namespace}/{name}", exc.args[0] if exc.args else "") from exc
        if not isinstance(doc, dict):
            raise TypeError(f"the watch answered {type(doc).__name__}, not a document")
        g.verdict = doc.get("verdict")
        return doc

    return watch


def add_flagger_hooks(app: Flask, watch) -> None:
    """Flagger: POST {"name", "namespace", "phase", "checksum", "metadata": {...}}."""
    def flagger_hook(hook: str):
        def answer():
            payload = request.get_json(force=True, silent=True)
            if not isinstance(payload, dict):
                raise BadPayload("the body is not a JSON object (Flagger sends "
                                 '{"name", "namespace", "phase", "checksum", "metadata"})')
            metadata = pick_metadata(payload.get("metadata"))
            if isinstance(payload.get("checksum"), str) and payload["checksum"]:
                metadata.setdefault("revision", payload["checksum"])
            doc = watch(payload.get("namespace"), payload.get("name"), metadata)
            passed = FLAGGER_HOOKS[hook](doc.get("verdict"))
            # 409, not 5xx: Flagger's client retries a 5xx, and nothing failed here
            return reply(200 if passed else 409, {"hook": hook, "passed": passed, **flagger_view(doc)})
        answer.__name__ = "flagger_" + hook.replace("-", "_")
        return answer

    for hook in FLAGGER_HOOKS:
        app.add_url_rule(f"/flagger/{hook}", view_func=flagger_hook(hook), methods=["POST"])


def add_argo_metric(app: Flask, watch) -> None:
    """Argo Rollouts: the web metric reads `{$.verdict}`."""
    # Always 200 when the gate can answer: Argo counts a non-2xx as a measurement Error,
    # and consecutive errors past consecutiveErrorLimit abort the rollout (a rollback on
    # the gate's fault). The AnalysisTemplate's conditions decide, not the status code.
    @app.route("/argo/<namespace>/<name>", methods=["GET", "POST"])
    def argo(namespace, name):
        if request.method == "POST" and request.get_data():
            body = request.get_json(force=True, silent=True)
            if not isinstance(body, dict):
                raise BadPayload("the body is not a JSON object of metadata "
                                 '({"function", "baseline", "candidate"})')
        else:
            body = request.args.to_dict()
        return reply(200, argo_view(watch(namespace, name, pick_metadata(body))))


def add_own_routes(app: Flask) -> None:
    """The gate's own liveness and readiness."""
    @app.route("/healthz")
    def healthz():
        return reply(200, {"status": "ok"})

    # Ready as soon as it serves, whatever Loki does: an unready gate has no endpoints,
    # and a controller that cannot reach it fails its check (a rollback, not a wait).
    # A Loki fault is answered per canary, in the document.
    @app.route("/ready")
    def ready():
        return reply(200, {"status": "ready"})


def add_error_handlers(app: Flask) -> None:
    """Errors answered in JSON too."""
    @app.errorhandler(BadPayload)
    def bad_request(exc):
        return reply(400, {"error": str(exc)})

    # A canary the watches cannot find is a misconfiguration that must show: Flagger's
    # rollout hook and Argo's metric count it against the rollout (and end it) rather
    # than leave an unjudged candidate serving for ever.
    @app.errorhandler(UnknownCanary)
    def unknown_canary(exc):
        canary, detail = exc.args
        return reply(404, {"error": f"unknown canary {canary}", "detail": str(detail)})

    @app.errorhandler(HTTPException)
    def http_error(exc):
        body = {"error": exc.description or exc.name}
        if exc.code in (404, 405):  # a webhook URL or method mistyped: list what is served
            body["routes"] = sorted(f"{' '.join(sorted(r.methods - {'HEAD', 'OPTIONS'}))} {r.rule}"
                                    for r in app.url_map.iter_rules())
        return reply(exc.code or 500, body)

    @app.errorhandler(Exception)
    def internal_error(exc):
        traceback.print_exception(exc, file=sys.stderr)
        return reply(500, {"error": f"internal error: {type(exc).__name__}"})


def add_request_log(app: Flask, stream) -> None:
    """One JSON line per request on `stream` (None: stdout)."""

    @app.before_request
    def start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def log_line(response):
        line = {"ts": round(time.time(), 3), "method": request.method, "path": request.path,
                "status": response.status_code,
                "ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1)}
        if "verdict" in g:
            line["verdict"] = g.verdict
        out = stream or sys.stdout  # looked up per line: stdout may be replaced after start
        out.write(json.dumps(line) + "\n")
        out.flush()
        return response


def check_names(namespace, name) -> None:
    if not isinstance(namespace, str) or not _NAMESPACE.match(namespace):
        raise BadPayload(f"no valid namespace: {namespace!r}")
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadPayload(f"no valid name: {name!r}")


def pick_metadata(metadata) -> dict:
    """The metadata the watch may use: string values of METADATA_KEYS, empty ones dropped."""
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise BadPayload("metadata is not a JSON object")
    picked = {}
    for key in METADATA_KEYS:
        value = metadata.get(key)
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise BadPayload(f"metadata {key} is not a string")
        picked[key] = value
    return picked


def flagger_view(doc: dict) -> dict:
    """What Flagger shows of a failed check (its events carry the body): short."""
    return {key: doc.get(key) for key in ("verdict", "final", "reason", "data_fault", "fault_kind")}


def argo_view(doc: dict) -> dict:
    """The web metric's JSON: the verdict and the figures behind it."""
    return {
        "verdict": doc.get("verdict"),
        "final": bool(doc.get("final")),
        "reason": doc.get("reason"),
        "function": doc.get("function"),
        "baseline": doc.get("baseline"),
        "candidate": doc.get("candidate"),
        "requests": doc.get("requests") or {},
        "contracts": [{key: c.get(key) for key in CONTRACT_KEYS} for c in doc.get("contracts") or []],
        "data_fault": doc.get("data_fault"),
        "fault_kind": doc.get("fault_kind"),
        "decided_look": doc.get("decided_look"),
    }


def reply(status: int, body: dict) -> Response:
    text = json.dumps(finite(body), allow_nan=False, default=str)
    return Response(text + "\n", status=status, mimetype="application/json")


def make_server(app, host: str = "0.0.0.0", port: int = 9090, threads: int = 4):
    """A waitress server for `app` (port 0: a free one, `.effective_port` says which); `.run()` serves."""
    import waitress.server

    return waitress.server.create_server(app, host=host, port=port, threads=threads, ident="torchfaas-slo")


def serve(app, host: str = "0.0.0.0", port: int = 9090, threads: int = 4) -> None:
    """Serve `app` with waitress, as the function itself is served, until interrupted."""
    server = make_server(app, host, port, threads)
    print(json.dumps({"event": "gate_listening", "host": host, "port": int(server.effective_port)}), flush=True)
    server.run()
