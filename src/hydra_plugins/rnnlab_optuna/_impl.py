"""Ask-and-tell Optuna studies driven by a Hydra launcher.

Why our own sweeper: ``hydra-optuna-sweeper`` (the Hydra project's plugin) pins
``optuna<3``; Optuna 2.10's database storage fails on SQLAlchemy 2, so its studies could
live only in memory. This one keeps that plugin's config keys and search-space grammar
and adds what a persistent, shared study needs:

* ``optuna.create_study(..., load_if_exists=True)``: the same command twice continues
  the study; ``n_trials`` is what *this* process adds.
* several processes may feed one study at once. SQLite gets a long busy timeout and a
  file lock around the schema's creation; with a storage, each process salts the
  sampler seed (else two workers would propose the same first trials) and keeps a
  heartbeat, so trials of a worker that died are marked FAIL by the next one to start.
* trials in flight when the process stops on an error or Ctrl-C are told FAIL, so the
  study never keeps RUNNING trials that nobody will finish.
* a failed trial (its job recorded FAILED by :class:`rnnlab.tracking.sweep.SweepParentRuns`)
  is told FAIL and the study goes on; when more of a batch fails than
  ``max_failure_rate`` allows, the study stops with one sentence, the results so far are
  written and the sweep's parent runs end FAILED (exit 1), never with a traceback.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, Transformer
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from rnnlab.core.errors import ConfigError
from rnnlab.tracking.sweep import FailedJob

log = logging.getLogger(__name__)
DIRECTIONS = ("minimize", "maximize")
HEARTBEAT_S = 60  # a trial whose worker is silent for GRACE_S is taken as dead
GRACE_S = 180
SQLITE_BUSY_TIMEOUT_S = 120


# ---------------------------------------------------------------- search space
def format_value(value: Any) -> str:
    """A sampled value as the right-hand side of a Hydra override."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _distribution(override: Override) -> BaseDistribution:
    """choice(...), range(...), interval(...) and tag(log, interval(...)) as Optuna sees them."""
    key = override.get_key_element()
    if override.is_choice_sweep() or (override.is_range_sweep() and override.value().shuffle):
        try:
            choices = list(override.sweep_iterator(transformer=Transformer.encode))
        except Exception as err:  # glob(...) needs the config loader
            raise ConfigError(f"hydra.sweeper.params.{key}: {override.input_line} cannot be a "
                              f"search space ({err}); list the choices with choice(...).") from err
        # encoded: a list or dict choice arrives as its override text, e.g. "[1,2]"
        return CategoricalDistribution(choices)
    if override.is_range_sweep():
        values = list(override.sweep_iterator())
        step = override.value().step
        if not values:
            raise ConfigError(f"hydra.sweeper.params.{key}: {override.input_line} is empty; "
                              f"range(start, stop, step) stops before stop.")
        if all(isinstance(v, int) for v in values) and isinstance(step, int) and step > 0:
            return IntDistribution(values[0], values[-1], step=step)
        if step > 0 and len(values) > 1:
            return FloatDistribution(float(values[0]), float(values[-1]), step=float(step))
        return CategoricalDistribution(values)
    if override.is_interval_sweep():
        interval = override.value()
        log_scale = "log" in interval.tags
        if isinstance(interval.start, int) and isinstance(interval.end, int):
            return IntDistribution(interval.start, interval.end, log=log_scale)
        return FloatDistribution(float(interval.start), float(interval.end), log=log_scale)
    raise ConfigError(f"hydra.sweeper.params.{key}: {override.input_line} is not a search "
                      f"space; use choice(...), range(...), interval(...) or "
                      f"tag(log, interval(...)).")


def search_space(params: Mapping[str, Any] | None,
                 arguments: Sequence[str]) -> tuple[dict[str, BaseDistribution], list[str]]:
    """(distributions by key, fixed overrides) from ``hydra.sweeper.params`` + the command line.

    A command-line override of a searched key wins: a sweep replaces the configured
    space, a plain value fixes the key for every trial.
    """
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    parsed = OverridesParser.create().parse_overrides(lines)
    space: dict[str, BaseDistribution] = {}
    fixed: dict[str, str] = {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _distribution(override)
        else:
            fixed[key] = override.input_line or f"{key}={override.get_value_element_as_str()}"
    return space, list(fixed.values())


# ---------------------------------------------------------------- storage
def safe_url(url: str | None) -> str:
    """The storage URL without its password, for logs and result files."""
    if not url:
        return "in-memory"
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy knows; Optuna will say so
        return url


def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def _creation_lock(url: str) -> Iterator[None]:
    """One process at a time creates an SQLite study file's schema and the study."""
    path = _sqlite_path(url)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    from rnnlab.data.sources import file_lock

    with file_lock(path.with_name(path.name + ".lock")):
        yield


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """An RDB storage with a heartbeat; SQLite waits for its lock instead of failing."""
    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        engine_kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url, engine_kwargs=engine_kwargs, heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S)
    except ImportError as err:
        hint = ("write postgresql+psycopg2:// (SQLAlchemy 2.1 picks psycopg 3 for a plain "
                "postgresql://)" if url.startswith("postgresql://") else
                "install its driver (psycopg2-binary: pip install -e '.[server]')")
        raise ConfigError(f"hydra.sweeper.storage={safe_url(url)} needs a database driver "
                          f"that is not installed ({err}); {hint}.") from err
    except Exception as err:
        first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise ConfigError(f"hydra.sweeper.storage={safe_url(url)} cannot be opened ({first}); "
                          f"give a SQLAlchemy URL such as sqlite:///$PWD/optuna.db or "
                          f"postgresql://user:password@host:port/db.") from err


