"""Typed schemas of the ``model``, ``task`` and ``trainer`` config groups.

Every file in ``conf/model``, ``conf/task`` and ``conf/trainer`` starts from one of these
dataclasses (``defaults: [/schema/model/recurrent@_here_, _self_]``), so Hydra refuses a
value of the wrong type while it composes, naming the key, instead of a constructor
failing minutes later. Ranges, choices and settings that depend on each other are
checked by each schema's ``__post_init__``; OmegaConf does not call it after a merge, so
:func:`validate` builds the typed objects once, right after composing. Checks that need
the data (vocabulary sizes, word vectors, model/task pairs) stay where the data is.

The schemas live in their own ``schema/*`` groups, never among the ``model=`` choices,
so a sweep over ``model=glob(*)`` does not pick them up. Each one holds exactly the keys
its YAML files set (``MISSING`` defaults), so a composed config has the same keys and
values as before the schemas existed; and each one stays open to keys added with ``+``
(``+task.module.max_predictions=10``, any ``+trainer.<Lightning argument>``), as before.

:func:`check_command_line` composes what ``python train.py ARGS`` would compose and turns
a mistake into one sentence before Hydra makes the run folder.
"""

from __future__ import annotations

import difflib
import re
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import ConfigCompositionException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    OmegaConfBaseException,
    ValidationError,
)

from rnnlab.baselines.tfidf import WEIGHTINGS
from rnnlab.core.errors import ConfigError
from rnnlab.core.paths import config_dir
from rnnlab.data.embeddings import FORMATS as EMBEDDING_FORMATS
from rnnlab.data.embeddings import TRAINERS as EMBEDDING_TRAINERS
from rnnlab.data.forecast import SCALERS, STRATEGIES
from rnnlab.data.ner import BIGRAM_WINDOWS
from rnnlab.data.translate import SPLIT_UNITS
from rnnlab.models.attention import ATTENTIONS
from rnnlab.models.cells import INITS, cell_names, get_cell
from rnnlab.models.cells.scan import BLOCKS
from rnnlab.models.conditioned import CONDITIONS
from rnnlab.models.encoder import PACKS
from rnnlab.models.heads import POOLINGS
from rnnlab.models.seq2seq import CONTEXT_FEEDS, CONTEXTS
from rnnlab.tasks.tagging import FEATURE_POSITIONS

# A dataclass that subclasses Dict keeps its typed fields and still takes keys added with
# ``+`` (OmegaConf warns that this is deprecated; it is the one way to keep them open).
warnings.filterwarnings("ignore", message=r"Class `\w+` subclasses `Dict`", category=UserWarning)

# the choices of the classes themselves are imported above, so the two cannot drift apart
ETS_COMPONENTS = ("add", "mul")
MODES = ("min", "max")
KEY_OR_TYPE_ERRORS = (ValidationError, ConfigKeyError, ConfigAttributeError)


# ---- checks, each one sentence naming the key and the fix -----------------------------------
def _positive(key: str, value: Any, optional: bool = False) -> None:
    if value is None and optional:
        return
    # not an int: a key added with +, which no field types
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        more = " or null" if optional else ""
        raise ConfigError(f"{key} must be a positive integer{more}, got {value!r}.")


def _fraction(key: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"{key} must be in [0, 1), got {value!r}.")


def _choice(key: str, value: Any, choices: Sequence[str], optional: bool = False) -> None:
    if value in choices or (optional and value is None):
        return
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    hint = f" (did you mean {key}={close[0]}?)" if close else ""
    extra = " or null" if optional else ""
    raise ConfigError(f"{key}={value!r} is unknown; use one of {', '.join(choices)}{extra}{hint}.")


