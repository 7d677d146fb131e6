"""Shared fixtures: configs composed like the CLI does, in a throw-away project root.

Every test run gets its own data dir, outputs and MLflow store under ``tmp_path``; the
repository's ``conf/`` is used as is, so the tests exercise the real configs. One thing
differs from a user's run: the servable MLflow model that every finished run logs
(``logger.mlflow.log_model``) is off, because writing and checking it costs more than a tiny
run's training. The tests of serving and the registry opt in with
``@pytest.mark.servable_model`` (or an explicit ``logger.mlflow.log_model=true``).

The plain functions behind the fixtures are in helpers.py; the names re-exported here keep
``from conftest import compose_config`` working.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import (  # noqa: F401  (re-exported)
    REPO,
    compose_config,
    fake_faker_wheel,
    token_batch,
    write_sentiment_csv,
)
from omegaconf import DictConfig

import rnnlab.data.names as names_data
from rnnlab.data.sources import PinnedDistribution, sha256_of

torch.set_num_threads(1)  # tiny models: threads cost more than they give, and CI has 2 cores
os.environ.setdefault("CI", "1")  # plain progress output in tests


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """An empty project root (data/, outputs/, mlflow.db are created on demand)."""
    return tmp_path


@pytest.fixture
def make_config(lab_root: Path, request: pytest.FixtureRequest) -> Callable[..., DictConfig]:
    """``compose_config`` rooted at ``lab_root``; logs the servable model only in tests
    marked ``servable_model``."""
    log_model = request.node.get_closest_marker("servable_model") is not None

    def _make(*overrides: str) -> DictConfig:
        return compose_config(list(overrides), lab_root, log_model=log_model)
    return _make


@pytest.fixture
def sentiment_csv(tmp_path: Path) -> Path:
    return write_sentiment_csv(tmp_path / "reviews.csv")


@pytest.fixture
def fake_faker(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A faker wheel of made-up names in the lab's data cache, pinned by its own sha256."""
    wheel = fake_faker_wheel(lab_root / "data" / "cache")
    monkeypatch.setattr(names_data, "FAKER", PinnedDistribution("faker", "40.0.0",
                                                                sha256_of(wheel)))
    return wheel
