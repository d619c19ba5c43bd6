"""Send a function's example request to a running function and print the answer.

    python load/invoke.py functions/diabetes [--url http://127.0.0.1:8080]

The example is declared in the function's folder: `testdata/example.<ext>`, sent with
the media type its extension names (.json -> application/json, .jpg -> image/jpeg, ...);
without one, the first photo in testdata/ (sorted by name). Prints the HTTP status
and the pretty-printed JSON body; exits 1 on a non-2xx answer or no connection.
"""
import argparse
import json
import sys
from pathlib import Path

import requests

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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("function_dir", type=Path)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    args = parser.parse_args(argv)
    example = example_of(args.function_dir)
    url = args.url.rstrip("/") + "/"
    print(f"POST {url} {example} ({MEDIA_TYPES[example.suffix.lower()]})", file=sys.stderr)
    try:
        res = requests.post(url, data=example.read_bytes(), timeout=30,
                            headers={"Content-Type": MEDIA_TYPES[example.suffix.lower()]})
    except requests.ConnectionError:
        print(f"nothing answers at {url}: start the function first (make run FUNCTION={args.function_dir.name})",
              file=sys.stderr)
        return 1
    print(f"HTTP {res.status_code}", file=sys.stderr)
    try:
        print(json.dumps(res.json(), indent=2))
    except ValueError:
        print(res.text)
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())
