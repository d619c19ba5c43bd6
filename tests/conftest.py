"""Fixtures every suite shares: function builds and the one way to start a function process."""
from pathlib import Path

import pytest

from loadkit.localrun import prepare_artifacts, shrinkwrap
from support import system_tools
from support.function_process import TEST_FUNCTIONS, FunctionProcess, real_artifacts


@pytest.fixture(scope="session")
def build(tmp_path_factory):
    """build(name) -> the folder faas-cli would build for TEST_FUNCTIONS[name] (once per session).

    A real function's build-time artifacts (functions/<name>) are prepared into
    artifacts/<name> (as `make install FUNCTION=<name>` does) the first time it is asked for.
    """
    builds: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in builds:
            folder = shrinkwrap(TEST_FUNCTIONS[name], tmp_path_factory.mktemp("build") / name)
            if real_artifacts(name) is not None:
                prepare_artifacts(folder, real_artifacts(name))
            builds[name] = folder
        return builds[name]

    return get


@pytest.fixture(scope="session")
def classifier_build(build):
    """build/classifier as faas-cli lays it out, with its build-time artifacts (one per session)."""
    return build("classifier")


@pytest.fixture(scope="module")
def function_process(build):
    """function_process(function="classifier", env=None, ...) -> a started FunctionProcess.

    `function` names a TEST_FUNCTIONS entry (built once per session) or is a build
    folder. A real function serves artifacts/<name> unless `env` sets ARTIFACTS_DIR.
    `start=False` returns it unstarted (call `.start()`), `wait_ready=False` returns
    as soon as it runs, `prefix` is a command to run it under. Every process is
    stopped when the module ends, or at the end of a `with` block:

        with function_process("standin", env={"SLOW_PREDICT_S": "1"}) as fn: ...
    """
    processes: list[FunctionProcess] = []

    def launch(function: str | Path = "classifier", env: dict | None = None, *,
              function_name: str | None = None, start: bool = True, wait_ready: bool = True,
              timeout: float = 90, prefix: tuple = ()) -> FunctionProcess:
        is_name = isinstance(function, str)
        folder = build(function) if is_name else Path(function)
        artifacts = real_artifacts(function) if is_name else None
        defaults = {"ARTIFACTS_DIR": str(artifacts)} if artifacts is not None else {}
        fn = FunctionProcess(folder, env={**defaults, **(env or {})},
                             name=function_name or (function if is_name else "classifier"))
        processes.append(fn)
        return fn.start(wait_ready=wait_ready, timeout=timeout, prefix=prefix) if start else fn

    yield launch
    for fn in processes:
        fn.stop()


def pytest_terminal_summary(terminalreporter):
    """One line naming the suites skipped for want of a system tool and how to install it."""
    line = system_tools.summary()
    if line:
        terminalreporter.write_line(line, yellow=True, bold=True)
