"""Every model composes with every task; impossible pairs are refused with a reason."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import (
    compose_config,
    seasonal_values,
    write_cmudict,
    write_conll,
    write_frames_npz,
    write_pairs,
    write_sentiment_csv,
    write_series_csv,
    write_text,
)
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from rnnlab.build import (
    IncompatiblePair,
    build_baseline,
    build_callbacks,
    build_datamodule,
    build_module,
    check_pair,
    is_baseline,
    model_class,
)
from rnnlab.core.errors import ConfigError
from rnnlab.core.paths import config_dir

MODELS = sorted(p.stem for p in (config_dir() / "model").glob("*.yaml"))
TASKS = sorted(p.stem for p in (config_dir() / "task").glob("*.yaml"))
TRAINERS = sorted(p.stem for p in (config_dir() / "trainer").glob("*.yaml"))


def test_config_groups_exist() -> None:
    assert {"rnn", "rnn_relu", "lstm", "gru", "bilstm", "bigru", "transformer",
            "tfidf_logreg"} <= set(MODELS)
    assert "sentiment" in TASKS
    assert {"default", "cpu", "gpu", "ddp", "debug"} <= set(TRAINERS)


def _names_csv(path: Path) -> Path:
    stems = {"fr": ["jean", "luc", "marc", "paul", "rene", "yves"],
             "de": ["hans", "gert", "karl", "otto", "fritz", "lutz"]}
    rows = [f"{cat},{stem}{end}" for cat, names in stems.items() for stem in names
            for end in ("", "o", "ine", "el")]
    path.write_text("category,sequence\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def _series_csv(path: Path) -> Path:
    return write_series_csv(path, {"y": list(seasonal_values(60))})


# each task's data in its real format, a few dozen examples (a new task needs an entry)
TINY_DATA: dict[str, Callable[[Path], list[str]]] = {
    "sentiment": lambda d: [f"task.data.train={write_sentiment_csv(d / 's.csv', n=60)}"],
    "ner": lambda d: [f"task.data.train={write_conll(d / 'n.conll', n=40)}"],
    "charlm": lambda d: [f"task.data.path={write_text(d / 'c.txt', n_lines=60)}",
                         "task.datamodule.seq_len=16", "task.datamodule.batches_per_epoch=2"],
    "names": lambda d: [f"task.data.path={_names_csv(d / 'names.csv')}"],
    "forecast": lambda d: [f"task.data.path={_series_csv(d / 'f.csv')}", "task.data.target=y",
                           "task.data.date_column=month", "task.window=12", "task.horizon=3",
                           "task.test_size=6", "task.val_size=6"],
    "g2p": lambda d: [f"task.data.path={write_cmudict(d / 'g.dict', n=40)}"],
    "translate": lambda d: [f"task.data.path={write_pairs(d / 't.tsv', n=40)}",
                            "task.datamodule.min_freq=1"],
    "speech": lambda d: [f"task.data.train={write_frames_npz(d / 'sp.npz', n=30)}"],
    "motion": lambda d: [f"task.data.train={write_frames_npz(d / 'mo.npz', n=30)}"],
    # transcripts of one digit each: frames in the digits layout are valid asr data
    "asr": lambda d: [f"task.data.train={write_frames_npz(d / 'asr.npz', n=30)}"],
    "asr_attention": lambda d: [f"task.data.train={write_frames_npz(d / 'asra.npz', n=30)}"],
    "adding": lambda d: ["task.seq_len=12", "task.datamodule.n_train=16",
                         "task.datamodule.n_val=8", "task.datamodule.n_test=8"],
    "copy": lambda d: ["task.delay=6", "task.datamodule.n_train=16", "task.datamodule.n_val=8",
                       "task.datamodule.n_test=8"],
}
BATCH = 8
# pairs whose outcome is known from the configs' meaning, not from the rule under test
MUST_REFUSE = {("bilstm", "charlm"): "is causal", ("bigru", "copy"): "is causal",
               ("tfidf_logreg", "ner"): "is a baseline for text_classification tasks",
               ("majority_tag", "sentiment"): "is a baseline for tagging tasks",
               ("arima", "g2p"): "is a baseline for forecast tasks"}
MUST_COMPOSE = {("gru", t) for t in TASKS} | {
    ("tfidf_logreg", "sentiment"), ("majority_tag", "ner"), ("ets", "forecast"),
    ("bilstm", "ner"), ("bigru", "g2p"), ("transformer", "charlm")}


class TinyData:
    """Each task's tiny files (written once) and set-up datamodules, one per distinct
    datamodule config: a spec may depend on the model (task=names embeds characters at the
    model's width), so datamodules are shared only where their configs are equal."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._overrides: dict[str, list[str]] = {}
        self._datamodules: dict[str, Any] = {}

    def overrides(self, task: str) -> list[str]:
        assert task in TINY_DATA, f"tests/test_config.py: give task={task} a TINY_DATA entry"
        if task not in self._overrides:
            self._overrides[task] = [*TINY_DATA[task](self.root),
                                     f"task.datamodule.batch_size={BATCH}"]
        return self._overrides[task]

    def datamodule(self, cfg: DictConfig) -> Any:
        key = json.dumps(OmegaConf.to_container(cfg.task.datamodule, resolve=True),
                         sort_keys=True, default=str)
        if key not in self._datamodules:
            dm = build_datamodule(cfg)
            dm.prepare_data()
            dm.setup("fit")
            self._datamodules[key] = dm
        return self._datamodules[key]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    return TinyData(tmp_path_factory.mktemp("pairs"))


@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("model", MODELS)
def test_every_pair_composes_or_is_refused_clearly(model: str, task: str,
                                                   tiny_data: TinyData) -> None:
    """Either the pair is refused in one sentence that names it and a way out, or its
    task module is built on a real (tiny) datamodule's spec and takes a training step
    whose gradient reaches the chosen backbone."""
    cfg = compose_config([f"model={model}", f"task={task}", *tiny_data.overrides(task)],
                         tiny_data.root)
    assert cfg.model.name == model and cfg.task.name == task
    for key in ("family", "monitor", "mode", "datamodule", "optimizer"):
        assert key in cfg.task, f"conf/task/{task}.yaml lacks task.{key}"
    assert cfg.task.mode in ("min", "max")
    OmegaConf.to_container(cfg.task, resolve=True)  # every interpolation resolves
    try:
        check_pair(cfg)
    except IncompatiblePair as err:
        message = str(err)
        assert (model, task) not in MUST_COMPOSE, message
        assert f"model={model}" in message and f"task={task}" in message, message
        assert "\n" not in message and message.count(". ") == 0, message  # one sentence
        assert re.search(r"; (choose|pick) ", message), message  # and a way out
        assert MUST_REFUSE.get((model, task), "") in message
        return
    assert (model, task) not in MUST_REFUSE
    if is_baseline(cfg):
        baseline = build_baseline(cfg)
        assert isinstance(baseline, model_class(cfg)) and cfg.task.family in baseline.families
        return
    dm = tiny_data.datamodule(cfg)
    torch.manual_seed(0)
    module = build_module(cfg, dm.spec)
    assert type(module.backbone) is model_class(cfg)
    assert getattr(module.backbone, "cell", None) == cfg.model.get("cell")
    module.train()
    module.on_train_epoch_start()
    loss = module.training_step(next(iter(dm.train_dataloader())), 0)
    assert loss.ndim == 0 and torch.isfinite(loss), loss
    loss.backward()
    grads = [p.grad for p in module.backbone.parameters() if p.requires_grad]
    assert grads and any(g is not None and bool(g.abs().sum() > 0) for g in grads)


@pytest.mark.parametrize("trainer", TRAINERS)
def test_trainer_configs_compose(trainer: str, tmp_path: Path) -> None:
    """Each trainer preset builds the Trainer it describes, or (a GPU preset on a machine
    without one) stops with the sentence that says what to use instead."""
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import LearningRateMonitor
    from pytorch_lightning.strategies import DDPStrategy

    from rnnlab.run.train import make_trainer

    cfg = compose_config([f"trainer={trainer}"], tmp_path)
    assert cfg.trainer._target_ == "pytorch_lightning.Trainer"
    marker = LearningRateMonitor()
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"trainer.accelerator=gpu but this machine has "
                                              r"no usable CUDA GPU; use trainer=cpu"):
            make_trainer(cfg, [marker])
        return
    built = make_trainer(cfg, [marker])
    assert isinstance(built, pl.Trainer) and marker in built.callbacks
    assert built.max_epochs == cfg.trainer.max_epochs
    assert built.precision == cfg.trainer.precision
    every = torch.cuda.device_count()  # devices=-1: all of them
    assert built.num_devices == (every if cfg.trainer.devices == -1 else cfg.trainer.devices)
    assert isinstance(built.strategy, DDPStrategy) == (cfg.trainer.get("strategy") == "ddp")
    if cfg.trainer.accelerator == "cpu":
        assert built.accelerator.__class__.__name__ == "CPUAccelerator"
    if cfg.trainer.limit_train_batches is not None:
        assert built.limit_train_batches == cfg.trainer.limit_train_batches