def _rate(key: str, value: Any, optional: bool = False) -> None:
    """A dropout rate in [0, 1) (null: the owner's default, where ``optional``), also for
    keys added with ``+``, which no field types."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r} is not a number; give one such as {key}=0.5.")
    _fraction(key, value)


def _word_dropout(value: float) -> None:
    # 1 is allowed: every rare word becomes <unk> (Iyyer et al. 2015 drop any word that way)
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"task.module.word_dropout must be in [0, 1], got {value!r}.")


def _batch_size(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}={value} must be a whole number of at least 1.")


def _split(key: str, fractions: Sequence[float]) -> None:
    if not (len(fractions) == 3 and all(f > 0 for f in fractions)
            and abs(sum(fractions) - 1) < 1e-6):
        raise ConfigError(f"{key} must be three positive fractions (train, val, test) summing "
                          f"to 1, got {list(fractions)}.")


@dataclass
class Node(dict[str, Any]):
    """A typed config node that still accepts ``+key=value`` additions."""

    def __post_init__(self) -> None:
        # the schema's own default instance (every field MISSING) has nothing to check yet
        if not any(isinstance(v, str) and v == MISSING for v in vars(self).values()):
            self.check()

    def check(self) -> None:
        """Ranges, choices and cross-field rules, one sentence each (none by default)."""

    def check_added(self, added: Mapping[str, Any]) -> None:
        """Checks of keys that a recipe or ``+key=value`` adds where the YAML sets none (so
        they are no fields): OmegaConf sets them after ``__post_init__``, so
        :func:`validate` hands them over here (none checked by default)."""


# ---- model ------------------------------------------------------------------------------------
@dataclass
class ModelSchema(Node):
    """What every ``model=`` file has: the class it builds and its display name."""

    _target_: str = MISSING
    name: str = MISSING


@dataclass
class RecurrentModel(ModelSchema):
    """``rnnlab.models.RecurrentEncoder`` (every recurrent cell)."""

    cell: str = MISSING
    hidden_size: int = MISSING
    num_layers: int = MISSING
    bidirectional: bool = MISSING
    dropout: float = MISSING
    embedding_dim: int = MISSING
    init: str = MISSING
    forget_bias: float = MISSING
    pack: str = MISSING
    project_inputs: bool = MISSING
    # new with the residual blocks; a default so the files of the fused cells need not say it
    block: str = "plain"

    def check(self) -> None:
        _choice("model.cell", self.cell, cell_names())
        _positive("model.hidden_size", self.hidden_size)
        _positive("model.num_layers", self.num_layers)
        _fraction("model.dropout", self.dropout)
        _positive("model.embedding_dim", self.embedding_dim)
        _choice("model.init", self.init, INITS)
        inits = get_cell(self.cell).inits
        if self.init not in inits:
            raise ConfigError(f"model.init={self.init!r} does not apply to model.cell="
                              f"{self.cell}; use one of {', '.join(inits)}.")
        _choice("model.pack", self.pack, PACKS)
        _choice("model.block", self.block, BLOCKS)
        blocks = get_cell(self.cell).blocks
        if self.block not in blocks:
            raise ConfigError(f"model.block={self.block} does not apply to model.cell="
                              f"{self.cell}; use {' or '.join(blocks)}.")


@dataclass
class TransformerModel(ModelSchema):
    """``rnnlab.models.TransformerEncoder``."""

    d_model: int = MISSING
    nhead: int = MISSING
    num_layers: int = MISSING
    dim_feedforward: int = MISSING
    dropout: float = MISSING

    def check(self) -> None:
        _positive("model.d_model", self.d_model)
        if self.nhead < 1 or self.d_model % self.nhead:
            raise ConfigError(f"model.nhead={self.nhead!r} must be a positive divisor of "
                              f"model.d_model={self.d_model}.")
        _positive("model.num_layers", self.num_layers)
        _positive("model.dim_feedforward", self.dim_feedforward)
        _fraction("model.dropout", self.dropout)


@dataclass
class ArimaModel(ModelSchema):
    """``rnnlab.baselines.statistical.ARIMA``."""

    order: list[int] = MISSING
    seasonal_order: list[int] | None = MISSING
    log: bool = MISSING
    trend: str | None = MISSING

    def check(self) -> None:
        if len(self.order) != 3 or min(self.order) < 0:
            raise ConfigError(f"model.order must be three non-negative integers (p, d, q), "
                              f"got {list(self.order)}.")
        if self.seasonal_order is not None and (len(self.seasonal_order) != 3
                                                or min(self.seasonal_order) < 0):
            raise ConfigError(f"model.seasonal_order must be null or three non-negative "
                              f"integers (P, D, Q), got {list(self.seasonal_order)}.")


@dataclass
class EtsModel(ModelSchema):
    """``rnnlab.baselines.statistical.ETS``."""

    trend: str | None = MISSING
    seasonal: str | None = MISSING
    damped_trend: bool = MISSING
    use_boxcox: bool = MISSING

    def check(self) -> None:
        _choice("model.trend", self.trend, ETS_COMPONENTS, optional=True)
        _choice("model.seasonal", self.seasonal, ETS_COMPONENTS, optional=True)
        if self.damped_trend and self.trend is None:
            raise ConfigError("model.damped_trend=true needs a trend; set model.trend=add or mul.")


@dataclass
class SeasonalNaiveModel(ModelSchema):
    """``rnnlab.baselines.statistical.SeasonalNaive``."""

    season: int | None = MISSING
    drift: bool = MISSING

    def check(self) -> None:
        _positive("model.season", self.season, optional=True)


@dataclass
class TfidfModel(ModelSchema):
    """``rnnlab.baselines.tfidf.TfidfLogReg``."""

    ngram_max: int = MISSING
    min_df: int = MISSING
    c_grid: list[float] = MISSING

    def check(self) -> None:
        _positive("model.ngram_max", self.ngram_max)
        _positive("model.min_df", self.min_df)
        if not self.c_grid or min(self.c_grid) <= 0:
            raise ConfigError(f"model.c_grid must be a list of positive numbers, got "
                              f"{list(self.c_grid)}.")


@dataclass
class Bm25Model(TfidfModel):
    """``rnnlab.baselines.tfidf.TfidfLogReg`` with ``weighting`` (``model=bm25_logreg``)."""

    weighting: str = MISSING
    k1: float = MISSING
    b: float = MISSING

    def check(self) -> None:
        super().check()
        _choice("model.weighting", self.weighting, WEIGHTINGS)
        if self.k1 < 0 or not 0.0 <= self.b <= 1.0:
            raise ConfigError(f"model.k1 must be at least 0 and model.b in [0, 1], got "
                              f"k1={self.k1!r} and b={self.b!r}.")


@dataclass
class DtwModel(ModelSchema):
    """``rnnlab.baselines.dtw.DTW1NN``."""

    window: float | None = MISSING
    window_grid: list[Any] | None = MISSING
    refit: bool = MISSING

    def check(self) -> None:
        for value in [self.window, *(self.window_grid or [])]:
            if value is not None and not 0.0 < value <= 1.0:
                raise ConfigError(f"model.window and model.window_grid hold fractions of the "
                                  f"series length in (0, 1] or null, got {value!r}.")


@dataclass
class RocketModel(ModelSchema):
    """``rnnlab.baselines.rocket.Rocket``."""

    num_kernels: int = MISSING
    seed: int = MISSING
    normalise: bool = MISSING
    alphas: list[float] = MISSING
    refit: bool = MISSING

    def check(self) -> None:
        _positive("model.num_kernels", self.num_kernels)
        if not self.alphas or min(self.alphas) <= 0:
            raise ConfigError(f"model.alphas must be a list of positive numbers, got "
                              f"{list(self.alphas)}.")


# ---- trainer ----------------------------------------------------------------------------------
@dataclass
class TrainerSchema(Node):
    """``pytorch_lightning.Trainer``: the arguments conf/trainer_base.yaml sets (any other
    Lightning argument can be added with ``+trainer.<arg>=<value>``). Arguments Lightning
    takes in several types (devices, precision, limits) stay untyped: it checks them."""

    _target_: str = MISSING
    default_root_dir: str | None = MISSING
    accelerator: str = MISSING
    devices: Any = MISSING
    precision: Any = MISSING
    min_epochs: int | None = MISSING
    max_epochs: int = MISSING
    max_steps: int = MISSING
    max_time: Any = MISSING
    limit_train_batches: Any = MISSING
    limit_val_batches: Any = MISSING
    limit_test_batches: Any = MISSING
    val_check_interval: Any = MISSING
    check_val_every_n_epoch: int | None = MISSING
    gradient_clip_val: float | None = MISSING
    gradient_clip_algorithm: str | None = MISSING
    log_every_n_steps: int = MISSING
    num_sanity_val_steps: int = MISSING
    enable_model_summary: bool = MISSING
    deterministic: Any = MISSING

    def check(self) -> None:
        _choice("trainer.gradient_clip_algorithm", self.gradient_clip_algorithm,
                ("norm", "value"), optional=True)
        _positive("trainer.log_every_n_steps", self.log_every_n_steps)


@dataclass
class DdpTrainer(TrainerSchema):
    """conf/trainer/ddp.yaml's data-parallel settings on top of the default trainer."""

    num_nodes: int = MISSING
    strategy: Any = MISSING
    sync_batchnorm: bool = MISSING
    use_distributed_sampler: bool = MISSING

    def check(self) -> None:
        super().check()
        _positive("trainer.num_nodes", self.num_nodes)


