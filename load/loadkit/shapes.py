"""Load shapes, selectable by name: steady, step, spike.

Each is a plain object with one method, `tick(run_time)`: given the seconds since
the run started, it returns `(users, spawn_rate)`, or None to stop the run -
the contract of a Locust LoadTestShape's tick(), with the clock passed in. They
do not import Locust, so they are tested like any function. The locustfile has
exactly one Locust shape (`Profile`) that builds the one named by `--profile` /
PROFILE and calls its tick() with Locust's run time, because Locust would
otherwise run whichever shape class it found first.

    steady  `users` users for `duration` seconds (a soak, a smoke test, the demo)
    step    start at `step_users`, add `step_users` every `step_seconds` up to
            `users`, hold the top step once, then stop: finds a replica's knee
            and makes OpenFaaS scale out step by step
    spike   `users`/6 users for a third of `duration`, then all `users` at once
            for a third, then back: cold starts, queueing, 429s and scale-out lag
"""
from __future__ import annotations

import math
from typing import Protocol

Tick = tuple[int, float] | None  # (users, spawn rate per second), or None: the run is over


class Shape(Protocol):
    def tick(self, run_time: float) -> Tick: ...


class Steady:
    def __init__(self, users: int = 4, duration: float = 60, spawn_rate: float | None = None):
        self.users, self.duration = users, duration
        self.spawn_rate = spawn_rate or max(1.0, users / 2)

    def tick(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        return self.users, self.spawn_rate


class StepRamp:
    def __init__(self, users: int = 32, step_users: int = 2, step_seconds: float = 20):
        self.users, self.step_users, self.step_seconds = users, max(1, step_users), step_seconds
        self.steps = math.ceil(users / self.step_users)

    @property
    def duration(self) -> float:
        return (self.steps + 1) * self.step_seconds  # the top step is held twice as long

    def tick(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        step = min(int(run_time // self.step_seconds) + 1, self.steps)
        return min(step * self.step_users, self.users), float(self.step_users)


class Spike:
    def __init__(self, users: int = 24, duration: float = 90, base_users: int | None = None):
        self.users, self.duration = users, duration
        self.base_users = base_users if base_users is not None else max(1, users // 6)

    def tick(self, run_time: float) -> Tick:
        if run_time >= self.duration:
            return None
        if self.duration / 3 <= run_time < 2 * self.duration / 3:
            return self.users, float(self.users)  # everyone at once: that is the spike
        return self.base_users, float(self.users)


PROFILES = {"steady": Steady, "step": StepRamp, "spike": Spike}
DEFAULT_USERS = {"steady": 4, "step": 32, "spike": 24}


def build(name: str, users: int | None = None, duration: float | None = None,
          step_users: int | None = None, step_seconds: float | None = None) -> Shape:
    """The shape called `name`, with the options that apply to it (None = its default)."""
    if name not in PROFILES:
        raise ValueError(f"unknown load profile {name!r}; choose one of {', '.join(PROFILES)}")
    users = users or DEFAULT_USERS[name]
    if name == "steady":
        return Steady(users, duration or 60)
    if name == "step":
        return StepRamp(users, step_users or max(1, users // 8), step_seconds or 20)
    return Spike(users, duration or 90)
