"""The data-to-model contract: one small dataclass per head kind.

A datamodule learns sizes and names the model cannot know before the data is read (the
vocabulary, the tag set, the forecast window). It hands them over as one of the classes
below, so a task reads ``spec.num_classes`` from a declared field, a typo is an
``AttributeError`` at build time instead of a silent ``None``, and a new datamodule can
see in one place what its head needs.

The common part (:class:`DataSpec`) is the input side every backbone reads: token ids
(``vocab_size``) or real-valued frames (``input_size``), the padding id, and optional
word vectors. Each subclass adds what its head reads.

Checkpoints store :meth:`DataSpec.to_dict` (plain values, ``kind`` included, the word
vectors left out: they are in the weights) and :func:`spec_from_dict` reads it back,
including the untyped dicts written before these classes existed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from rnnlab.core.errors import DataError


@dataclass(kw_only=True)
class DataSpec:
    """The input side, common to every head: what sizes the backbone's input layer."""

    kind: ClassVar[str] = "input"
    padding_idx: int = 0
    vocab_size: int | None = None      # token input: the embedding table's rows
    input_size: int | None = None      # real-valued input: features per step
    unk_id: int | None = None
    token_counts: list[int] | None = None  # training count per id (word dropout)
    embeddings: Any = None             # a (vocab_size, dim) tensor from task.embeddings
    freeze_embeddings: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain values for a checkpoint; the vectors stay out (they are in the weights)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "embeddings"}
        return {"kind": self.kind, **values}


@dataclass(kw_only=True)
class ClassifySpec(DataSpec):
    """N->1 classification (sentiment, speech): one label per sequence."""

    kind: ClassVar[str] = "classify"
    num_classes: int
    class_names: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class TagSpec(DataSpec):
    """N->N tagging (ner): one IOB2 tag per token, plus the sizes of the optional
    per-token features (characters, case classes, character bigrams)."""

    kind: ClassVar[str] = "tag"
    tag_names: list[str]
    char_level: bool = False
    char_vocab_size: int | None = None
    case_classes: int | None = None
    bigram_vocab_size: int | None = None
    bigrams_per_token: int = 1


@dataclass(kw_only=True)
class CopySpec(DataSpec):
    """N->N symbol recall (copy): a class per step, scored on the recalled symbols."""

    kind: ClassVar[str] = "copy"
    num_classes: int
    n_symbols: int = 0
    baseline_loss: float | None = None


@dataclass(kw_only=True)
class RegressSpec(DataSpec):
    """N->1 regression (adding): ``output_size`` values and the memoryless loss."""

    kind: ClassVar[str] = "regress"
    output_size: int = 1
    baseline_loss: float | None = None
    seq_len: int | None = None


@dataclass(kw_only=True)
class LanguageModelSpec(DataSpec):
    """1->N next-token prediction (charlm): the vocabulary for generation."""

    kind: ClassVar[str] = "language_model"
    itos: list[str] = field(default_factory=list)
    seq_len: int = 128


@dataclass(kw_only=True)
class PairSpec(DataSpec):
    """N->M sequence to sequence (g2p, translate): the target vocabulary and the
    datamodule's pair format (scorer, tokenizer, joiner) as data."""

    kind: ClassVar[str] = "pair"
    tgt_vocab_size: int
    tgt_itos: list[str]
    bos_id: int
    eos_id: int
    scorer: str        # the datamodule's PairFormat, as plain fields
    tokenizer: str
    joiner: str


@dataclass(kw_only=True)
class NamesSpec(DataSpec):
    """Conditioned generation (names): characters, categories and how they are fed."""

    kind: ClassVar[str] = "names"
    num_chars: int
    bos_id: int
    eos_id: int
    itos: list[str]
    categories: list[str]
    aliases: dict[str, str] = field(default_factory=dict)
    max_len: int
    condition: str
    char_dim: int
    category_dim: int


@dataclass(kw_only=True)
class ForecastSpec(DataSpec):
    """Multi-step forecasting: window, horizon, target columns and seasonality."""

    kind: ClassVar[str] = "forecast"
    num_features: int
    targets: list[int]
    target_names: list[str]
    window: int
    steps: int
    strategy: str
    season: int
    periods: dict[str, int] = field(default_factory=dict)


@dataclass(kw_only=True)
class TranscribeSpec(DataSpec):
    """N->M transcription without alignment (asr, CTC): the output alphabet; id 0 is the
    CTC blank and symbol ``alphabet[i]`` is id ``i + 1``."""

    kind: ClassVar[str] = "transcribe"
    alphabet: list[str]


KINDS: dict[str, type[DataSpec]] = {c.kind: c for c in (
    DataSpec, ClassifySpec, TagSpec, CopySpec, RegressSpec, LanguageModelSpec, PairSpec,
    NamesSpec, ForecastSpec, TranscribeSpec)}

# Checkpoints written before the N->M datamodules declared their format named only their
# task (``"seq2seq"``; none meant translate). What those names meant, frozen.
LEGACY_PAIR_FORMATS = {"g2p": {"scorer": "edits", "tokenizer": "chars", "joiner": ""},
                       "translate": {"scorer": "bleu", "tokenizer": "words", "joiner": " "}}
# keys that untyped specs carried and no head reads any more
LEGACY_DROPPED = ("num_tags", "seq2seq")


def legacy_kind(data: Mapping[str, Any]) -> str:
    """The kind of an untyped spec dict (checkpoints from before the typed spec), told by
    the key only that head's datamodule wrote."""
    for key, kind in (("tag_names", "tag"), ("tgt_vocab_size", "pair"),
                      ("categories", "names"), ("season", "forecast"),
                      ("n_symbols", "copy"), ("output_size", "regress"),
                      ("alphabet", "transcribe"),
                      ("num_classes", "classify"), ("itos", "language_model")):
        if key in data:
            return kind
    return "input"


def spec_from_dict(data: Mapping[str, Any], where: str = "the checkpoint") -> DataSpec:
    """The typed spec a checkpoint stored (see :meth:`DataSpec.to_dict`); an untyped dict
    from an older checkpoint is read by :func:`legacy_kind`."""
    values = dict(data)
    typed = "kind" in values
    kind = str(values.pop("kind")) if typed else legacy_kind(values)
    if kind not in KINDS:
        raise DataError(f"{where} stores a data spec of kind {kind!r}, which this version of "
                        f"rnnlab does not know ({', '.join(KINDS)}); use the rnnlab version "
                        f"that wrote it.")
    cls = KINDS[kind]
    if not typed:
        if kind == "pair" and "scorer" not in values:
            values.update(LEGACY_PAIR_FORMATS[str(values.get("seq2seq", "translate"))])
        for key in LEGACY_DROPPED:
            values.pop(key, None)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise DataError(f"{where} stores a {kind} data spec with key {unknown[0]!r}, which "
                        f"this version of rnnlab does not know; use the rnnlab version that "
                        f"wrote it.")
    try:
        return cls(**values)
    except TypeError as err:  # a required field is missing
        raise DataError(f"{where} stores an incomplete {kind} data spec ({err}); it cannot "
                        f"be rebuilt, retrain or use the rnnlab version that wrote it.") from err
