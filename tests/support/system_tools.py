"""The system tools some suites need (Prometheus, podman, Chromium...), asked for in one way.

`require("prometheus", suite="tests/metrics")` returns the tool's path. Without it the
test skips on a developer's machine and fails under CI (`CI` set), where
.ci/install-system-tools has installed it. Every skip is recorded, and the run ends
with one line naming what was skipped and the command that installs it
(tests/conftest.py's pytest_terminal_summary).
"""
import os
import shutil

import pytest

INSTALL = "sudo bash .ci/install-system-tools"
ROOT = "root"

# suite -> the tools it missed, in the order asked for
MISSING: dict[str, list[str]] = {}


def require(*tools: str, suite: str, root: bool = False) -> dict[str, str]:
    """{tool: path} for every tool (`a|b`: the first of a or b found); skip (or fail under CI) without.

    `root=True`: the suite also needs to run as root (podman's storage, debootstrap).
    """
    found, missing = {}, []
    for tool in tools:
        path = next(filter(None, map(shutil.which, tool.split("|"))), None)
        if path:
            found[tool] = path
        else:
            missing.append(tool.split("|")[0])
    if root and os.geteuid() != 0:
        missing.append(ROOT)
    if missing:
        message = f"{suite} needs {', '.join(missing)} ({INSTALL} installs the tools)"
        if os.environ.get("CI"):
            pytest.fail(message)
        recorded = MISSING.setdefault(suite, [])
        recorded += [tool for tool in missing if tool not in recorded]
        pytest.skip(message)
    return found


def summary() -> str | None:
    """The one line that ends a run in which suites skipped for want of a tool, else None."""
    if not MISSING:
        return None
    suites = "; ".join(f"{suite} ({', '.join(tools)})" for suite, tools in MISSING.items())
    tools = {tool for missed in MISSING.values() for tool in missed}
    how = f"`{INSTALL}` installs the tools, then `make test` runs them (or `make ci`: both at once)"
    if ROOT in tools:
        how += "; the image suite also runs as root only"
    return f"skipped for want of system tools: {suites}. {how}"
