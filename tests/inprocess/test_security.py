"""Client-controlled values never become metric labels; the app has no debug routes
and nothing in the runtime or its image turns a debugger on."""
import uuid

from loadkit.localrun import REPO, TEMPLATE
from support.metrics import series


def test_client_controlled_values_never_become_metric_labels(classifier):
    """Unique request ids, paths and tenants: none appears in /metrics, and the number
    of series stops growing (tenants outside TENANTS are `other`)."""
    def burst(n: int) -> list[str]:
        markers = []
        for i in range(n):
            m = uuid.uuid4().hex[:12]
            markers.append(m)
            classifier.post(b"", "image/jpeg", path="/" + ("" if i % 2 else f"p{m}"),
                            headers={"X-Request-Id": f"id{m}", "X-Tenant-Id": f"t{m}"})
        return markers

    markers = burst(10)
    first = classifier.samples()
    markers += burst(30)
    second = classifier.samples()
    assert len(series(second)) == len(series(first))
    names = {k for s in second for k in s.labels}
    assert not names & {"request_id", "path", "trace", "error_message", "client", "ip"}
    values = " ".join(v for s in second for v in s.labels.values())
    assert not [m for m in markers if m in values]
    tenants = {s.labels["tenant"] for s in second if "tenant" in s.labels}
    assert tenants <= {"none", "other", "acme"}


def test_no_debug_server(classifier):
    for path in ("/?__debugger__=yes&cmd=resource&f=debugger.js", "/console"):
        res = classifier.get(path)
        assert res.headers["Content-Type"] == "application/json"
        assert "debugger" not in res.text.lower() or res.status_code != 200 or "predictions" in res.text
    res = classifier.request("PUT", "/", b"x")
    assert "Werkzeug" not in res.text and res.headers["Content-Type"] == "application/json"
    assert not classifier.app.debug
    code = "\n".join(p.read_text() for p in (TEMPLATE / "torchfaas").glob("*.py"))
    code += (TEMPLATE / "index.py").read_text() + (TEMPLATE / "Dockerfile").read_text()
    code += (REPO / "stack.yml").read_text()
    for needle in ("debug=True", "app.run(", "use_debugger", "FLASK_DEBUG", "FLASK_ENV", "DebuggedApplication",
                   "expose_tracebacks"):
        assert needle not in code, needle
