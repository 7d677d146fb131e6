"""From a composed config to objects: the one place where model and task meet.

``model=`` picks a backbone (or a baseline); ``task=`` picks datamodule, module, loss
and metrics. Sizes that only the data knows (vocabulary, classes, channels) arrive here
through the datamodule's ``spec``. Impossible pairs are refused before any work.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytorch_lightning as pl
import torch
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.baselines.base import Baseline
from rnnlab.build.checkpoint import check_ckpt_path, load_state, read_checkpoint
from rnnlab.build.schema import validate
from rnnlab.core.errors import ConfigError, UserError
from rnnlab.data.spec import DataSpec, spec_from_dict
from rnnlab.tasks.base import RnnlabTask

MODEL_META_KEYS = ("name",)


class IncompatiblePair(ConfigError):
    """This model cannot serve this task; a sweep skips the pair instead of stopping."""


def construct(conf: Any, _convert_: str = "none", **kwargs: Any) -> Any:
    """Instantiate ``conf`` by calling its class ourselves.

    Hydra's ``instantiate`` wraps constructor exceptions in its own error type, which would
    turn a one-sentence :class:`UserError` into a traceback; a partial keeps it intact."""
    return instantiate(conf, _partial_=True, _convert_=_convert_)(**kwargs)


def model_config(cfg: DictConfig) -> dict[str, Any]:
    """The model group minus its metadata: exactly the constructor's arguments."""
    conf = OmegaConf.to_container(cfg.model, resolve=True)
    for key in MODEL_META_KEYS:
        conf.pop(key, None)
    return conf


def model_class(cfg: DictConfig) -> type:
    target = cfg.model.get("_target_")
    if not target:
        raise ConfigError(f"model={cfg.model.get('name')} has no _target_; every file in "
                          f"conf/model/ must name the class it builds.")
    try:
        return get_class(target)
    except Exception as err:
        raise ConfigError(f"model._target_={target} cannot be imported; check the class path "
                          f"in conf/model/{cfg.model.get('name')}.yaml.") from err


def is_baseline(cfg: DictConfig) -> bool:
    return issubclass(model_class(cfg), Baseline)


def check_pair(cfg: DictConfig) -> None:
    """Refuse model/task pairs that cannot work, with the reason and a way out."""
    model, task = cfg.model.get("name"), cfg.task.get("name")
    family = cfg.task.get("family")
    cls = model_class(cfg)
    if issubclass(cls, Baseline):
        if family not in cls.families:
            raise IncompatiblePair(
                f"model={model} is a baseline for {' / '.join(cls.families)} tasks, and task={task} "
                f"is a {family} task; choose a neural model or a baseline made for {task}.")
        return
    if cfg.task.get("causal") and cfg.model.get("bidirectional"):
        raise IncompatiblePair(
            f"task={task} is causal (each step may only see the past), so the bidirectional "
            f"model={model} cannot be used; pick a unidirectional one such as model=lstm.")
    # every model setting is checked now, before any data is read: the schemas' ranges
    # first (a sweep job's values were not checked on the command line), then its size
    # (estimated, nothing allocated), then a build on a stand-in input
    validate(cfg)
    stand_in = DataSpec(vocab_size=2, padding_idx=0)
    check_memory(cfg, stand_in)
    build_backbone(cfg, stand_in)
    check_ckpt_path(cfg)


#: the model keys a too-large model is most likely sized by, named in the refusal
SIZE_KEYS = ("hidden_size", "num_layers", "embedding_dim", "d_model", "dim_feedforward")


def check_memory(cfg: DictConfig, spec: DataSpec) -> None:
    """Refuse a backbone whose weights alone exceed the memory available now.

    The backbone is built on PyTorch's ``meta`` device, which records shapes and allocates
    nothing, so ``model.hidden_size=100000`` is one sentence instead of an allocation error
    (or the kernel's out-of-memory killer). A constructor the meta device cannot run is
    left to the real build."""
    try:
        with torch.device("meta"):
            backbone = build_backbone(cfg, spec)
    except UserError:
        raise
    except Exception:  # noqa: BLE001 - the real build reports it with its own sentence
        return
    params = list(backbone.parameters())
    count = sum(p.numel() for p in params)
    need = sum(p.numel() * p.element_size() for p in params)
    available = psutil.virtual_memory().available
    if need <= available:
        return
    sizes = ", ".join(f"model.{k}={cfg.model[k]}" for k in SIZE_KEYS if cfg.model.get(k))
    raise ConfigError(f"model={cfg.model.get('name')} ({sizes}) has {count:,} parameters, "
                      f"{need / 2**30:.1f} GiB of weights alone, more than the "
                      f"{available / 2**30:.1f} GiB of memory available now; choose smaller "
                      f"sizes.")


def build_backbone(cfg: DictConfig, spec: DataSpec) -> Any:
    """The ``model=`` backbone, sized by the data's ``spec``; ``task.backbone`` holds the
    task's own settings for any backbone (e.g. ``input_dropout`` on a small corpus)."""
    task_backbone = cfg.task.get("backbone")
    task_kwargs = OmegaConf.to_container(task_backbone, resolve=True) if task_backbone else {}
    return construct(model_config(cfg), vocab_size=spec.vocab_size,
                     input_size=spec.input_size, padding_idx=spec.padding_idx,
                     causal=bool(cfg.task.get("causal")), **task_kwargs)


