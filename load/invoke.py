"""Send a function's example request to a running function and print the answer.

    python load/invoke.py functions/diabetes [--url http://127.0.0.1:8080]

The example is declared in the function's folder (loadkit/example.py says how).
Prints the HTTP status and the pretty-printed JSON body; exits 1 on a non-2xx answer
or no connection.
"""
import argparse
import json
import sys
from pathlib import Path

import requests

from loadkit.example import MEDIA_TYPES, example_of


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
