"""Every model composes with every task; impossible pairs are refused with a reason."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import compose_config
from rnnlab.build import build_backbone, build_callbacks, check_pair, is_baseline, model_class
from rnnlab.config import config_dir
from rnnlab.errors import ConfigError

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
TASKS = sorted(p.stem for p in (config_dir() / "task").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml"))


def test_config_groups_exist() -> None:
    assert {"rnn", "rnn_relu", "lstm", "gru", "bilstm", "bigru", "transformer",
            "tfidf_logreg"} <= set(MODELS)
    assert "sentiment" in TASKS
    assert {"default", "cpu", "gpu", "ddp", "debug"} <= set(TRAINERS)


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", MODELS)
def test_every_pair_composes_or_is_refused_clearly(model: str, task: str, tmp_path: Path) -> None:
    cfg = compose_config([f"model={model}", f"task={task}"], tmp_path)
    assert cfg.model.name == model and cfg.task.name == task
    for key in ("family", "monitor", "mode", "datamodule", "optimizer"):
        assert key in cfg.task, f"conf/task/{task}.yaml lacks task.{key}"
    assert cfg.task.mode in ("min", "max")
    OmegaConf.to_container(cfg.task, resolve=True)  # every interpolation resolves
    baseline = is_baseline(cfg)
    refused = (baseline and cfg.task.family not in model_class(cfg).families) or (
        not baseline and cfg.task.get("causal") and cfg.model.get("bidirectional"))
    if refused:
        with pytest.raises(ConfigError, match=f"model={model}") as err:
            check_pair(cfg)
        assert "\n" not in str(err.value)
        return
    check_pair(cfg)
    if not baseline:  # the constructor accepts every key of the model config
        for spec in ({"vocab_size": 11, "padding_idx": 0}, {"input_size": 3}):
            backbone = build_backbone(cfg, spec)
            assert backbone.output_size > 0


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_configs_compose(trainer: str, tmp_path: Path) -> None:
    cfg = compose_config([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"


def test_paths_are_absolute_and_store_is_under_root(tmp_path: Path) -> None:
    cfg = compose_config([f"paths.root_dir={tmp_path}"])
    assert Path(cfg.paths.data_dir).is_absolute()
    assert cfg.logger.mlflow.experiment_name == "sentiment"


SEARCHES = sorted(p.stem for p in (config_dir() / "hparams_search").glob("*.yaml"))


@pytest.mark.parametrize("search", SEARCHES)
def test_every_search_optimises_its_tasks_metric(search: str) -> None:
    """Direction = the task's own mode, and every searched key exists in the config."""
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"hparams_search={search}", "model=gru"],
                      return_hydra_config=True)
    sweeper = cfg.hydra.sweeper
    assert sweeper.direction == {"max": "maximize", "min": "minimize"}[cfg.task.mode]
    assert search == f"{cfg.task.name}_optuna"
    for key in sweeper.params:
        assert OmegaConf.select(cfg, key, default="<missing>") != "<missing>", key


def test_one_search_per_task_family() -> None:
    families = set()
    for search in SEARCHES:
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            families.add(compose("config", overrides=[f"hparams_search={search}"]).task.family)
    every = set()
    for task in (config_dir() / "task").glob("*.yaml"):
        with initialize_config_dir(str(config_dir()), version_base="1.3"):
            every.add(compose("config", overrides=[f"task={task.stem}"]).task.family)
    assert families == every


@pytest.mark.parametrize("task", ["g2p", "translate"])
def test_seq2seq_choices_are_task_level_keys(task: str, tmp_path: Path) -> None:
    """task.attention / context / teacher_forcing / beam_size reach the module as set."""
    cfg = compose_config([f"task={task}", "task.attention=none", "task.context=pooled",
                          "task.context_feed=init", "task.beam_size=7",
                          "task.teacher_forcing={start: 1.0, end: 0.5}"], tmp_path)
    module = cfg.task.module
    assert (module.attention, module.context, module.context_feed) == ("none", "pooled", "init")
    assert module.beam_size == 7
    assert dict(module.teacher_forcing) == {"start": 1.0, "end": 0.5}


def test_seq2seq_recipes_compose(tmp_path: Path) -> None:
    g2p = compose_config(["experiment=g2p_cmudict", "model=bilstm"], tmp_path)
    assert (g2p.task.name, g2p.task.module.attention) == ("g2p", "luong_general")
    assert g2p.callbacks.budget_anneal is not None and g2p.trainer.max_time == "00:00:28:00"
    translate = compose_config(["experiment=translate_bible", "model=bilstm",
                                "task.attention=none"], tmp_path)
    assert translate.task.module.attention == "none"
    assert translate.callbacks.early_stopping is None
    assert translate.trainer.max_epochs == 18


def test_callbacks_watching_val_metrics_are_refused_without_validation(tmp_path: Path) -> None:
    cfg = compose_config(["task=g2p", "trainer.limit_val_batches=0"], tmp_path)
    with pytest.raises(ConfigError, match=r"trainer.limit_val_batches=0 turns validation off, "
                       r"but callbacks.model_checkpoint and callbacks.early_stopping watch "
                       r"val/wer; keep some validation batches or add callbacks=none"):
        build_callbacks(cfg)
    quiet = compose_config(["task=g2p", "trainer.limit_val_batches=0", "callbacks=none"], tmp_path)
    assert build_callbacks(quiet) == []


def test_runs_started_together_get_their_own_folders() -> None:
    """Two launches in the same second must not share checkpoints/ (the folder's tag)."""
    train = Path(__file__).resolve().parents[1] / "train.py"
    cmd = [sys.executable, str(train), "task=g2p", "model=gru", "--cfg", "all", "--resolve",
           "-p", "hydra.run.dir"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    dirs = [p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs]
    pattern = r".*/runs/g2p/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_gru_([0-9a-f]{6})"
    tags = [re.fullmatch(pattern, d) for d in dirs]
    assert all(tags), dirs
    assert tags[0].group(1) != tags[1].group(1), dirs