def build_module(cfg: DictConfig, spec: DataSpec) -> RnnlabTask:
    check_memory(cfg, spec)  # the data's sizes (vocabulary) may make it larger than planned
    backbone = build_backbone(cfg, spec)
    optimizer = instantiate(cfg.task.optimizer)
    scheduler = instantiate(cfg.task.scheduler) if cfg.task.get("scheduler") else None
    module = construct(cfg.task.module, backbone=backbone, spec=spec, optimizer=optimizer,
                       scheduler=scheduler, monitor=cfg.task.monitor)
    # after the task is built, so that nothing it initialises overwrites the vectors
    apply_embeddings(cfg, backbone, spec)
    # a task that joins other checkpoints (a seq2seq ensemble at test time) rebuilds them
    # through this layer, so the task layer never imports the loader above it
    module.checkpoint_loader = load_module
    return module


@dataclass
class LoadedModel:
    """A trained model rebuilt from its checkpoint alone."""

    module: Any            # the task's LightningModule, in eval mode
    config: DictConfig     # the resolved training config
    spec: DataSpec         # sizes from the datamodule
    data_state: dict[str, Any]  # vocabularies etc. from the datamodule


def load_module(path: str | Path, map_location: str = "cpu", key: str = "checkpoint",
                shown: str | None = None) -> LoadedModel:
    """Rebuild the model a local ``.ckpt`` of this lab holds, or fail with one sentence.

    The checkpoint's own config and spec size the model, so neither the config files nor
    the training data are needed (:func:`rnnlab.inference.load_checkpoint` also takes
    ``models:/`` URIs; ``shown`` is the name errors give, the URI a file came from)."""
    ckpt = read_checkpoint(path, key, map_location)
    meta = ckpt["rnnlab"]
    cfg = OmegaConf.create(meta["config"])
    if OmegaConf.select(cfg, "task.module.ensemble"):  # test-time partners stay behind
        cfg.task.module.ensemble = None
    label = f"{key}={shown or path}"
    spec = spec_from_dict(meta["spec"], label)
    module = build_module(cfg, spec)
    load_state(module, ckpt["state_dict"], label)
    module.eval()
    return LoadedModel(module, cfg, spec, meta.get("data_state") or {})


def apply_embeddings(cfg: DictConfig, backbone: Any, spec: DataSpec) -> None:
    """Copy the datamodule's word vectors (``spec.embeddings``, from ``task.embeddings``)
    into the backbone's token embedding; ``spec.freeze_embeddings`` keeps them fixed.

    The vectors' size comes from the file (or ``task.embeddings.dim`` when trained here),
    so a model built for another size is refused rather than silently cut or padded."""
    vectors = spec.embeddings
    if vectors is None:
        return
    table = getattr(backbone, "embedding", None)
    model = cfg.model.get("name")
    if table is None:
        raise ConfigError(f"task.embeddings gives word vectors, but model={model} has no token "
                          f"embedding to put them in; use a model that reads token ids (such "
                          f"as model=lstm) or set task.embeddings.path/train to null.")
    key = "model.embedding_dim" if "embedding_dim" in cfg.model else "model.d_model"
    rows, dim = int(vectors.shape[0]), int(vectors.shape[1])
    if dim != table.embedding_dim:
        raise ConfigError(f"the word vectors have {dim} dimensions but {key}="
                          f"{table.embedding_dim}; set {key}={dim}, or use vectors of "
                          f"{table.embedding_dim} (task.embeddings.dim={table.embedding_dim} "
                          f"for vectors trained here).")
    if rows != table.num_embeddings:
        raise ConfigError(f"the word vectors have {rows} rows but the vocabulary has "
                          f"{table.num_embeddings} words; they were prepared for other data, "
                          f"so run the datamodule's setup again.")
    with torch.no_grad():
        table.weight.copy_(torch.as_tensor(vectors, dtype=table.weight.dtype))
    table.weight.requires_grad_(not spec.freeze_embeddings)


def build_baseline(cfg: DictConfig) -> Baseline:
    return construct(model_config(cfg))


def build_datamodule(cfg: DictConfig) -> Any:
    return construct(cfg.task.datamodule, _convert_="all")


def build_callbacks(cfg: DictConfig) -> list[pl.Callback]:
    """The configured callbacks; refuses ones that watch a val metric when nothing validates."""
    # an entry without _target_ only tunes a callback that another choice removed
    # (e.g. a task's early-stopping patience under callbacks=none): nothing to build
    chosen = {name: c for name, c in (cfg.get("callbacks") or {}).items()
              if c is not None and c.get("_target_")}
    limit = cfg.get("trainer", {}).get("limit_val_batches")
    if limit is not None and float(limit) == 0:
        watching = [f"callbacks.{name}" for name, c in chosen.items()
                    if str(c.get("monitor") or "").startswith("val/")]
        if watching:
            raise ConfigError(f"trainer.limit_val_batches={limit} turns validation off, but "
                              f"{' and '.join(watching)} watch {cfg.task.monitor}; keep some "
                              f"validation batches or add callbacks=none.")
    return [construct(c) for c in chosen.values()]
