"""The two reports: a human one for stdout, a JSON one for machines (SLO_REPORT)."""

from __future__ import annotations

import json
import time


def human(results: list, source: str, at: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))
    failed = [r for r in results if not r.passed]
    lines = [f"SLO report at {stamp} ({at:g}) from {source}", ""]
    lines += [r.line() for r in results]
    lines.append("")
    if failed:
        lines.append(f"{len(failed)} of {len(results)} SLO checks VIOLATED:")
        lines += [f"  - {r.contract}: {r.miss}" for r in failed]
    else:
        lines.append(f"all {len(results)} SLO checks passed")
    return "\n".join(lines)


def as_json(results: list, source: str, at: float, errors: list) -> dict:
    return {
        "evaluated_at": at,
        "source": source,
        "passed": not errors and all(r.passed for r in results),
        "violations": sum(not r.passed for r in results),
        "errors": errors,
        "contracts": [r.as_json() for r in results],
    }


def write_json(path: str, document: dict) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2, sort_keys=False)
        handle.write("\n")