# ---- task: the parts every task has -----------------------------------------------------------
@dataclass
class DataModuleSchema(Node):
    """What every ``task.datamodule`` has; batch sizes are checked wherever they appear."""

    _target_: str = MISSING

    def check(self) -> None:
        for key, value in vars(self).items():
            if key.endswith("batch_size") and isinstance(value, int):
                _batch_size(f"task.datamodule.{key}", value)
        if isinstance(getattr(self, "split", None), list):
            _split("task.datamodule.split", self.split)


@dataclass
class ModuleSchema(Node):
    """What every ``task.module`` (a LightningModule) has."""

    _target_: str = MISSING


def _backbone_settings(settings: Mapping[str, Any]) -> None:
    # null: the backbone drops its inputs at its own model.dropout
    _rate("task.backbone.input_dropout", settings.get("input_dropout"), optional=True)


@dataclass
class TaskBackbone(Node):
    """``task.backbone``: the task's own keyword arguments for whichever backbone ``model=``
    builds (rnnlab.build.build_backbone passes them on), e.g. heavy input dropout on a
    small corpus. A task file that sets it declares it; a recipe may add it to any task,
    and :meth:`TaskSchema.check_added` checks it the same way."""

    input_dropout: float | None = MISSING

    def check(self) -> None:
        _backbone_settings({"input_dropout": self.input_dropout})


@dataclass
class TaskSchema(Node):
    """What every ``task=`` file has besides its own settings."""

    name: str = MISSING
    family: str = MISSING
    causal: bool = MISSING
    monitor: str = MISSING
    mode: str = MISSING

    def check(self) -> None:
        _choice("task.mode", self.mode, MODES)

    def check_added(self, added: Mapping[str, Any]) -> None:
        if isinstance(added.get("backbone"), Mapping):  # ner_conll / ner_msra add one
            _backbone_settings(added["backbone"])


@dataclass
class Embeddings(Node):
    """``task.embeddings``: word vectors read from a file or trained here with gensim
    (``+task.embeddings.sg=false`` and ``+task.embeddings.seed=N`` are gensim extras)."""

    path: str | None = MISSING
    format: str | None = MISSING
    train: str | None = MISSING
    corpus: str | None = MISSING
    dim: int = MISSING
    window: int = MISSING
    min_count: int = MISSING
    epochs: int = MISSING
    freeze: bool = MISSING

    def check(self) -> None:
        if not self.path and not self.train and self.corpus:
            raise ConfigError("task.embeddings.corpus is only read to train vectors; add "
                              "task.embeddings.train=word2vec (or fasttext), or drop the corpus.")
        if self.path and self.train:
            raise ConfigError("task.embeddings.path and task.embeddings.train are both set; "
                              "read vectors from a file or train them here, so set one to null.")
        _choice("task.embeddings.format", self.format, EMBEDDING_FORMATS, optional=True)
        _choice("task.embeddings.train", self.train, EMBEDDING_TRAINERS, optional=True)
        for key in ("dim", "window", "min_count", "epochs"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.embeddings.{key}={getattr(self, key)!r} must be a whole "
                                  f"number of at least 1.")


# ---- tasks ------------------------------------------------------------------------------------
@dataclass
class AddingData(DataModuleSchema):
    seq_len: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    data_seed: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        if self.seq_len < 2:
            raise ConfigError(f"task.seq_len must be an integer of at least 2 (the adding "
                              f"problem marks two positions, one in each half), got "
                              f"{self.seq_len!r}.")
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.datamodule.{key} must be an integer of at least 1, "
                                  f"got {getattr(self, key)!r}.")


@dataclass
class RegressionModule(ModuleSchema):
    pooling: str = MISSING
    dropout: float = MISSING
    solved_fraction: float = MISSING

    def check(self) -> None:
        _choice("task.module.pooling", self.pooling, POOLINGS)
        _fraction("task.module.dropout", self.dropout)


