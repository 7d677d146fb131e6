"""Reading checkpoint files safely: the file-level half of loading a trained model.

:func:`rnnlab.build.load_module` rebuilds a module from what is read here, and
:func:`rnnlab.inference.load_checkpoint` adds ``models:/`` URIs on top. Every checkpoint carries the resolved config, the data spec, the data fingerprint and the
datamodule's ``checkpoint_state`` (vocabularies, label names, scalers) under the
``rnnlab`` key, so inference commands (tagging, generation, conversion) need neither the
config files nor the training data. All of it is plain data (dicts, lists, strings,
numbers, tensors): every load uses ``weights_only=True``, so a crafted file can carry
weights but never code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from rnnlab.core.errors import ConfigError, UserError

AUTO = "auto"  # ckpt_path=auto: continue the newest matching run


def check_checkpoint_file(path: str | Path, key: str = "checkpoint",
                          error: type[UserError] = UserError) -> Path:
    """``path`` as a Path if it is a file; else one sentence naming ``key`` (where the path
    came from: ``ckpt_path``, ``task.module.ensemble[1]``) and what to give instead."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{key}={path} is a directory; give the .ckpt file inside it "
                    f"(e.g. {path}/checkpoints/last.ckpt).")
    if not path.is_file():
        raise error(f"{key}={path} does not exist; pass the .ckpt path printed by train.py "
                    f"(saved under outputs/.../checkpoints/ and in the MLflow run's artifacts).")
    return path


def read_checkpoint(path: str | Path, key: str = "checkpoint",
                    map_location: str = "cpu") -> dict[str, Any]:
    """The checkpoint's contents, loaded as data only (``weights_only=True``)."""
    path = check_checkpoint_file(path, key)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        raise UserError(f"{key}={path} holds Python objects that would run code when loaded"
                        f"{f' ({found.group(1)})' if found else ''}, so it was refused "
                        f"unopened; only checkpoints of plain data and tensors, as this lab "
                        f"writes them, are accepted.") from None
    except Exception as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(f"{key}={path} is not a readable checkpoint ({reason}); give a .ckpt "
                        f"file written by this lab.") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("rnnlab"), dict):
        raise UserError(f"{key}={path} was not written by rnnlab's train.py (it has no "
                        f"'rnnlab' metadata), so the model cannot be rebuilt from it.")
    return ckpt


def experiment_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a resolved config that make two runs the same experiment (what
    ``ckpt_path=auto`` matches): the whole task node (a missing one counts as empty), the
    model node and the seed. Paths, trainer limits and loggers are excluded."""
    return {"task": dict(config.get("task") or {}), "model": config.get("model"),
            "seed": config.get("seed")}


def _diff(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} in the checkpoint, {b!r} now"]


def config_differences(stored: dict[str, Any], current: dict[str, Any],
                       keys: tuple[str, ...] = ("task", "model")) -> list[str]:
    """Human-readable differences between a checkpoint's config and the current one."""
    out: list[str] = []
    for key in keys:
        out += _diff(stored.get(key), current.get(key), f"{key}.")
    return out


def load_state(module: torch.nn.Module, state: dict[str, Any], label: str) -> None:
    """``load_state_dict`` with a one-sentence error naming the first mismatched tensor."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or wrong:
        if wrong:
            k = wrong[0]
            detail = (f"{k} is {tuple(state[k].shape)} in the checkpoint but "
                      f"{tuple(own[k].shape)} in the model built now")
        elif missing:
            detail = f"the model built now has {missing[0]}, which the checkpoint lacks"
        else:
            detail = f"the checkpoint has {unexpected[0]}, which the model built now lacks"
        raise UserError(f"{label} does not fit this model ({detail}); use the model settings "
                        f"it was trained with (its config is inside it) or another checkpoint.")
    module.load_state_dict(state)


def check_ckpt_path(cfg: DictConfig) -> None:
    """Fail fast (before any data is read) on a ckpt_path that cannot be a checkpoint."""
    path = cfg.get("ckpt_path")
    if not path or str(path) == AUTO:
        if str(path) == AUTO and not cfg.get("train", True):
            raise ConfigError("ckpt_path=auto resumes training; a test-only run "
                              "(train=false) needs the path of the checkpoint to test.")
        return
    check_checkpoint_file(str(path), "ckpt_path", ConfigError)
