"""Run behave over a features folder with this package's steps and hooks.

A features folder needs only its `.feature` files: the steps (steps.py) and the hooks
(hooks.py) come from the package. Extra step files a team writes for its own phrases
may sit in the folder's `steps/` and are loaded after ours; an `environment.py` there is
not used (the hooks own the report and the exit code).
"""

from __future__ import annotations

import os

from behave.configuration import Configuration
from behave.exception import ConfigError
from behave.runner import Runner, the_step_registry

from . import hooks, steps

# How the report reads in a CI log: one line per step, no timings, output as it happens.
BEHAVE_ARGS = ["--format", "plain", "--no-timings", "--no-capture"]


class SloRunner(Runner):
    """behave's Runner, with the hooks and steps taken from logslo instead of the folder.

    The hooks get `config.slo_settings` (set by run(); read from os.environ when absent).
    """

    def setup_paths(self):
        paths = [getattr(p, "filename", p) for p in self.config.paths] or [self.DEFAULT_DIRECTORY]
        base_dir = os.path.abspath(paths[0])
        if os.path.isfile(base_dir):
            base_dir = os.path.dirname(base_dir)
        if not os.path.isdir(base_dir):
            raise ConfigError(f"no features folder {paths[0]!r}")
        if not any(name.endswith(".feature") for _, _, names in os.walk(base_dir, followlinks=True)
                   for name in names):
            raise ConfigError(f"no .feature files in {base_dir!r}")
        self.base_dir = self.config.base_dir = base_dir
        self.config.paths = paths
        self.path_manager.add(base_dir)  # a team's own step files may import helpers beside them

    def load_hooks(self, filename=None):
        hooks_class = getattr(self.config, "slo_hooks", None) or hooks.Hooks
        self.hooks.update(hooks_class(getattr(self.config, "slo_settings", None)).as_dict())

    def load_step_definitions(self, extra_step_paths=None):
        if self.step_registry is None:
            self.step_registry = the_step_registry  # what run_model() would pick
        (getattr(self.config, "slo_steps", None) or steps.register)(self.step_registry)
        own = os.path.join(self.base_dir, self.config.steps_dir)
        if os.path.isdir(own):
            super().load_step_definitions(extra_step_paths)
        elif extra_step_paths:
            from behave.runner_util import load_step_modules
            load_step_modules(list(extra_step_paths))


def run(paths: list, settings=None, tags: str | None = None, behave_args: list = (),
        hooks_class=None, register_steps=None) -> int:
    """behave over `paths` (folders or .feature files); 0 when every contract holds.

    `settings` (settings.Settings) is what the hooks are given.
    """
    from behave.__main__ import run_behave

    args = list(BEHAVE_ARGS)
    if tags:
        args += ["--tags", tags]
    args += list(behave_args) + [str(p) for p in paths]
    try:
        config = Configuration(args)
    except ConfigError as err:
        print(f"ConfigError: {err}")
        return 1
    config.slo_settings = settings
    config.slo_hooks = hooks_class  # None: the SLO check's (hooks.Hooks)
    config.slo_steps = register_steps  # None: steps.register
    return run_behave(config, runner_class=SloRunner)
