"""Build-time step: `python -m torchfaas.prepare` runs the handler's prepare().

The Dockerfile runs it after copying the function, so the image carries the
prepared artifacts and a cold start only loads. Output goes to stderr:
this runs in `docker build`, not under the log contract.
"""
import sys
from pathlib import Path

from .handler_loader import load_handler
from .plain_handler import PlainHandler
from .settings import Settings


def main() -> int:
    settings = Settings()
    handler = load_handler(settings.handler_module)
    if isinstance(handler, PlainHandler):
        print("plain handle(event, context) handler: nothing to prepare", file=sys.stderr)
        return 0
    out = Path(settings.artifacts_dir)
    out.mkdir(parents=True, exist_ok=True)
    handler.prepare(out, settings.for_handler(handler))
    print(f"prepared {handler.model_name} artifacts in {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
