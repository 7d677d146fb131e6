"""Shared test helpers: compose configs like the CLI does, in a throw-away project root.

Every test run gets its own data dir, outputs and MLflow store under ``tmp_path``; the
repository's ``conf/`` is used as is, so the tests exercise the real configs.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from rnnlab.build.schema import register_configs
from rnnlab.core.paths import config_dir, register_resolvers

REPO = Path(__file__).resolve().parents[1]
register_resolvers()
register_configs()  # the schemas conf/model, conf/task and conf/trainer start from
torch.set_num_threads(1)  # tiny models: threads cost more than they give, and CI has 2 cores
os.environ.setdefault("CI", "1")  # plain progress output in tests


def compose_config(overrides: list[str], root: Path | None = None) -> DictConfig:
    """The config ``python train.py <overrides>`` would get, rooted at ``root`` if given."""
    extra = []
    if root is not None:
        extra = [f"paths.root_dir={root}", f"paths.output_dir={root}/outputs/run",
                 f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*extra, *overrides])


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """An empty project root (data/, outputs/, mlflow.db are created on demand)."""
    return tmp_path


@pytest.fixture
def make_config(lab_root: Path) -> Callable[..., DictConfig]:
    def _make(*overrides: str) -> DictConfig:
        needs_logger = not any(o.startswith("logger=") for o in overrides)
        cfg_overrides = list(overrides)
        if not needs_logger:  # logger=csv/none: no mlflow tracking_uri key to set
            return compose_config([f"paths.root_dir={lab_root}",
                                   f"paths.output_dir={lab_root}/outputs/run", *cfg_overrides])
        return compose_config(cfg_overrides, lab_root)
    return _make


def write_sentiment_csv(path: Path, n: int = 160, seed: int = 0, sep: str = ",") -> Path:
    """A learnable two-class corpus in the user-file format (text,label)."""
    rng = random.Random(seed)
    pos = ["good", "great", "fine", "superb", "moving", "funny"]
    neg = ["bad", "awful", "dull", "boring", "weak", "messy"]
    filler = ["the", "movie", "film", "was", "a", "plot", "and", "actors", "story", "it"]
    lines = [f"text{sep}label"]
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        words = rng.sample(filler, rng.randint(3, 8)) + rng.sample(pos if i % 2 == 0 else neg, 2)
        rng.shuffle(words)
        text = " ".join(words)
        lines.append(f'"{text}"{sep}{label}' if sep == "," else f"{text}{sep}{label}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sentiment_csv(tmp_path: Path) -> Path:
    return write_sentiment_csv(tmp_path / "reviews.csv")


def token_batch(lengths: list[int], vocab: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch of random token ids (never 0 or 1) and its lengths."""
    torch.manual_seed(0)
    x = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
    for i, n in enumerate(lengths):
        x[i, :n] = torch.randint(2, vocab, (n,))
    return x, torch.tensor(lengths)
