"""A function's example request, declared in its folder.

`testdata/example.<ext>`, sent with the media type its extension names (.json ->
application/json, .jpg -> image/jpeg, ...); without one, the first photo in
testdata/ (sorted by name). `make invoke` sends it, and the load sends it for a
function without a `load_inputs.py`.
"""
from pathlib import Path

MEDIA_TYPES = {".json": "application/json", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
               ".png": "image/png", ".webp": "image/webp", ".bin": "application/octet-stream"}
PHOTOS = (".jpg", ".jpeg", ".png", ".webp")


def example_of(function_dir: Path) -> Path:
    """The function's declared example request (see the module docstring)."""
    testdata = Path(function_dir) / "testdata"
    files = sorted(p for p in testdata.glob("*") if p.suffix.lower() in MEDIA_TYPES)
    declared = [p for p in files if p.stem == "example"]
    photos = [p for p in files if p.suffix.lower() in PHOTOS]
    if declared or photos:
        return (declared or photos)[0]
    raise SystemExit(f"{function_dir} declares no example request: add testdata/example.json "
                     "(or another testdata/example.<ext>)")
