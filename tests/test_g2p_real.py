"""The real CMUdict and Bible corpora: parse, split by word / chapter, tiny presets."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnlab.data.g2p import G2PDataModule
from rnnlab.data.translate import TranslateDataModule
from rnnlab.train import run

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_real_cmudict_is_split_by_word() -> None:
    dm = G2PDataModule(data_dir=str(REPO / "data"))
    dm.prepare_data()
    dm.setup()
    words = {s: {"".join(src) for src, _ in dm.pairs[s]} for s in ("train", "val", "test")}
    assert sum(map(len, words.values())) > 120_000
    assert not words["train"] & words["test"]
    assert any(len(refs) > 1 for _, refs in dm.pairs["test"])  # variants kept as references
    assert dm.spec["tgt_vocab_size"] == 73  # 69 stress-marked phonemes + 4 specials


def test_real_bible_pairs_never_leak_test_verses() -> None:
    dm = TranslateDataModule(data_dir=str(REPO / "data"))
    dm.prepare_data()
    dm.setup()
    train = {tuple(s) for s, _ in dm.pairs["train"]}
    assert len(train) > 10_000 and not any(tuple(s) in train for s, _ in dm.pairs["test"])


@pytest.mark.parametrize("preset", ["g2p_tiny", "translate_tiny"])
def test_tiny_presets_on_real_data(preset: str, make_config) -> None:
    metrics = run(make_config(f"experiment={preset}", "model=gru",
                              f"paths.data_dir={REPO / 'data'}"))
    assert any(k.startswith("test/") for k in metrics)
