"""The real Shakespeare corpus: whole plays held out, a tiny run, a sample from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.run.train import run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_tiny_preset_on_shakespeare(make_config) -> None:
    metrics = run(make_config("experiment=charlm_tiny", "model=gru",
                              f"paths.data_dir={REPO / 'data'}"))
    # a few steps on real text: far from trained, but already below a uniform guess
    # over the vocabulary (ln 60+ > 4.1 nats/char)
    assert metrics["test/loss"] < 4.0
    assert metrics["test/bpc"] == pytest.approx(metrics["test/loss"] / 0.6931, rel=1e-3)
