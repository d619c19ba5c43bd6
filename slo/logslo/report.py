"""The two reports: a human one for stdout, a JSON one for machines (SLO_REPORT)."""

from __future__ import annotations

import json
import math
import time


def finite(value):
    """The value with NaN and infinities as null, in dicts and lists too: JSON has neither,
    and Go's decoder (Argo's) refuses them. A figure that could not be measured is null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def evaluation_time(at: float) -> str:
    """`1796537400 (2026-12-06T04:10:00Z)`: the unix seconds whole, as SLO_AT takes them
    back (`{:g}` printed 1.79654e+09), and the same instant in ISO 8601 UTC."""
    seconds = str(int(at)) if float(at).is_integer() else repr(float(at))
    return f"{seconds} ({time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(at))})"


def human(results: list, source: str, at: float) -> str:
    failed = [r for r in results if not r.passed]
    lines = [f"SLO report at {evaluation_time(at)} from {source}", ""]
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
