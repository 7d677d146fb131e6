"""Sequence labelling (N->N): one tag per token, scored by entity-level F1.

The backbone (any ``model=``) gives per-token features; a linear layer turns them into tag
scores (emissions). The tagger can add its own per-token input features, each from the
batch the datamodule (or ``rnnlab-tag``) encodes:

* a char-CNN over each word's characters (``task.char_features=true``, word-level corpora);
* the casing class of the raw word (``task.case_features=true``), for lower-cased words;
* the embedding of the token's bigram with the next (and optionally the previous) token
  (``task.bigram_features=true``), for character-level corpora such as MSRA.

With ``feature_position=input`` (the task config's) they are joined to the word
embeddings and read by the backbone, as in Lample et al. (2016) and Ma & Hovy (2016), so
the backbone's input dropout covers them; ``feature_position=output`` joins them to the backbone's outputs
instead, before the emission dropout (where the char-CNN sat before). Two heads share
everything else:

* softmax: each token's tag is chosen on its own (cross-entropy per token);
* CRF (``task.crf=true``): a linear-chain CRF scores the whole tag sequence, learns which
  tag may follow which, and Viterbi decoding returns the best valid IOB2 sequence.

Both losses are averaged per real token, so learning rates carry over between heads.
Model selection uses ``val/f1`` (entity-level, strict, micro); ``test/`` adds the
per-type F1 and writes a per-type table and some tagged test sentences to the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.dist import gather_objects
from rnnlab.core.errors import ConfigError
from rnnlab.data.spec import TagSpec
from rnnlab.metrics.spans import SpanScorer, bio_spans, format_tagged
from rnnlab.models.crf import LinearChainCRF
from rnnlab.tasks.base import OptimizerFactory, RnnlabTask, WordDropout
from rnnlab.tracking.artifacts import log_text
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

TAG_PAD = -100
#: ``task.module.feature_position``'s choices (the config schema checks the value)
FEATURE_POSITIONS = ("input", "output")
# how the test scores follow from predictions/test.parquet (rnnlab.report.stats): entity counts
# per sentence, so F1 is recomputed from resampled sentences, never averaged
PREDICTION_METRICS = {"test/f1": {"kind": "f1", "tp": "tp", "fp": "fp", "fn": "fn"},
                      "test/precision": {"kind": "precision", "tp": "tp", "fp": "fp", "fn": "fn"},
                      "test/recall": {"kind": "recall", "tp": "tp", "fp": "fp", "fn": "fn"},
                      "test/acc": {"kind": "ratio", "num": "correct_tokens", "den": "tokens"}}


def sentence_counts(gold: list[str], pred: list[str]) -> dict[str, float]:
    """Entity tp / fp / fn of one sentence (strict spans, as SpanScorer counts them), its
    F1 (1.0 when it has no entity and none is predicted) and token counts."""
    gs, ps = set(bio_spans(gold)), set(bio_spans(pred))
    tp = len(gs & ps)
    fp, fn = len(ps) - tp, len(gs) - tp
    f1 = 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0
    return {"score": f1, "tp": tp, "fp": fp, "fn": fn, "tokens": len(gold),
            "correct_tokens": sum(a == b for a, b in zip(gold, pred, strict=True))}


def length_mask(lengths: Tensor, steps: int) -> Tensor:
    """(B, T) True at real steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


