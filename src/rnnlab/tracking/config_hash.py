"""What makes two runs one configuration: a digest of the resolved config minus the seed,
run-local paths and bookkeeping, stored on every run as the tag ``rnnlab.config_hash``
at its start and used by compare.py to average only seeds of one configuration."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping

CONFIG_HASH_TAG = "rnnlab.config_hash"
MAX_PARAM_LENGTH = 6000  # = rnnlab.tracking.mlflow.MAX_PARAM_LENGTH: params are cut there

# What is not part of a configuration. Seeds (``seed`` and every key named ``seed``, such
# as the loader's ``task.datamodule.seed``, which follows it) vary within an entry.
# ``paths.*`` and ``logger.*`` say where a run is written, ``ckpt_path`` where it started
# from, ``test`` whether it was tested; ``data.*`` and ``model.num_parameters`` are numbers
# the run measured, not settings. Workers, logging cadence and console output cannot change
# the weights. Everything else (every trainer limit included: a different max_epochs or
# limit_train_batches is a different entry) is part of it, with the data fingerprint.
EXCLUDED_KEYS = frozenset({"ckpt_path", "test", "model.num_parameters",
                           "trainer.log_every_n_steps", "trainer.enable_progress_bar",
                           "trainer.enable_model_summary"})
EXCLUDED_PREFIXES = ("paths.", "logger.", "hydra.", "data.")
EXCLUDED_LAST_PARTS = frozenset({"seed", "num_workers"})
# run-local paths inside other values (checkpoint folder, data folder) become these names,
# so one configuration has one hash in any clone and any output folder; longest first
PATH_KEYS = ("paths.output_dir", "paths.log_dir", "paths.data_dir", "paths.root_dir")


def _excluded(key: str) -> bool:
    return (key in EXCLUDED_KEYS or key.startswith(EXCLUDED_PREFIXES)
            or key.rsplit(".", 1)[-1] in EXCLUDED_LAST_PARTS)


def config_identity(params: Mapping[str, str], fingerprint: str | None = None) -> dict[str, str]:
    """The settings that make a configuration, from a run's flattened params (or the
    flattened config at run start, which is what the params are): seeds, run-local paths
    and bookkeeping removed, paths inside other values replaced by their key, and the data
    fingerprint added, so runs on different data are never one entry."""
    # a path only where it stands whole: "/a" is not replaced inside "val/acc"
    paths = [(re.compile(r"(?<![\w.~/-])" + re.escape(params[k].rstrip("/")) + r"(?![\w.~-])"),
              "${" + k + "}") for k in PATH_KEYS if params.get(k) not in (None, "", "null", "/")]
    out = {}
    for key, value in params.items():
        if _excluded(key):
            continue
        text = str(value)[:MAX_PARAM_LENGTH]
        for pattern, name in paths:
            text = pattern.sub(lambda _, name=name: name, text)
        out[key] = text
    if fingerprint:
        out["data_fingerprint"] = fingerprint
    return out


def config_hash(identity: Mapping[str, str]) -> str:
    """A short stable digest of :func:`config_identity`."""
    blob = json.dumps(sorted(identity.items()), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def config_tags(params: Mapping[str, str], fingerprint: str | None) -> dict[str, str]:
    """``{rnnlab.config_hash: ...}`` for a run about to start from ``params`` (its resolved
    config, flattened as its params will be): the same digest compare.py derives from the
    params of runs logged without the tag."""
    return {CONFIG_HASH_TAG: config_hash(config_identity(params, fingerprint))}