def test_paths_are_absolute_and_store_is_under_root(tmp_path: Path) -> None:
    cfg = compose_config([f"paths.root_dir={tmp_path}"])
    assert Path(cfg.paths.data_dir).is_absolute()
    assert cfg.logger.mlflow.experiment_name == "sentiment"


def _swept(experiment: str, key: str, options: list[str]) -> set[str]:
    """The options of config group ``key`` that the experiment's sweep expands to."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    (override,) = OverridesParser.create().parse_overrides([f"{key}={cfg.hydra.sweeper.params[key]}"])
    return set(override.value().filter(options))


def _model_conf(name: str) -> DictConfig:
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[f"model={name}"]).model


def test_sweep_grids_take_every_cell_and_task_from_conf() -> None:
    """A new cell's config file puts it in the headline and vanishing-gradient grids; only
    the non-neural baselines stay out (a grid that named its models would miss it)."""
    neural = {m for m in MODELS if not _model_conf(m)._target_.startswith("rnnlab.baselines")}
    assert {"mingru", "minlstm", "indrnn", "transformer"} <= neural < set(MODELS)
    assert _swept("headline", "model", MODELS) == neural
    assert _swept("headline", "task", TASKS) == set(TASKS)
    one_way = {m for m in neural if "cell" in (conf := _model_conf(m)) and not conf.bidirectional}
    assert _swept("vanishing_gradients", "model", MODELS) == one_way - {"rnn_relu"}
    assert {"rnn", "irnn", "lstm", "gru", "mingru", "minlstm", "indrnn"} <= one_way


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


EXPERIMENTS = sorted(p.stem for p in (config_dir() / "experiment").glob("*.yaml"))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_sets_only_real_arguments(experiment: str, tmp_path: Path) -> None:
    """A recipe's task.module / task.datamodule / model keys are constructor arguments of
    the classes they configure, so a misspelt option fails here, not silently in a run."""
    import inspect

    from hydra.utils import get_class

    cfg = compose_config([f"experiment={experiment}"], tmp_path)
    for group in (cfg.task.module, cfg.task.datamodule, cfg.model):
        params = inspect.signature(get_class(group._target_).__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        unknown = [k for k in group if k not in params and k not in ("_target_", "name")]
        assert takes_any or not unknown, f"{experiment}: {group._target_} has no {unknown}"
    for key in (cfg.task.get("backbone") or {}):
        assert key in inspect.signature(get_class(cfg.model._target_).__init__).parameters


def test_recipes_differ_from_the_defaults_as_documented(tmp_path: Path) -> None:
    msra = compose_config(["experiment=ner_msra"], tmp_path)
    assert msra.task.bigram_features and msra.task.embeddings.train == "word2vec"
    assert msra.task.module.feature_position == "input" and msra.task.backbone.input_dropout == 0.5
    assert "budget_anneal" in msra.callbacks and msra.trainer.max_time == "00:00:27:00"
    conll = compose_config(["experiment=ner_conll", "task.datamodule.dataset=wnut16"], tmp_path)
    assert conll.task.char_features and conll.task.case_features
    assert conll.task.datamodule.lowercase and conll.task.module.word_dropout == 0.5
    sentiment = compose_config(["experiment=sentiment"], tmp_path)
    assert sentiment.task.embeddings.train == "word2vec" and sentiment.model.name == "bilstm"
