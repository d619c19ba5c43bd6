"""What the template's Dockerfile says, read once for every test that checks against it."""
import re

from loadkit.localrun import TEMPLATE

DOCKERFILE = TEMPLATE / "Dockerfile"


def instructions() -> list[str]:
    """The Dockerfile's lines with `\\` continuations joined and comments dropped."""
    joined, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or not line:
            continue
        current += line[:-1] + " " if line.endswith("\\") else line
        if not line.endswith("\\"):
            joined.append(current)
            current = ""
    return joined


def image_env() -> dict:
    """The final stage's ENV as KEY="value" pairs (the watchdog's and the app's defaults)."""
    return dict(re.findall(r'^\s+([A-Za-z_]+)="([^"]*)"', DOCKERFILE.read_text(), flags=re.M))
