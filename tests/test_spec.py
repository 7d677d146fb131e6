"""The typed data spec: what each head kind declares, how checkpoints store and read it
(including the untyped dicts older checkpoints hold), and what a bad stored spec says."""

from __future__ import annotations

import pytest
import torch

from rnnlab.core.errors import DataError
from rnnlab.data.spec import (
    KINDS,
    ClassifySpec,
    CopySpec,
    DataSpec,
    ForecastSpec,
    LanguageModelSpec,
    NamesSpec,
    PairSpec,
    RegressSpec,
    TagSpec,
    TranscribeSpec,
    spec_from_dict,
)

# one filled-in spec per head kind, as the datamodules build them
EXAMPLES = [
    ClassifySpec(vocab_size=30, padding_idx=0, unk_id=1, token_counts=[0, 0, 3],
                 num_classes=2, class_names=["negative", "positive"]),
    TagSpec(vocab_size=40, tag_names=["O", "B-PER", "I-PER"], char_level=True,
            bigram_vocab_size=17, bigrams_per_token=2),
    CopySpec(vocab_size=11, padding_idx=10, num_classes=9, n_symbols=10, baseline_loss=0.5),
    RegressSpec(input_size=2, output_size=1, baseline_loss=0.167, seq_len=100),
    LanguageModelSpec(vocab_size=5, itos=["<pad>", "<unk>", "a", "b", "c"], seq_len=64),
    PairSpec(vocab_size=9, tgt_vocab_size=6, tgt_itos=list("abcdef"), bos_id=2, eos_id=3,
             scorer="edits", tokenizer="chars", joiner=""),
    NamesSpec(input_size=64, num_chars=30, bos_id=2, eos_id=3, itos=list("abc"),
              categories=["fr_FR"], aliases={"fr_FR": "French"}, max_len=20,
              condition="init", char_dim=64, category_dim=32),
    ForecastSpec(input_size=3, num_features=3, targets=[1, 2], target_names=["a", "b"],
                 window=24, steps=6, strategy="direct", season=12,
                 periods={"val": 12, "test": 12}),
    TranscribeSpec(input_size=13, alphabet=list("0123456789")),
]


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: s.kind)
def test_each_kind_survives_the_checkpoint_round_trip(spec: DataSpec) -> None:
    stored = spec.to_dict()
    assert stored["kind"] == spec.kind and "embeddings" not in stored
    # what a checkpoint holds must load with weights_only=True: plain values only
    assert spec_from_dict(stored) == spec
    # an untyped dict (a checkpoint from before the typed spec) is told apart by its keys
    legacy = {k: v for k, v in stored.items() if k not in ("kind", "freeze_embeddings")}
    assert spec_from_dict(legacy) == spec


def test_every_kind_is_registered_once() -> None:
    assert sorted(KINDS) == sorted({type(s).kind for s in EXAMPLES} | {"input"})


def test_the_vectors_stay_out_of_the_stored_spec() -> None:
    spec = ClassifySpec(vocab_size=3, num_classes=2)
    spec.embeddings, spec.freeze_embeddings = torch.ones(3, 4), True
    stored = spec.to_dict()
    assert "embeddings" not in stored and stored["freeze_embeddings"] is True
    assert spec_from_dict(stored).embeddings is None


def test_keys_no_head_reads_any_more_are_dropped_from_old_checkpoints() -> None:
    old = {"vocab_size": 40, "padding_idx": 0, "tag_names": ["O"], "num_tags": 1}
    assert spec_from_dict(old) == TagSpec(vocab_size=40, tag_names=["O"])


def test_a_head_reads_declared_fields_only() -> None:
    with pytest.raises(TypeError, match="num_tags"):
        TagSpec(tag_names=["O"], num_tags=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="num_classes"):
        ClassifySpec(vocab_size=3)  # type: ignore[call-arg]


@pytest.mark.parametrize(("stored", "message"), [
    ({"kind": "graph", "vocab_size": 3},
     "ckpt_path=a.ckpt stores a data spec of kind 'graph', which this version of rnnlab does "
     "not know"),
    ({"kind": "classify", "num_classes": 2, "num_labels": 2},
     "ckpt_path=a.ckpt stores a classify data spec with key 'num_labels', which this version "
     "of rnnlab does not know; use the rnnlab version that wrote it."),
    ({"kind": "tag", "vocab_size": 3},
     "ckpt_path=a.ckpt stores an incomplete tag data spec"),
])
def test_a_bad_stored_spec_is_one_sentence_naming_the_file(stored: dict, message: str) -> None:
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec_from_dict(stored, "ckpt_path=a.ckpt")
