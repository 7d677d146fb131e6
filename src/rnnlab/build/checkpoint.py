"""Reading checkpoint files safely: the file-level half of loading a trained model.

:func:`rnnlab.build.load_module` rebuilds a module from what is read here, and
:func:`rnnlab.inference.load_checkpoint` adds ``models:/`` URIs on top. Every checkpoint carries the resolved config, the data spec, the data fingerprint and the
datamodule's ``checkpoint_state`` (vocabularies, label names, scalers) under the
``rnnlab`` key, so inference commands (tagging, generation, conversion) need neither the
config files nor the training data. All of it is plain data (dicts, lists, strings,
numbers, tensors): every load uses ``weights_only=True``, so a crafted file can carry
weights but never code. A checkpoint with ``<file>.sha256`` beside it (the lab writes one,
:mod:`rnnlab.tracking.checksums`) must match it, and one of another layout (no spec, a
config without its task, a model class this lab lacks) is one sentence naming what is
missing, at every entry point, never a traceback from deep inside the rebuild.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from hydra.utils import get_class
from omegaconf import DictConfig

from rnnlab.core.errors import ConfigError, UserError
from rnnlab.data.sources import sha256_of
from rnnlab.tracking.checksums import SUFFIX, recorded_checksum

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
    """The checkpoint's contents, loaded as data only (``weights_only=True``), once its
    recorded sha256 (when there is one) matches and its layout is this lab's."""
    path = check_checkpoint_file(path, key)
    check_integrity(path, key)
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
    missing = layout_gap(ckpt)
    if missing:
        raise UserError(f"{key}={path} is a checkpoint of another layout or version ({missing}), "
                        f"so the model cannot be rebuilt from it; give a .ckpt written by this "
                        f"version of the lab's train.py.")
    return ckpt


def check_integrity(path: Path, key: str = "checkpoint") -> None:
    """Refuse a file whose sha256 differs from the one recorded beside it."""
    expected = recorded_checksum(path)
    if expected is None:
        return
    actual = sha256_of(path)
    if actual != expected:
        raise UserError(f"{key}={path} does not match its recorded sha256 ({path.name}{SUFFIX} "
                        f"says {expected[:12]}..., the file is {actual[:12]}...): it changed "
                        f"after it was written (a partial copy, a full disk, damage); copy it "
                        f"again or use another checkpoint.")


def layout_gap(ckpt: dict[str, Any]) -> str | None:
    """What a rebuild needs and the checkpoint lacks, in words; None when nothing is."""
    meta = ckpt["rnnlab"]
    config = meta.get("config")
    if not isinstance(ckpt.get("state_dict"), dict):
        return "its 'state_dict' is missing"
    if not isinstance(meta.get("spec"), dict):
        return "its 'rnnlab.spec' is missing"
    if not isinstance(config, dict):
        return "its 'rnnlab.config' is missing"
    for section in ("task", "model"):
        if not isinstance(config.get(section), dict):
            return f"its config has no {section!r} section"
    if not isinstance((config["task"]).get("module"), dict):
        return "its config has no 'task.module'"
    target = config["model"].get("_target_")
    if not target:
        return "its config has no 'model._target_'"
    try:
        get_class(str(target))
    except Exception:  # noqa: BLE001 - any import failure means the same to the reader
        return f"its model class {target} does not exist in this lab"
    return None


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
