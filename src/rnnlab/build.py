"""From a composed config to objects: the one place where model and task meet.

``model=`` picks a backbone (or a baseline); ``task=`` picks datamodule, module, loss
and metrics. Sizes that only the data knows (vocabulary, classes, channels) arrive here
through the datamodule's ``spec``. Impossible pairs are refused before any work.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from rnnlab.baselines.base import Baseline
from rnnlab.errors import ConfigError
from rnnlab.resume import check_ckpt_path
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
    # every model setting is checked now, on a stand-in input, before any data is read
    build_backbone(cfg, {"vocab_size": 2, "padding_idx": 0})
    check_ckpt_path(cfg)


def build_backbone(cfg: DictConfig, spec: dict[str, Any]) -> Any:
    """The ``model=`` backbone, sized by the data's ``spec``; ``task.backbone`` holds the
    task's own settings for any backbone (e.g. ``input_dropout`` on a small corpus)."""
    task_backbone = cfg.task.get("backbone")
    task_kwargs = OmegaConf.to_container(task_backbone, resolve=True) if task_backbone else {}
    return construct(model_config(cfg), vocab_size=spec.get("vocab_size"),
                     input_size=spec.get("input_size"), padding_idx=spec.get("padding_idx", 0),
                     causal=bool(cfg.task.get("causal")), **task_kwargs)


def build_module(cfg: DictConfig, spec: dict[str, Any]) -> RnnlabTask:
    backbone = build_backbone(cfg, spec)
    optimizer = instantiate(cfg.task.optimizer)
    scheduler = instantiate(cfg.task.scheduler) if cfg.task.get("scheduler") else None
    return construct(cfg.task.module, backbone=backbone, spec=spec, optimizer=optimizer, scheduler=scheduler,
                   monitor=cfg.task.monitor)


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