class _Heartbeat:
    """Records a heartbeat for the trials in flight, so a dead worker's trials expire."""

    def __init__(self, storage: optuna.storages.RDBStorage | None) -> None:
        self.storage = storage
        self.trial_ids: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _beat(self) -> None:
        for trial_id in list(self.trial_ids):
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as err:  # a missed beat only shortens the grace period
                log.debug("heartbeat for trial %s failed: %s", trial_id, err)

    def _loop(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        if self.storage is not None:
            self._beat()
            self._thread = threading.Thread(target=self._loop, daemon=True,
                                            name="optuna-heartbeat")
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# ---------------------------------------------------------------- the sweep
class OptunaSweep:
    """The state and logic behind :class:`hydra_plugins.rnnlab_optuna.sweeper.OptunaSweeper`."""

    def __init__(self, sampler: Any = None, direction: Any = "minimize",
                 storage: str | None = None, study_name: str | None = None,
                 n_trials: int = 20, n_jobs: int = 1, max_failure_rate: float = 0.0,
                 params: Mapping[str, Any] | None = None) -> None:
        self.sampler_conf = sampler
        self.directions = list(direction) if isinstance(direction, Sequence) and not \
            isinstance(direction, str) else [direction]
        self.storage_url = storage or None
        self.study_name = study_name
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.max_failure_rate = max_failure_rate
        self.params = params
        self.config: DictConfig | None = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            config=config, hydra_context=hydra_context, task_function=task_function)

    # -- checks and study
    def _validate(self) -> None:
        for d in self.directions:
            if str(d) not in DIRECTIONS:
                raise ConfigError(f"hydra.sweeper.direction={d} is not minimize or maximize.")
        if self.n_trials < 0 or self.n_jobs < 1:
            raise ConfigError(f"hydra.sweeper.n_trials={self.n_trials} / n_jobs={self.n_jobs}: "
                              f"n_trials must be >= 0 and n_jobs >= 1.")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise ConfigError(f"hydra.sweeper.max_failure_rate={self.max_failure_rate} must be "
                              f"between 0 and 1.")
        if self.storage_url and not self.study_name:
            raise ConfigError(f"hydra.sweeper.storage={safe_url(self.storage_url)} is set but "
                              f"hydra.sweeper.study_name is not; name the study, so a later "
                              f"command (or another worker) finds it again.")

    def _sampler(self, seed_salt: str | None) -> Any:
        conf = OmegaConf.to_container(self.sampler_conf, resolve=True) \
            if OmegaConf.is_config(self.sampler_conf) else dict(self.sampler_conf or {})
        conf.setdefault("_target_", "optuna.samplers.TPESampler")
        if seed_salt is not None and conf.get("seed") is not None:
            # the same seed in two workers (or two runs of one command) would replay the
            # same start-up trials; each process gets its own, derived from the given one
            salted = random.Random(f"{conf['seed']}|{seed_salt}").getrandbits(31)
            log.info("sampler seed %s -> %s for this worker of a stored study",
                     conf["seed"], salted)
            conf["seed"] = salted
        try:
            return instantiate(conf)
        except Exception as err:
            raise ConfigError(f"hydra.sweeper.sampler ({conf.get('_target_')}) cannot be built "
                              f"({err}); check its keys against the Optuna sampler's "
                              f"arguments.") from err

    def _open_study(self) -> tuple[optuna.Study, optuna.storages.RDBStorage | None]:
        directions = [str(d) for d in self.directions]
        if not self.storage_url:
            return optuna.create_study(study_name=self.study_name, sampler=self._sampler(None),
                                       directions=directions), None
        with _creation_lock(self.storage_url):
            storage = open_storage(self.storage_url)
            study = optuna.create_study(study_name=self.study_name, storage=storage,
                                        sampler=self._sampler(None), directions=directions,
                                        load_if_exists=True)
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(f"study {self.study_name} in {safe_url(self.storage_url)} "
                              f"optimises {[d.name.lower() for d in study.directions]}, not "
                              f"hydra.sweeper.direction={directions}; use another study_name.")
        optuna.storages.fail_stale_trials(study)  # trials of workers that died
        n_before = len(study.trials)
        study.sampler = self._sampler(f"{socket.gethostname()}|{os.getpid()}|{n_before}")
        return study, storage

    # -- one batch
    def _values(self, ret: JobReturn) -> tuple[list[float] | None, str | None]:
        """The objective values of a job, or why there are none."""
        if ret.status != JobStatus.COMPLETED:
            return None, f"the job raised {ret._return_value!r}"
        value = ret.return_value
        if isinstance(value, FailedJob):
            return None, f"the job failed: {value.reason}"
        raw = value if isinstance(value, (list, tuple)) else [value]
        try:
            values = [float(v) for v in raw]
        except (TypeError, ValueError):
            return None, f"the job returned {value!r}, not a number to optimise"
        if len(values) != len(self.directions):
            return None, (f"the job returned {len(values)} values for "
                          f"{len(self.directions)} directions")
        return values, None

    def sweep(self, arguments: list[str]) -> list[JobReturn]:
        assert self.config is not None and self.launcher is not None
        self._validate()
        space, fixed = search_space(self.params, arguments)
        study, storage = self._open_study()
        n_before = len(study.trials)
        log.info("Study %s in %s: %d trials so far; this process adds %d, %d at a time",
                 study.study_name, safe_url(self.storage_url), n_before, self.n_trials,
                 self.n_jobs)
        sweep_dir = str(self.config.hydra.sweep.dir)
        added, job_idx, all_returns = 0, 0, []
        while added < self.n_trials:
            batch = min(self.n_jobs, self.n_trials - added)
            with warnings.catch_warnings():  # our heartbeat thread is what Optuna asks for
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trials = [study.ask(space) for _ in range(batch)]
            told: set[int] = set()
            heartbeat = _Heartbeat(storage)
            heartbeat.trial_ids = [t._trial_id for t in trials]
            try:
                overrides = []
                for i, trial in enumerate(trials):
                    trial.set_user_attr("hydra_sweep_dir", sweep_dir)
                    trial.set_user_attr("hydra_job_num", job_idx + i)
                    overrides.append(tuple(fixed) + tuple(
                        f"{key}={format_value(value)}" for key, value in trial.params.items()))
                with heartbeat:
                    returns = list(self.launcher.launch(overrides, initial_job_idx=job_idx))
                failures = []
                for trial, ret in zip(trials, returns, strict=True):
                    values, why = self._values(ret)
                    if why is None:
                        study.tell(trial, values)
                    else:
                        study.tell(trial, state=TrialState.FAIL)
                        log.warning("trial %d failed: %s", trial.number, why)
                        failures.append((trial, ret, why))
                    told.add(trial.number)
            finally:
                for trial in trials:  # an exception or Ctrl-C: nobody will finish these
                    if trial.number not in told:
                        study.tell(trial, state=TrialState.FAIL)
            job_idx += len(returns)
            added += batch
            all_returns += returns
            if failures and len(failures) / len(returns) > self.max_failure_rate:
                trial, ret, why = failures[0]
                if ret.status != JobStatus.COMPLETED:  # a job no callback recorded
                    ret.return_value  # noqa: B018 - re-raises the job's own exception
                log.error("the study stops: trial %d failed (%s); %d of %d trials of the batch "
                          "failed, more than hydra.sweeper.max_failure_rate=%s (raise it to "
                          "let the study go on past failed trials)", trial.number, why,
                          len(failures), len(returns), self.max_failure_rate)
                break
        self._write_results(study, n_before, added, sweep_dir)
        return all_returns

    def _write_results(self, study: optuna.Study, n_before: int, added: int,
                       sweep_dir: str) -> None:
        trials = study.trials
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        results: dict[str, Any] = {
            "name": "optuna", "study_name": study.study_name,
            "storage": safe_url(self.storage_url),
            "directions": [str(d) for d in self.directions],
            "n_trials_before": n_before, "n_trials_added": added,
            "n_trials_study": len(trials), "n_complete_study": len(complete)}
        if complete and len(self.directions) == 1:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value,
                           best_trial=best.number)
            log.info("Best of %d finished trials: %s = %s (trial %d)", len(complete),
                     best.params, best.value, best.number)
        elif complete:
            results["solutions"] = [{"params": t.params, "values": t.values, "trial": t.number}
                                    for t in study.best_trials]
        Path(sweep_dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), Path(sweep_dir) / "optimization_results.yaml")
