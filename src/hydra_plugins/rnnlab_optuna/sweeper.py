"""The Hydra Sweeper class; the work is in ``_impl`` so plugin discovery stays fast.

Hydra imports every module of every plugin at start-up (even for a single run), so
this module imports neither Optuna nor the search-space code until a sweep starts.
"""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class OptunaSweeper(Sweeper):
    """Runs trials of one Optuna study through the configured Hydra launcher."""

    def __init__(self, **kwargs: Any) -> None:
        from ._impl import OptunaSweep

        self._sweep = OptunaSweep(**kwargs)

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self._sweep.setup(hydra_context=hydra_context, task_function=task_function,
                          config=config)

    def sweep(self, arguments: list[str]) -> Any:
        return self._sweep.sweep(arguments)
