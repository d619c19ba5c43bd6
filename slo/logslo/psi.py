"""Population Stability Index between two class distributions.

PSI = sum over classes of (p - q) * ln(p / q). Rule of thumb used by model monitoring:
< 0.1 no real change, 0.1-0.25 moderate shift, > 0.25 the population has changed.
A class absent on one side gets a small floor share, else ln(0) makes PSI infinite.
"""

from __future__ import annotations

import math

FLOOR = 1e-4


def psi(current: dict, baseline: dict, floor: float = FLOOR) -> float:
    classes = sorted(set(current) | set(baseline))  # fixed order: same float sum every run
    total = 0.0
    for name in classes:
        p = max(current.get(name, 0.0), floor)
        q = max(baseline.get(name, 0.0), floor)
        total += (p - q) * math.log(p / q)
    return total


def biggest_movers(current: dict, baseline: dict, count: int = 3) -> list:
    """The classes whose share moved most, to say *what* shifted, not only that it did."""
    classes = sorted(set(current) | set(baseline))  # fixed order: same float sum every run
    moves = [(name, baseline.get(name, 0.0), current.get(name, 0.0)) for name in classes]
    return sorted(moves, key=lambda m: -abs(m[2] - m[1]))[:count]