@dataclass
class AddingTask(TaskSchema):
    seq_len: int = MISSING
    data: Any = MISSING
    datamodule: AddingData = field(default_factory=AddingData)
    module: RegressionModule = field(default_factory=RegressionModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class CopyData(DataModuleSchema):
    delay: int = MISSING
    n_symbols: int = MISSING
    alphabet: int = MISSING
    n_train: int = MISSING
    n_val: int = MISSING
    n_test: int = MISSING
    data_seed: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        if self.delay < 1:
            raise ConfigError(f"task.delay must be an integer of at least 1 (the delimiter "
                              f"comes `delay` steps after the last symbol), got {self.delay!r}.")
        if self.n_symbols < 1 or self.alphabet < 2:
            raise ConfigError(f"task.datamodule.n_symbols must be >= 1 and "
                              f"task.datamodule.alphabet >= 2, got {self.n_symbols} and "
                              f"{self.alphabet}.")
        for key in ("n_train", "n_val", "n_test"):
            if getattr(self, key) < 1:
                raise ConfigError(f"task.datamodule.{key} must be an integer of at least 1, "
                                  f"got {getattr(self, key)!r}.")


@dataclass
class CopyModule(ModuleSchema):
    dropout: float = MISSING
    solved_fraction: float = MISSING

    def check(self) -> None:
        _fraction("task.module.dropout", self.dropout)


@dataclass
class CopyTask(TaskSchema):
    delay: int = MISSING
    data: Any = MISSING
    datamodule: CopyData = field(default_factory=CopyData)
    module: CopyModule = field(default_factory=CopyModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class CharLMData(DataModuleSchema):
    corpus: str = MISSING
    path: str | None = MISSING
    data_dir: str = MISSING
    holdout: list[float] = MISSING
    split_seed: int = MISSING
    val_plays: list[str] | None = MISSING
    test_plays: list[str] | None = MISSING
    seq_len: int = MISSING
    batch_size: int = MISSING
    stateful: bool = MISSING
    batches_per_epoch: int | None = MISSING
    eval_streams: int | None = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        if len(self.holdout) != 2 or not all(0 < h < 0.5 for h in self.holdout):
            raise ConfigError(f"task.datamodule.holdout must be two shares (val, test) between "
                              f"0 and 0.5, got {list(self.holdout)}.")
        _positive("task.datamodule.seq_len", self.seq_len)
        _positive("task.datamodule.eval_streams", self.eval_streams, optional=True)
        _positive("task.datamodule.batches_per_epoch", self.batches_per_epoch, optional=True)


@dataclass
class LanguageModelModule(ModuleSchema):
    stateful: bool = MISSING
    tie_weights: bool = MISSING
    dropout: float = MISSING
    sample_length: int = MISSING
    sample_temperatures: list[float] = MISSING
    sample_prompts: list[str] = MISSING
    sample_seed: int = MISSING

    def check(self) -> None:
        _fraction("task.module.dropout", self.dropout)
        if not all(t > 0 for t in self.sample_temperatures):
            raise ConfigError(f"task.module.sample_temperatures must all be greater than 0, "
                              f"got {[float(t) for t in self.sample_temperatures]}.")


@dataclass
class CharLMTask(TaskSchema):
    stateful: bool = MISSING
    data: Any = MISSING
    datamodule: CharLMData = field(default_factory=CharLMData)
    module: LanguageModelModule = field(default_factory=LanguageModelModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class ForecastTransform(Node):
    log: bool = MISSING
    seasonal_diff: bool = MISSING
    scale: str = MISSING

    def check(self) -> None:
        _choice("task.transform.scale", self.scale, SCALERS)


@dataclass
class ForecastData(DataModuleSchema):
    dataset: str = MISSING
    data: Any = MISSING
    data_dir: str = MISSING
    window: int = MISSING
    horizon: int = MISSING
    strategy: str = MISSING
    test_size: int = MISSING
    val_size: int = MISSING
    season: int | None = MISSING
    transform: Any = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING


@dataclass
class ForecastModule(ModuleSchema):
    dropout: float = MISSING

    def check(self) -> None:
        _fraction("task.module.dropout", self.dropout)


@dataclass
class ForecastTask(TaskSchema):
    dataset: str = MISSING
    window: int = MISSING
    horizon: int = MISSING
    strategy: str = MISSING
    test_size: int = MISSING
    val_size: int = MISSING
    season: int | None = MISSING
    transform: ForecastTransform = field(default_factory=ForecastTransform)
    data: Any = MISSING
    datamodule: ForecastData = field(default_factory=ForecastData)
    module: ForecastModule = field(default_factory=ForecastModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING

    def check(self) -> None:
        super().check()
        _choice("task.strategy", self.strategy, STRATEGIES)
        for key in ("window", "horizon", "test_size", "val_size"):
            _positive(f"task.{key}", getattr(self, key))
        _positive("task.season", self.season, optional=True)


def _teacher_forcing(value: Any) -> None:
    """A number, or ``{start: 1.0, end: 0.5}`` for a linear decay; each share in [0, 1]."""
    if isinstance(value, Mapping):
        unknown = set(value) - {"start", "end"}
        if unknown:
            raise ConfigError(f"task.teacher_forcing has unknown keys {sorted(unknown)}; "
                              f"give a number or {{start: 1.0, end: 0.5}}.")
        shares = (value.get("start", 1.0), value.get("end", value.get("start", 1.0)))
    else:
        shares = (value, value)
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in shares):
        raise ConfigError(f"task.teacher_forcing={value!r} is not a number; give one such as "
                          f"task.teacher_forcing=0.9 or {{start: 1.0, end: 0.5}}.")
    start, end = (float(v) for v in shares)
    if not (0.0 <= start <= 1.0 and 0.0 <= end <= 1.0):
        raise ConfigError(f"task.teacher_forcing must be in [0, 1], got start={start}, "
                          f"end={end}.")


@dataclass
class DecoderModule(ModuleSchema):
    """The attention decoder's keys, shared by task=g2p/translate and task=asr_attention."""

    attention: str = MISSING
    decoder_cell: str | None = MISSING
    decoder_hidden_size: int | None = MISSING
    decoder_layers: int | None = MISSING
    embedding_dim: int = MISSING
    attention_size: int = MISSING
    dropout: float = MISSING
    encoder_dropout: float = MISSING
    beam_size: int = MISSING
    length_penalty: float = MISSING
    max_decode_len: int = MISSING
    label_smoothing: float = MISSING
    num_heatmaps: int = MISSING

    def check_decoder(self) -> None:
        _choice("task.attention", self.attention, ATTENTIONS)
        if self.decoder_cell is not None:
            _choice("task.module.decoder_cell", self.decoder_cell, cell_names())
        _positive("task.module.decoder_hidden_size", self.decoder_hidden_size, optional=True)
        _positive("task.module.decoder_layers", self.decoder_layers, optional=True)
        _positive("task.module.embedding_dim", self.embedding_dim)
        _positive("task.module.attention_size", self.attention_size)
        _fraction("task.module.dropout", self.dropout)
        _fraction("task.module.encoder_dropout", self.encoder_dropout)
        _positive("task.module.max_decode_len", self.max_decode_len)
        _fraction("task.module.label_smoothing", self.label_smoothing)


@dataclass
class Seq2SeqModule(DecoderModule):
    context: str = MISSING
    context_feed: str = MISSING
    teacher_forcing: Any = MISSING
    decay_epochs: int | None = MISSING
    num_examples: int = MISSING
    ensemble: list[str] | None = MISSING

    def check(self) -> None:
        self.check_decoder()
        _choice("task.context", self.context, CONTEXTS)
        _choice("task.context_feed", self.context_feed, CONTEXT_FEEDS)
        _teacher_forcing(self.teacher_forcing)
        if self.beam_size < 1:
            raise ConfigError(f"task.beam_size must be an integer of at least 1 (1 = greedy "
                              f"search), got {self.beam_size!r}.")


@dataclass
class G2PData(DataModuleSchema):
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    max_len: int = MISSING
    lowercase: bool = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        _positive("task.datamodule.max_len", self.max_len)


@dataclass
class Seq2SeqTask(TaskSchema):
    attention: str = MISSING
    context: str = MISSING
    context_feed: str = MISSING
    teacher_forcing: Any = MISSING
    beam_size: int = MISSING


@dataclass
class G2PTask(Seq2SeqTask):
    data: Any = MISSING
    datamodule: G2PData = field(default_factory=G2PData)
    module: Seq2SeqModule = field(default_factory=Seq2SeqModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class TranslateData(DataModuleSchema):
    src: str = MISSING
    tgt: str = MISSING
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_by: str = MISSING
    split_seed: int = MISSING
    max_len: int = MISSING
    min_len: int = MISSING
    min_freq: int = MISSING
    max_vocab: int | None = MISSING
    lowercase: bool = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        _choice("task.datamodule.split_by", self.split_by, SPLIT_UNITS)
        if str(self.src) == str(self.tgt):
            raise ConfigError(f"task.src and task.tgt are both {str(self.src)!r}; translate "
                              f"between two different translations.")
        if not 1 <= self.min_len <= self.max_len:
            raise ConfigError(f"task.datamodule.min_len={self.min_len} and max_len="
                              f"{self.max_len} must satisfy 1 <= min_len <= max_len.")
        _positive("task.datamodule.min_freq", self.min_freq)


@dataclass
class TranslateTask(TaskSchema):
    src: str = MISSING
    tgt: str = MISSING
    attention: str = MISSING
    context: str = MISSING
    context_feed: str = MISSING
    teacher_forcing: Any = MISSING
    beam_size: int = MISSING
    data: Any = MISSING
    datamodule: TranslateData = field(default_factory=TranslateData)
    module: Seq2SeqModule = field(default_factory=Seq2SeqModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class NamesData(DataModuleSchema):
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    max_len: int = MISSING
    condition: str = MISSING
    char_dim: int = MISSING
    category_dim: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        _positive("task.datamodule.max_len", self.max_len)


@dataclass
class NamesModule(ModuleSchema):
    condition: str = MISSING
    char_dim: int = MISSING
    category_dim: int = MISSING
    dropout: float = MISSING
    sample_count: int = MISSING
    sample_temperatures: list[float] = MISSING
    sample_seed: int = MISSING
    eval_samples: int = MISSING
    eval_temperature: float = MISSING
    eval_seed: int = MISSING
    classifier_ngrams: list[int] = MISSING
    classifier_c: float = MISSING

    def check(self) -> None:
        _choice("task.condition", self.condition, CONDITIONS)
        _fraction("task.module.dropout", self.dropout)
        for key in ("sample_count", "eval_samples"):  # 0: none
            if getattr(self, key) < 0:
                raise ConfigError(f"task.module.{key} must be 0 or more, got "
                                  f"{getattr(self, key)!r}.")
        temperatures = [float(t) for t in self.sample_temperatures]
        if not all(t > 0 for t in [*temperatures, self.eval_temperature]):
            raise ConfigError(f"task.module.sample_temperatures and eval_temperature must be "
                              f"greater than 0, got {temperatures} and {self.eval_temperature}.")
        low_high = list(self.classifier_ngrams)
        if not (len(low_high) == 2 and 1 <= low_high[0] <= low_high[1]):
            raise ConfigError(f"task.module.classifier_ngrams must be [low, high] with "
                              f"1 <= low <= high, got {low_high}.")


@dataclass
class NamesTask(TaskSchema):
    condition: str = MISSING
    char_dim: int = MISSING
    category_dim: int = MISSING
    data: Any = MISSING
    datamodule: NamesData = field(default_factory=NamesData)
    module: NamesModule = field(default_factory=NamesModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING

    def check(self) -> None:
        super().check()
        _positive("task.char_dim", self.char_dim)
        _positive("task.category_dim", self.category_dim)


@dataclass
class NerData(DataModuleSchema):
    dataset: str = MISSING
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    min_freq: int = MISSING
    max_vocab: int | None = MISSING
    lowercase: bool = MISSING
    char_level: bool | None = MISSING
    char_features: bool = MISSING
    max_word_len: int = MISSING
    case_features: bool = MISSING
    bigram_features: bool = MISSING
    bigram_window: str = MISSING
    bigram_min_count: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING
    embeddings: Any = MISSING

    def check(self) -> None:
        super().check()
        _choice("task.datamodule.bigram_window", self.bigram_window, BIGRAM_WINDOWS)
        _positive("task.datamodule.bigram_min_count", self.bigram_min_count)


@dataclass
class TaggingModule(ModuleSchema):
    crf: bool = MISSING
    char_features: bool = MISSING
    char_filters: int = MISSING
    case_features: bool = MISSING
    bigram_features: bool = MISSING
    bigram_dim: int = MISSING
    feature_position: str = MISSING
    dropout: float = MISSING
    word_dropout: float = MISSING
    word_dropout_max_count: int = MISSING
    num_examples: int = MISSING

    def check(self) -> None:
        _positive("task.module.char_filters", self.char_filters)
        _positive("task.module.bigram_dim", self.bigram_dim)
        _choice("task.module.feature_position", self.feature_position, FEATURE_POSITIONS)
        _fraction("task.module.dropout", self.dropout)
        _word_dropout(self.word_dropout)
        _positive("task.module.word_dropout_max_count", self.word_dropout_max_count)

    def check_added(self, added: Mapping[str, Any]) -> None:
        # constructor arguments no task file sets: +task.module.case_dim=4 and the like
        for key in ("char_dropout", "case_dropout", "bigram_dropout"):
            if key in added:  # null: the default (char_dropout: task.module.dropout, else 0)
                _rate(f"task.module.{key}", added[key], optional=True)
        if "case_dim" in added:
            _positive("task.module.case_dim", added["case_dim"])


@dataclass
class NerTask(TaskSchema):
    crf: bool = MISSING
    char_features: bool = MISSING
    case_features: bool = MISSING
    bigram_features: bool = MISSING
    data: Any = MISSING
    embeddings: Embeddings = field(default_factory=Embeddings)
    datamodule: NerData = field(default_factory=NerData)
    module: TaggingModule = field(default_factory=TaggingModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class SentimentData(DataModuleSchema):
    dataset: str = MISSING
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    min_freq: int = MISSING
    max_vocab: int | None = MISSING
    max_len: int = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING
    embeddings: Any = MISSING

    def check(self) -> None:
        super().check()
        _positive("task.datamodule.max_len", self.max_len)
        _positive("task.datamodule.max_vocab", self.max_vocab, optional=True)
        _positive("task.datamodule.min_freq", self.min_freq)


@dataclass
class ClassificationModule(ModuleSchema):
    pooling: str = MISSING
    dropout: float = MISSING

    def check(self) -> None:
        _choice("task.module.pooling", self.pooling, POOLINGS)
        _fraction("task.module.dropout", self.dropout)


@dataclass
class WordDropoutClassificationModule(ClassificationModule):
    word_dropout: float = MISSING
    word_dropout_max_count: int = MISSING

    def check(self) -> None:
        super().check()
        _word_dropout(self.word_dropout)
        _positive("task.module.word_dropout_max_count", self.word_dropout_max_count)


@dataclass
class SentimentTask(TaskSchema):
    data: Any = MISSING
    embeddings: Embeddings = field(default_factory=Embeddings)
    datamodule: SentimentData = field(default_factory=SentimentData)
    module: WordDropoutClassificationModule = field(
        default_factory=WordDropoutClassificationModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    backbone: TaskBackbone = field(default_factory=TaskBackbone)


@dataclass
class SpeechData(DataModuleSchema):
    dataset: str = MISSING
    data: Any = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    normalize: bool = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING


@dataclass
class SpeechTask(TaskSchema):
    dataset: str = MISSING
    data: Any = MISSING
    datamodule: SpeechData = field(default_factory=SpeechData)
    module: ClassificationModule = field(default_factory=ClassificationModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class MotionTask(SpeechTask):
    """``task=motion``: the speech task's keys on the UEA/UCR sets (rnnlab.data.uea)."""


@dataclass
class AsrData(DataModuleSchema):
    data: Any = MISSING
    alphabet: str = MISSING
    data_dir: str = MISSING
    split: list[float] = MISSING
    split_seed: int = MISSING
    string_seed: int = MISSING
    min_digits: int = MISSING
    max_digits: int = MISSING
    repeats: dict[str, int] = MISSING
    sample_rate: int = MISSING
    n_mfcc: int = MISSING
    normalize: bool = MISSING
    batch_size: int = MISSING
    num_workers: int = MISSING
    seed: int = MISSING

    def check(self) -> None:
        super().check()
        _positive("task.datamodule.min_digits", self.min_digits)
        _positive("task.datamodule.max_digits", self.max_digits)
        if self.max_digits < self.min_digits:
            raise ConfigError(f"task.datamodule.max_digits={self.max_digits} is below "
                              f"min_digits={self.min_digits}; give max_digits >= min_digits.")
        for split, value in self.repeats.items():
            _positive(f"task.datamodule.repeats.{split}", value)
        _positive("task.datamodule.sample_rate", self.sample_rate)
        _positive("task.datamodule.n_mfcc", self.n_mfcc)


@dataclass
class CtcModule(ModuleSchema):
    dropout: float = MISSING
    subsample: int = MISSING
    beam_size: int = MISSING

    def check(self) -> None:
        _fraction("task.module.dropout", self.dropout)
        _positive("task.module.subsample", self.subsample)


@dataclass
class AsrDecode(Node):
    beam_size: int = MISSING

    def check(self) -> None:
        _positive("task.decode.beam_size", self.beam_size)


@dataclass
class AsrTask(TaskSchema):
    alphabet: str = MISSING
    decode: AsrDecode = field(default_factory=AsrDecode)
    data: Any = MISSING
    datamodule: AsrData = field(default_factory=AsrData)
    module: CtcModule = field(default_factory=CtcModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


@dataclass
class AsrAttentionModule(DecoderModule):
    subsample: int = MISSING
    teacher_forcing: float = MISSING

    def check(self) -> None:
        _positive("task.module.subsample", self.subsample)
        self.check_decoder()
        if not 0.0 <= self.teacher_forcing <= 1.0:
            raise ConfigError(f"task.module.teacher_forcing must be in [0, 1], got "
                              f"{self.teacher_forcing!r}.")


@dataclass
class AsrAttentionTask(TaskSchema):
    alphabet: str = MISSING
    attention: str = MISSING
    decode: AsrDecode = field(default_factory=AsrDecode)
    data: Any = MISSING
    datamodule: AsrData = field(default_factory=AsrData)
    module: AsrAttentionModule = field(default_factory=AsrAttentionModule)
    optimizer: Any = MISSING
    scheduler: Any = MISSING


def _task_root(schema: type) -> type:
    """Task files are ``@package _global_`` (they also tune ``trainer`` and ``callbacks``),
    so the schema they start from is ``{task: <schema>}`` at the root."""
    return dataclass(type(f"{schema.__name__}Root", (),
                          {"__annotations__": {"task": schema},
                           "task": field(default_factory=schema)}))


MODEL_SCHEMAS: dict[str, type] = {
    "base": ModelSchema, "recurrent": RecurrentModel, "transformer": TransformerModel,
    "arima": ArimaModel, "ets": EtsModel, "seasonal_naive": SeasonalNaiveModel,
    "tfidf": TfidfModel, "bm25": Bm25Model, "dtw": DtwModel, "rocket": RocketModel,
}
TASK_SCHEMAS: dict[str, type] = {
    "adding": AddingTask, "copy": CopyTask, "charlm": CharLMTask, "forecast": ForecastTask,
    "g2p": G2PTask, "translate": TranslateTask, "names": NamesTask, "ner": NerTask,
    "asr": AsrTask, "asr_attention": AsrAttentionTask,
    "sentiment": SentimentTask, "speech": SpeechTask, "motion": MotionTask,
}
TRAINER_SCHEMAS: dict[str, type] = {"default": TrainerSchema, "ddp": DdpTrainer}


def register_configs() -> None:
    """Store the schemas as ``schema/model/*``, ``schema/task/*`` and ``schema/trainer/*``
    in Hydra's ConfigStore; call it before composing (storing twice is harmless)."""
    store = ConfigStore.instance()
    for name, schema in MODEL_SCHEMAS.items():
        store.store(group="schema/model", name=name, node=schema)
    for name, schema in TASK_SCHEMAS.items():
        store.store(group="schema/task", name=name, node=_task_root(schema))
    for name, schema in TRAINER_SCHEMAS.items():
        store.store(group="schema/trainer", name=name, node=schema)


# ---- validation ---------------------------------------------------------------------------------
def _describe(kind: Any) -> str:
    """A type as a user reads it: 'a whole number', 'true or false', ..."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin is typing.Union:
        inner = [a for a in args if a is not type(None)]
        return f"{_describe(inner[0])} or null" if len(inner) == 1 else "a value"
    if origin is list:
        return f"a list of {_describe(args[0]).removeprefix('a ').removeprefix('an ')}s" \
            if args else "a list"
    if isinstance(kind, type) and issubclass(kind, Enum):
        return f"one of {', '.join(m.name for m in kind)}"
    return {int: "a whole number", float: "a number", bool: "true or false",
            str: "a string"}.get(kind, "a value of another type")


def _field_type(object_type: Any, key: Any) -> Any:
    try:
        return typing.get_type_hints(object_type).get(str(key))
    except Exception:  # not a dataclass (a list element, a plain dict): no type to name
        return None


def _value_of(err: OmegaConfBaseException, override: str | None) -> str:
    if override and "=" in override:
        return override.split("=", 1)[1]
    found = re.search(r"Value '(.*?)'", str(err))
    return found.group(1) if found else "?"


def explain(err: BaseException, override: str | None = None,
            current: DictConfig | None = None) -> str:
    """One sentence for an OmegaConf type or key error: the key, the bad value, the fix.

    ``current`` (the config composed without the bad override) gives the fix a value
    that works; ``override`` is the command-line item that failed, when one did."""
    full_key = getattr(err, "full_key", None) or "?"
    if isinstance(err, (ConfigKeyError, ConfigAttributeError)):
        if override and "=" in override:  # the whole item typed: task.modul.crf=1
            full_key = override.split("=", 1)[0].lstrip("+~")
        return _unknown_key(full_key, _value_of(err, override), current)
    value = _value_of(err, override)
    kind = _field_type(getattr(err, "object_type", None), getattr(err, "key", None))
    example = OmegaConf.select(current, full_key, default=None) if current is not None else None
    if kind is None and isinstance(example, (bool, int, float, str)):  # a list element
        kind = type(example)
    expected = _describe(kind) if kind is not None else "of the type this key holds"
    if kind is bool:
        fix = f"write {full_key}=true or {full_key}=false"
    else:
        fix = (f"give one such as {full_key}={_yaml(example)}" if example is not None
               else f"give {expected}")
    return f"{full_key}={value} is not {expected}; {fix}."


def _unknown_key(full_key: str, value: str, current: DictConfig | None) -> str:
    """An unknown key: the nearest known one, or the ``task=`` choice that has it."""
    parent, _, key = full_key.rpartition(".")
    node = OmegaConf.select(current, parent) if current is not None and parent else None
    while parent and current is not None and node is None:  # the unknown part is higher up
        parent, _, key = parent.rpartition(".")
        node = OmegaConf.select(current, parent) if parent else None
    known = [str(k) for k in node] if isinstance(node, DictConfig) else []
    choice = (OmegaConf.select(current, f"{parent}.name")
              if current is not None and parent in ("model", "task") else None)
    where = f"{parent}={choice}" if choice else (parent or "the config")
    close = difflib.get_close_matches(key, known, n=1)
    owners = [name for name, schema in TASK_SCHEMAS.items()
              if parent == "task" and key in schema.__dataclass_fields__]
    if close:
        fix = f"did you mean {parent}.{close[0]}={value}?"
    elif owners:
        fix = f"it is a setting of task={' / task='.join(owners)}, so add task={owners[0]}."
    else:
        fix = (f"check the spelling in conf/{parent.split('.')[0] or 'config'}/, or add it "
               f"as +{full_key}={value} if the class takes it.")
    return f"{full_key}={value}: {where} has no setting {key}; {fix}"


def _yaml(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)) or OmegaConf.is_list(value):
        return "[" + ",".join(_yaml(v) for v in value) + "]"
    return str(value)


def _cause(err: BaseException) -> BaseException:
    """The ConfigError a ``__post_init__`` raised, or the OmegaConf error underneath."""
    seen = err
    while seen is not None:
        if isinstance(seen, ConfigError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return err.__cause__ if isinstance(err, ConfigCompositionException) and err.__cause__ \
        else err


def _check_added(built: Any) -> None:
    """Hand each typed node of ``built`` the keys added to it (OmegaConf sets them as
    attributes after ``__post_init__``), depth first."""
    if not isinstance(built, Node):
        return
    declared = [f.name for f in fields(built)]
    added = {k: v for k, v in vars(built).items() if k not in declared}
    if added:
        built.check_added(added)
    for name in declared:
        _check_added(getattr(built, name))


def validate(cfg: DictConfig) -> None:
    """Run every schema's range, choice and cross-field checks on a composed config.

    OmegaConf checks types while composing but calls no ``__post_init__``; building the
    typed ``model``, ``task`` and ``trainer`` objects here does. Raises :class:`ConfigError`
    (one sentence) on the first problem."""
    seed = cfg.get("seed")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed={seed} is not an integer; give a whole number such as seed=42.")
    for key in ("model", "task", "trainer"):
        node = cfg.get(key)
        if not isinstance(node, DictConfig) or OmegaConf.get_type(node) is dict:
            continue  # an untyped node (a config outside conf/): nothing to check
        try:
            _check_added(OmegaConf.to_object(node))
        except ConfigError:
            raise
        except OmegaConfBaseException as err:
            cause = _cause(err)
            if isinstance(cause, ConfigError):
                raise cause from None
            if isinstance(cause, KEY_OR_TYPE_ERRORS):
                raise ConfigError(explain(cause)) from None
            raise


# ---- the command line -----------------------------------------------------------------------------
def _sweep_jobs(overrides: list[str]) -> list[list[str]] | None:
    """The overrides of a sweep's first job (each sweep at its first value), then one job
    for every other value of each swept key (the rest at their first values): each value
    is composed once. None when a sweep cannot be expanded here (a glob): Hydra's own
    checks then apply."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    values: list[list[str]] = []
    for item in parsed:
        if item.is_sweep_override():
            try:
                swept = list(dict.fromkeys(item.sweep_string_iterator()))
            except Exception:  # noqa: BLE001  (a glob or another form expanded by Hydra only)
                return None
            values.append([f"{item.get_key_element()}={v}" for v in swept])
        else:
            values.append([item.input_line or ""])
    first = [v[0] for v in values]
    jobs = [first]
    for i, options in enumerate(values):
        jobs += [[*first[:i], other, *first[i + 1:]] for other in options[1:]]
    return jobs


def compose_checked(overrides: list[str], config_name: str = "config",
                    check_values: bool = True) -> DictConfig:
    """Compose ``config_name`` with ``overrides`` and validate it, or raise ConfigError with
    one sentence for a wrong type, an unknown key or a value outside its choices (with
    ``check_values=False`` only types and keys, what Hydra itself would refuse)."""
    register_configs()
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        # the run folder Hydra has not made yet: a stand-in lets the trainer node resolve
        stand_in = ["paths.output_dir=" + str(config_dir().parent / "outputs" / "check")]
        try:
            cfg = compose(config_name, overrides=[*stand_in, *overrides])
        except ConfigCompositionException as err:
            cause = err.__cause__
            if not isinstance(cause, KEY_OR_TYPE_ERRORS):
                raise
            key = re.sub(r"\[\d+\]$", "", getattr(cause, "full_key", "") or "")
            override = next((o for o in overrides if o.split("=", 1)[0].lstrip("+~") == key
                             or o.split("=", 1)[0].lstrip("+~").startswith(key + ".")), None)
            current = None
            if override is not None:
                try:
                    current = compose(config_name,
                                      overrides=[*stand_in, *(o for o in overrides if o != override)])
                except Exception:  # noqa: BLE001  (only an example value is lost)
                    current = None
            raise ConfigError(explain(cause, override, current)) from None
        if check_values:
            validate(cfg)
        return cfg


def check_command_line(argv: list[str]) -> None:
    """What ``python train.py ARGV`` would compose, checked before Hydra makes any folder;
    raises ConfigError. Options it does not follow (help, another config folder, shell
    completion) and errors that are not about a value are left to Hydra."""
    from hydra._internal.utils import get_args_parser  # Hydra's own parser: same options

    args, _ = get_args_parser().parse_known_args(argv)
    if (args.help or args.hydra_help or args.info or args.shell_completion
            or args.config_path or args.config_dir or args.experimental_rerun):
        return
    jobs = [list(args.overrides)]
    if args.multirun or any(o.startswith("hydra.mode=") for o in jobs[0]):
        # the first job is checked in full; every other swept value for its type only (a
        # value Hydra cannot even compose stops the whole sweep; one out of range becomes
        # that job's FAILED run while the others go on)
        jobs = _sweep_jobs(jobs[0])
        if jobs is None:
            return
    for n, overrides in enumerate(jobs):
        try:
            compose_checked(overrides, args.config_name or "config", check_values=n == 0)
        except ConfigError:
            raise
        except Exception:  # noqa: BLE001  (anything else: Hydra composes again and reports it)
            return
