"""Checks that run before anything is recorded.

A bad value found after the MLflow run exists leaves a FAILED run behind for a typo; a
bad value found mid-training wastes the training. Whatever can be checked from the
config alone is checked here, first, with one sentence naming the key and the fix.
"""

from __future__ import annotations

import atexit
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from rnnlab.build.schema import validate
from rnnlab.core.dist import is_rank_zero
from rnnlab.core.errors import ConfigError
from rnnlab.tracking.mlflow import local_artifact_root, redact, resolve_tracking_uri


def check_writable(folder: Path, key: str, fix: str | None = None) -> None:
    """``folder`` exists (or can be made) and takes a file; works for root too, where
    permission bits do not stop writes but a file in the way of a folder does."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".rnnlab-write-check-"):
            pass
    except OSError as err:
        raise ConfigError(f"{key}: {folder} is not a writable folder ({err.strerror or err}); "
                          f"{fix or f'point {key} at a folder you can write to'}.") from None


def experiment_artifact_folder(uri: str, artifact_root: str, name: str) -> Path | None:
    """Where the runs of experiment ``name`` put their artifacts: the folder the store
    records for it, or, for an experiment not created yet, the one
    :func:`~rnnlab.tracking.mlflow.ensure_experiment` will give it. None when the store
    keeps them elsewhere (not a local folder)."""
    location = f"{artifact_root}/{name}"
    db = Path(uri.removeprefix("sqlite:///").split("?", 1)[0])
    if uri.startswith("sqlite:///") and db.is_file():
        from mlflow.tracking import MlflowClient  # heavy (about a second); the run needs it

        try:
            experiment = MlflowClient(uri).get_experiment_by_name(name)
        except Exception:  # noqa: BLE001 - an unreadable store is reported when the run opens it
            experiment = None
        if experiment is not None:
            location = experiment.artifact_location
    if location.startswith("file://"):
        return Path(location.removeprefix("file://"))
    return Path(location) if "://" not in location else None


def preflight(cfg: DictConfig) -> None:
    """The schemas' checks, data-parallel settings and output folders, before any data is
    read or run created (``train.py`` has run the schemas' checks already; a config
    composed elsewhere, as in the tests, gets them here)."""
    # types, ranges, choices and cross-field rules of model, task and trainer (and the seed)
    validate(cfg)
    trainer = cfg.get("trainer") or {}
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
    parallel = ("ddp" in str(trainer.get("strategy") or "")
                or (isinstance(devices, int) and devices > 1) or int(nodes) > 1)
    if parallel and trainer.get("use_distributed_sampler", True) is not False:
        raise ConfigError("rnnlab's loaders shard batches across processes themselves, so a "
                          "data-parallel run needs trainer.use_distributed_sampler=false (use "
                          "trainer=ddp or trainer=ddp_cpu, which set it).")
    if not is_rank_zero():
        return
    check_writable(Path(cfg.paths.output_dir), "paths.output_dir")
    for name, conf in (cfg.get("callbacks") or {}).items():  # the checkpoint folders
        if conf is not None and conf.get("dirpath"):
            check_writable(Path(str(conf.dirpath)), f"callbacks.{name}.dirpath")
    mlflow_cfg = (cfg.get("logger") or {}).get("mlflow")
    if mlflow_cfg is not None and mlflow_cfg.get("log_system_metrics"):
        try:
            import psutil  # noqa: F401
        except ImportError:
            raise ConfigError("logger.mlflow.log_system_metrics=true needs psutil; install it "
                              "(pip install psutil, and nvidia-ml-py for GPU figures) or set "
                              "it false.") from None
    if mlflow_cfg is not None:
        uri = resolve_tracking_uri(mlflow_cfg.get("tracking_uri"), cfg.paths.root_dir)
        artifacts = local_artifact_root(uri, cfg.paths.root_dir)
        if artifacts is not None:
            check_writable(Path(artifacts.removeprefix("file://")),
                           "the MLflow artifact folder (paths.root_dir/mlartifacts)")
            folder = experiment_artifact_folder(uri, artifacts,
                                                str(mlflow_cfg.get("experiment_name")))
            if folder is not None:
                check_writable(folder, "the experiment's MLflow artifact folder",
                               "make it a folder you can write to, or start another experiment "
                               "with logger.mlflow.experiment_name=NAME")
        if uri.startswith("sqlite:///"):
            check_writable(Path(uri.removeprefix("sqlite:///")).parent,
                           "the MLflow store's folder (logger.mlflow.tracking_uri)")


def redact_hydra_files() -> None:
    """Hydra writes the config and overrides (``.hydra/*.yaml``, a sweep's ``multirun.yaml``)
    before the job starts; credentials in a URI given on the command line are blanked there
    too, as in every file the lab writes."""
    try:
        hc = HydraConfig.get()
    except ValueError:  # composed outside @hydra.main
        return
    files = list((Path(hc.runtime.output_dir) / (hc.output_subdir or ".hydra")).glob("*.yaml"))
    if hc.mode is not None and hc.mode.name == "MULTIRUN":
        files.append(Path(hc.sweep.dir) / "multirun.yaml")
    for path in files:
        try:
            text = path.read_text()
            if redact(text) != text:
                path.write_text(redact(text))
        except OSError:  # a file another job is rewriting, or none: nothing to blank
            continue


def only_hydra_files(folder: Path, hydra_subdir: str | None = ".hydra") -> bool:
    """Whether ``folder`` holds nothing a run wrote: Hydra's config copies (``.hydra/``) and
    empty log files at most."""
    for path in folder.rglob("*"):
        if path.is_dir():
            continue
        rel = path.relative_to(folder)
        if hydra_subdir and rel.parts[0] == hydra_subdir:
            continue
        if path.suffix == ".log" and path.stat().st_size == 0:
            continue
        return False
    return True


def remove_if_unused(folder: Path, hydra_subdir: str | None = ".hydra",
                     up_to: Path | None = None) -> bool:
    """Remove a run folder a refused config left behind (Hydra makes it, with an empty
    ``train.log``, before the job can refuse), and its parents left empty below ``up_to``
    (``paths.log_dir``); True if it did."""
    folder = Path(folder)
    if not folder.is_dir() or not only_hydra_files(folder, hydra_subdir):
        return False
    for path in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    folder.rmdir()
    parent, stop = folder.parent.resolve(), Path(up_to).resolve() if up_to else None
    while stop is not None and stop in parent.parents and not any(parent.iterdir()):
        parent.rmdir()  # outputs/runs/<task>/ made for this run alone
        parent = parent.parent
    return True


class OutputFolderCheck(Callback):
    """Hydra callback: an output folder that cannot be created is one sentence and exit 2,
    not Hydra's traceback (Hydra makes the folder before the job starts). A single run's
    folder that ends holding only Hydra's files (the config was refused) is removed when
    the process exits, so a refusal leaves no run folder behind."""

    @staticmethod
    def _check(folder: str, key: str) -> None:
        try:
            check_writable(Path(folder), key)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "paths.log_dir (hydra.run.dir)")
        # at exit, after the job's own exit path (sys.exit(2) on a refusal) has run
        atexit.register(remove_if_unused, Path(config.hydra.run.dir),
                        config.hydra.get("output_subdir"),
                        config.get("paths", {}).get("log_dir"))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "paths.log_dir (hydra.sweep.dir)")
