"""The real Rotten Tomatoes corpus: download, split, a tiny run, the TF-IDF yardstick."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.data.sentiment import SentimentDataModule
from rnnlab.run.train import run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_real_corpus_is_deduplicated_and_split() -> None:
    dm = SentimentDataModule(data_dir=str(REPO / "data"))
    dm.prepare_data()
    dm.setup()
    sizes = {s: len(dm.datasets[s]) for s in ("train", "val", "test")}
    assert sum(sizes.values()) == 12_752
    assert abs(sizes["test"] - 1275) <= 1 and dm.spec.class_names == ["negative", "positive"]
    positive = sum(dm.texts("train")[1]) / sizes["train"]
    assert 0.57 < positive < 0.59  # stratified: fresh is 57.8% everywhere


def test_tiny_preset_and_tfidf_on_real_data(make_config) -> None:
    data = f"paths.data_dir={REPO / 'data'}"
    metrics = run(make_config("experiment=sentiment_tiny", "model=gru", data))
    assert 0.0 < metrics["test/acc"] <= 1.0
    tfidf = run(make_config("model=tfidf_logreg", data))
    assert tfidf["test/acc"] > 0.74  # well above the 57.8% majority class