class CharCNN(nn.Module):
    """Characters of each token -> embedding -> 1-D convolution -> max over the word
    (Ma & Hovy 2016): spelling features (capitals, suffixes) for rare and unknown words."""

    def __init__(self, vocab_size: int, char_dim: int = 25, filters: int = 30, width: int = 3,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, char_dim, padding_idx=0)
        self.dropout = nn.Dropout(dropout)
        self.conv = nn.Conv1d(char_dim, filters, width, padding=width // 2)
        self.output_size = filters

    def forward(self, chars: Tensor) -> Tensor:
        """(B, T, W) char ids -> (B, T, filters)."""
        b, t, w = chars.shape
        h = self.dropout(self.embed(chars.reshape(b * t, w))).transpose(1, 2)
        h = self.conv(h).masked_fill((chars.reshape(b * t, 1, w) == 0), float("-inf"))
        h = h.max(dim=2).values
        return h.masked_fill(torch.isinf(h), 0.0).reshape(b, t, -1)


def _dropout_rate(value: float | None, default: float) -> float:
    """``value``, or ``default`` for null (rates are checked by the config schema)."""
    return default if value is None else float(value)


class TaggingTask(RnnlabTask):
    """Token features -> backbone -> dropout -> linear emissions -> softmax or CRF.

    Args:
        crf: use the linear-chain CRF head (IOB2 constraints from ``spec.tag_names``).
        dropout: on the backbone features before the emission layer.
        num_examples: tagged test sentences written to the run as an artifact.
        char_features: a char-CNN over each token's characters (needs the datamodule's
            ``char_features``).
        char_filters: char-CNN output size.
        char_dropout: on the char embeddings inside the CNN (``None``: ``dropout``).
        case_features: an embedding of each raw token's casing class (needs the
            datamodule's ``case_features``).
        case_dim, case_dropout: its size and the dropout on it.
        bigram_features: an embedding of each token's bigram(s) (needs the datamodule's
            ``bigram_features``); with ``bigram_window=both`` two per token, concatenated.
        bigram_dim, bigram_dropout: the size of one bigram embedding and the dropout on it.
        feature_position: ``input`` (joined to the word embeddings; the backbone's input
            width grows by the features' width) or ``output`` (joined to the backbone's
            outputs, before ``dropout``). The task config sets ``input``; the default here
            is ``output`` only so that checkpoints written before the option existed (char-CNN
            after the backbone) are rebuilt as they were trained.
        word_dropout, word_dropout_max_count: in training only, replace each word seen
            1..max_count times in training by ``<unk>`` with this probability (Lample et al.
            2016: 0.5 on singletons), so the ``<unk>`` embedding is learnt; never at eval.
    """

    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: TagSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/f1", crf: bool = False,
                 dropout: float = 0.5, num_examples: int = 8, char_features: bool = False,
                 char_filters: int = 30, max_predictions: int = DEFAULT_MAX_ROWS,
                 char_dropout: float | None = None, case_features: bool = False,
                 case_dim: int = 8, case_dropout: float = 0.0, bigram_features: bool = False,
                 bigram_dim: int = 50, bigram_dropout: float = 0.0,
                 feature_position: str = "output", word_dropout: float = 0.0,
                 word_dropout_max_count: int = 1) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.feature_position = feature_position
        self.char_cnn: CharCNN | None = None
        self.case_embed: nn.Embedding | None = None
        self.case_dropout = nn.Dropout(_dropout_rate(case_dropout, 0.0))
        self.bigram_embed: nn.Embedding | None = None
        self.bigram_dropout = nn.Dropout(_dropout_rate(bigram_dropout, 0.0))
        self.feature_size = 0
        if char_features:
            self.char_cnn = CharCNN(self._needs(spec.char_vocab_size, "char_features"),
                                    filters=char_filters,
                                    dropout=_dropout_rate(char_dropout, dropout))
            self.feature_size += self.char_cnn.output_size
        if case_features:
            self.case_embed = nn.Embedding(self._needs(spec.case_classes, "case_features"),
                                           case_dim, padding_idx=0)
            self.feature_size += self.case_embed.embedding_dim
        if bigram_features:
            self.bigram_embed = nn.Embedding(
                self._needs(spec.bigram_vocab_size, "bigram_features"),
                bigram_dim, padding_idx=0)
            self.feature_size += self.bigram_embed.embedding_dim * spec.bigrams_per_token
        features = backbone.output_size
        if feature_position == "input":
            if self.feature_size or getattr(backbone, "extra_input_size", 0):
                backbone.set_extra_input_size(self.feature_size)
        else:
            features += self.feature_size
        self.word_dropout = WordDropout(word_dropout, word_dropout_max_count, spec)
        self.tag_names = list(spec.tag_names)
        self.char_level = spec.char_level
        self.dropout = nn.Dropout(dropout)
        self.emit = nn.Linear(features, len(self.tag_names))
        self.crf = LinearChainCRF(len(self.tag_names), self.tag_names) if crf else None
        self.num_examples = num_examples
        self.scorers = {"val": SpanScorer(), "test": SpanScorer()}
        self.test_scores = SpanScorer()  # the test counts of every rank, for the table
        # ((batch, row) in single-process order, token count, text) of test sentences with
        # entities, gathered from every rank before picking
        self.examples: list[tuple[tuple[int, int], int, str]] = []

    @staticmethod
    def _needs(size: int | None, option: str) -> int:
        """``size`` (a feature vocabulary the data gave), or why the option cannot work."""
        if not size:
            raise ConfigError(f"task.{option}=true needs {option.split('_')[0]} ids from the "
                              f"data, which this datamodule did not provide; set "
                              f"task.datamodule.{option}=true too.")
        return int(size)

    def token_features(self, batch: Mapping[str, Any]) -> Tensor | None:
        """(B, T, feature_size) of the batch's token features; None without any."""
        parts = []
        if self.char_cnn is not None:
            parts.append(self.char_cnn(self._batch_key(batch, "chars", "char")))
        if self.case_embed is not None:
            parts.append(self.case_dropout(self.case_embed(self._batch_key(batch, "case", "case"))))
        if self.bigram_embed is not None:
            ids = self._batch_key(batch, "bigrams", "bigram")
            parts.append(self.bigram_dropout(self.bigram_embed(ids).flatten(2)))
        return torch.cat(parts, dim=-1) if parts else None

    @staticmethod
    def _batch_key(batch: Mapping[str, Any], key: str, what: str) -> Tensor:
        if batch.get(key) is None:
            raise ValueError(f"this tagger was trained with {what} features; the batch needs "
                             f"{key!r} (encode it with rnnlab.data.ner.SentenceEncoder)")
        return batch[key]

    def emissions(self, batch: Mapping[str, Any], x: Tensor | None = None) -> Tensor:
        """(B, T, K) tag scores of a batch (``x``: its word ids, if they were changed, e.g.
        by word dropout)."""
        x = batch["x"] if x is None else x
        feats = self.token_features(batch)
        if self.feature_position == "input":
            out = self.backbone(x, batch["lengths"], features=feats) if feats is not None \
                else self.backbone(x, batch["lengths"])
            return self.emit(self.dropout(out.outputs))
        out = self.backbone(x, batch["lengths"]).outputs
        if feats is not None:
            out = torch.cat([out, feats], dim=-1)
        return self.emit(self.dropout(out))

    def loss(self, emissions: Tensor, y: Tensor, lengths: Tensor) -> Tensor:
        """Mean negative log-likelihood per real token."""
        mask = length_mask(lengths.to(emissions.device), emissions.shape[1])
        if self.crf is None:
            return F.cross_entropy(emissions.flatten(0, 1), y.flatten(), ignore_index=TAG_PAD)
        nll = -self.crf.log_likelihood(emissions, y, mask)
        return nll.sum() / mask.sum()

    def decode(self, emissions: Tensor, lengths: Tensor) -> list[list[int]]:
        """Best tag ids per sentence, cut to its length."""
        lengths = lengths.to(emissions.device)
        if self.crf is not None:
            return self.crf.decode(emissions, length_mask(lengths, emissions.shape[1]))
        best = emissions.argmax(-1).tolist()
        return [row[:n] for row, n in zip(best, lengths.tolist(), strict=True)]

    @torch.no_grad()
    def predict_tags(self, batch: Mapping[str, Any]) -> list[list[str]]:
        """Tag names for a batch from :class:`rnnlab.data.ner.SentenceEncoder` (used by
        ``rnnlab-tag`` and the served model)."""
        em = self.emissions(batch)
        return [[self.tag_names[i] for i in row] for row in self.decode(em, batch["lengths"])]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        em = self.emissions(batch, self.word_dropout(batch["x"]))
        loss = self.loss(em, batch["y"], batch["lengths"])
        return self.log_train_loss(loss, len(batch["lengths"]))

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        em = self.emissions(batch)
        loss = self.loss(em, batch["y"], batch["lengths"])
        pred = [[self.tag_names[i] for i in row] for row in self.decode(em, batch["lengths"])]
        gold = [[self.tag_names[i] for i in row[:n]]
                for row, n in zip(batch["y"].tolist(), batch["lengths"].tolist(), strict=True)]
        self.scorers[split].update(gold, pred)
        if split == "test" and self.num_examples > 0:
            tokens = batch.get("tokens") or [[str(i) for i in row] for row in batch["x"].tolist()]
            joiner = "" if self.char_level else " "
            where = self.eval_position(batch_idx)
            self.examples.extend(((where, i), len(toks), format_tagged(toks, p, g, joiner))
                                 for i, (toks, p, g) in enumerate(zip(tokens, pred, gold,
                                                                      strict=False))
                                 if any(t != "O" for t in g))
        return {"loss": (loss, len(batch["lengths"])), "gold": gold, "pred": pred}

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per sentence: its text, gold and predicted tags, entity counts."""
        inputs = self.predictions.inputs(self, batch, ids, joiner="" if self.char_level else " ")
        return [{"input": inputs[i], "gold": " ".join(g), "prediction": " ".join(p),
                 **sentence_counts(g, p)}
                for i, (g, p) in enumerate(zip(out["gold"], out["pred"], strict=True))]

    def _pick_examples(self) -> list[str]:
        """Evenly spaced sentences with entities, preferring ones of 8+ tokens (test batches
        come sorted by length, so the first ones alone would be the shortest). Every
        rank's sentences are gathered and put in single-process order first, so N
        processes write the same examples as one."""
        examples = sorted(e for part in gather_objects(self.examples) for e in part)
        pool = [text for _, n, text in examples if n >= 8] or [text for _, _, text in examples]
        if len(pool) <= self.num_examples:
            return pool
        step = len(pool) / self.num_examples
        return [pool[int(i * step)] for i in range(self.num_examples)]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """Entity counts merged over ranks (F1 is not a mean of per-rank F1s), then the
        scores (per type on test only) and the example-weighted loss."""
        scorer = self.scorers[split].reduced()
        self.scorers[split].reset()
        if split == "test":
            self.test_scores = scorer
        scores = scorer.compute()
        if split == "val":
            scores = {k: v for k, v in scores.items() if not k.startswith("f1_")}
        return {**scores, "loss": self.mean(split, "loss")}

    def on_validation_epoch_start(self) -> None:
        self.scorers["val"].reset()

    def on_test_epoch_start(self) -> None:
        self.scorers["test"].reset()
        self.examples = []

    def on_test_epoch_end(self) -> None:
        super().on_test_epoch_end()  # collectives first, on every rank
        examples = self._pick_examples()
        head = "crf" if self.crf is not None else "softmax"
        log_text(self.trainer, f"entity-level scores on test ({head} head)\n" +
                 self.test_scores.table(), "ner/test_per_type.txt")
        log_text(self.trainer, "\n\n".join(examples) + "\n", "ner/test_examples.txt")
        self.examples = []
