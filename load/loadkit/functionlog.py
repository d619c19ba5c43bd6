"""A function's JSON log, read one way: one JSON object per line (docs: the log contract).

Every tool that reads a log file the function wrote (the log summary, goodput, the
soak, the tests through `localrun.FunctionProcess`) reads it with `read_log`, so a
line that breaks the contract is counted the same way everywhere.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple


class FunctionLog(NamedTuple):
    lines: list[dict]   # the JSON objects, in order
    broken: list[str]   # lines that are not a JSON object (the contract broken)


def raw_lines(path: Path | str, whole_lines_only: bool = False) -> list[str]:
    """The text lines of the file at `path`, without their newlines.

    `whole_lines_only`: leave out a last line whose newline is not written yet, as a
    file being written may end (the function writes a line and its newline in one go).
    """
    # split on newlines only: str.splitlines would also split inside a line at \x0c or \u2028
    lines = Path(path).read_text(encoding="utf-8", errors="replace").split("\n")
    last = lines.pop()  # "" after the final newline; else a line still being written
    if last and not whole_lines_only:
        lines.append(last)
    return lines


def read_log(path: Path | str, since: int = 0, whole_lines_only: bool = False) -> FunctionLog:
    """The log at `path` from its line `since` (0: the first) on; see raw_lines."""
    lines: list[dict] = []
    broken: list[str] = []
    for line in raw_lines(path, whole_lines_only)[since:]:
        try:
            parsed = json.loads(line)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            lines.append(parsed)
        else:
            broken.append(line)
    return FunctionLog(lines, broken)
