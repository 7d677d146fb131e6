"""Rebuilding a trained model from its checkpoint alone.

Every checkpoint carries the resolved config, the data spec and the datamodule's
``checkpoint_state`` (vocabularies, label names, scalers) under the ``rnnlab`` key, so
inference commands (tagging, generation, conversion) need neither the config files nor
the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from rnnlab.errors import UserError


@dataclass
class LoadedModel:
    module: Any            # the task's LightningModule, in eval mode
    config: DictConfig     # the resolved training config
    spec: dict[str, Any]   # sizes from the datamodule
    data_state: dict[str, Any]  # vocabularies etc. from the datamodule


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> LoadedModel:
    """Load a ``.ckpt`` written by this lab, or fail with one sentence saying why."""
    from rnnlab.build import build_module

    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; pass the .ckpt path printed by "
                        f"train.py (or logged under the MLflow run's checkpoints/ artifacts).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:
        raise UserError(f"checkpoint {path} cannot be read ({err}); is it a .ckpt file?") from err
    meta = ckpt.get("rnnlab") if isinstance(ckpt, dict) else None
    if not meta:
        raise UserError(f"checkpoint {path} was not written by rnnlab's train.py (it has no "
                        f"'rnnlab' metadata), so the model cannot be rebuilt from it.")
    cfg = OmegaConf.create(meta["config"])
    if OmegaConf.select(cfg, "task.module.ensemble"):  # test-time partners stay behind
        cfg.task.module.ensemble = None
    module = build_module(cfg, meta["spec"])
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return LoadedModel(module, cfg, meta["spec"], meta.get("data_state") or {})
