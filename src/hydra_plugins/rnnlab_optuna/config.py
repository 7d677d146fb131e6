"""The sweeper's config schema, registered as ``hydra/sweeper=rnnlab_optuna``."""

# no ``from __future__ import annotations`` here: Hydra runs plugin modules before
# registering them in sys.modules, and dataclasses then cannot resolve string annotations
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class OptunaSweeperConf:
    """Keys under ``hydra.sweeper`` (the names the old Hydra Optuna plugin used).

    ``n_trials`` is the number of trials *this process* adds to the study, so several
    processes (or machines) pointed at one ``storage`` and ``study_name`` each add
    theirs, and running the same command again continues the study.
    """

    _target_: str = "hydra_plugins.rnnlab_optuna.sweeper.OptunaSweeper"
    # the sweeper builds the sampler itself (it may change the seed first)
    _recursive_: bool = False
    # "minimize" or "maximize", or a list of them for a multi-objective study
    direction: Any = "minimize"
    # required with a storage: the name is how a later command finds the study again
    study_name: str | None = None
    # null: in memory, gone with the process; sqlite:///path/study.db or postgresql://...
    storage: str | None = None
    # trials this process adds (not the study's total)
    n_trials: int = 20
    # trials handed to the launcher at once (joblib, submitit run them in parallel)
    n_jobs: int = 1
    # fraction of a batch that may fail before the sweep stops
    max_failure_rate: float = 0.0
    # any optuna.samplers class and its keyword arguments
    sampler: dict[str, Any] = field(
        default_factory=lambda: {"_target_": "optuna.samplers.TPESampler", "seed": None})
    # search space: key -> choice(...), interval(...), tag(log, interval(...)), range(...)
    params: dict[str, str] | None = None


ConfigStore.instance().store(group="hydra/sweeper", name="rnnlab_optuna",
                             node=OptunaSweeperConf, provider="rnnlab")
