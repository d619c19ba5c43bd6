"""What the load tools send diabetes (`make load|demo|capacity|review FUNCTION=diabetes`):
real patients' rows (testdata/rows.jsonl) one at a time and in batches, and the client
mistakes it must answer with a JSON 4xx.

Read by load/loadkit/traffic.py (`load_inputs()`), never by the function itself. Each request is
a dict: `label` (what it is), `body` (an object is sent as JSON), and optionally `name`
(its row in Locust's statistics), `weight` (share of the traffic), `predictions` (how many
a 200 carries); a bad request has `kind`, `body`, `expected_status`.
"""
import json
from pathlib import Path

RECORDS = [json.loads(line) for line in (Path(__file__).parent / "testdata" / "rows.jsonl").read_text().splitlines()
           if line.strip()]
ROWS = [record["instance"] for record in RECORDS]
BATCHES = {1: 0.6, 4: 0.3, 16: 0.1}  # rows per request -> share of the requests


def payloads():
    out = []
    for size, share in BATCHES.items():
        starts = range(0, len(ROWS) - size + 1, size)
        weight = share / len(starts)  # each batch size gets its share, split among its requests
        for start in starts:
            first, last = RECORDS[start]["row"], RECORDS[start + size - 1]["row"]
            out.append({"label": f"patients {first}-{last}" if size > 1 else f"patient {first}",
                        "name": f"POST / {size} row{'s' if size > 1 else ''}",
                        "body": {"instances": ROWS[start:start + size]}, "weight": weight, "predictions": size})
    return out


def bad_requests():
    row = ROWS[0]
    return [
        {"kind": "malformed JSON", "body": b'{"instances": [{"age": 0.03,', "expected_status": 400},
        {"kind": "missing feature", "body": {"instances": [{k: v for k, v in row.items() if k != "bmi"}]},
         "expected_status": 400},
        {"kind": "not a number", "body": {"instances": [{**row, "bp": "high"}]}, "expected_status": 400},
        {"kind": "no instances", "body": {"instances": []}, "expected_status": 400},
        {"kind": "too many instances", "body": {"instances": [row] * 65}, "expected_status": 413},
        {"kind": "wrong content type", "body": b"age=0.03", "content_type": "text/plain", "expected_status": 415},
    ]
