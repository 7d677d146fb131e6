"""Generating a name from its category (1->N): loss per character and category accuracy.

The model (:class:`~rnnlab.models.conditioned.ConditionedGenerator`) predicts each next
character of ``<s> name`` and then ``</s>``, given the category through the initial state
(``task.condition=init``), every step's input (``every_step``), both, or not at all
(``none``, the unconditioned floor). ``val/loss`` and ``test/loss`` are nats per predicted
symbol (every character and the end of the name) over all held-out names, summed and
divided once; ``bpc`` and ``ppl`` sit beside them.

Does the category reach the samples? At test time a classifier that knows nothing of the
model (character 1-3-gram TF-IDF + logistic regression, trained on the real training
names) reads ``task.module.eval_samples`` names sampled per category at temperature
``eval_temperature`` with a fixed seed:

* ``test/category_acc``: how often it names the category the sample was drawn for;
* ``test/category_acc_real``: the same classifier on the real test names (the ceiling);
* ``test/category_chance``: 1/K.

``test/category_gain`` measures the same from the other side: the test names scored as if
they belonged to another category (each to a different one, fixed), minus ``test/loss``,
in nats per character; 0 for a model that ignores the category.

The samples are balanced over categories, so both accuracies are balanced (the mean of
the per-category recalls) and the classifier weights categories equally; a large
category cannot win by size. ``test/novel_share`` is the share of samples that are not
training names: a model that only recalls training names would fool the classifier,
whose n-grams come from those names.

Every validation logs a few samples per category at two temperatures
(``samples/step_<n>.txt``); the test logs the samples' confusion matrix.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.core.errors import UserError
from rnnlab.data.spec import NamesSpec
from rnnlab.metrics.distributed import Ratio
from rnnlab.models.conditioned import ConditionedGenerator
from rnnlab.tasks.base import OptimizerFactory
from rnnlab.tasks.language_model import NextSymbolTask, check_sampling
from rnnlab.tracking.artifacts import confusion_matrix_figure, log_figure, log_text
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

# how the test loss follows from predictions/test.parquet (rnnlab.report.stats): summed nats and
# predicted symbols (characters and the end of the name) of each test name
PREDICTION_METRICS = {"test/loss": {"kind": "ratio", "num": "nats", "den": "symbols"}}


def fit_category_classifier(names: Sequence[str], categories: Sequence[str],
                            ngrams: Sequence[int] = (1, 3), c: float = 1.0) -> Any:
    """Character n-gram TF-IDF + logistic regression (balanced class weights), the judge of
    whether samples read as their category. Deterministic for the same names."""
    # scikit-learn: only the names classifier
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=tuple(ngrams), lowercase=False,
                                 sublinear_tf=True)
    model = LogisticRegression(C=c, max_iter=2000, class_weight="balanced")
    return make_pipeline(vectorizer, model).fit(list(names), list(categories))


def balanced_accuracy(truth: Sequence[str], predicted: Sequence[str]) -> float:
    """Mean over categories of the share of their items predicted right."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    return float(np.mean([np.mean(predicted[truth == c] == c) for c in np.unique(truth)]))


class NamesTask(NextSymbolTask):
    """Category-conditioned character generation (``task=names``).

    Args:
        condition: ``init``, ``every_step``, ``both`` or ``none`` (``task.condition``).
        char_dim, category_dim: embedding sizes (``task.char_dim``, ``task.category_dim``).
        dropout: on the embeddings and the backbone outputs.
        sample_count, sample_temperatures, sample_seed: the names logged per category at
            every validation (``sample_count=0``: none).
        eval_samples, eval_temperature, eval_seed: the names sampled per category for
            ``test/category_acc``.
        classifier_ngrams, classifier_c: the judge's character n-gram range and inverse
            regularisation.
    """

    MEANS = MappingProxyType({"loss": Ratio, "loss_other_category": Ratio})
    prediction_metrics = PREDICTION_METRICS

    def __init__(self, backbone: nn.Module, spec: NamesSpec, optimizer: OptimizerFactory,
                 scheduler: Any = None, monitor: str = "val/loss", condition: str = "init",
                 char_dim: int = 64, category_dim: int = 32, dropout: float = 0.0,
                 sample_count: int = 5, sample_temperatures: Sequence[float] = (0.5, 1.0),
                 sample_seed: int = 1, eval_samples: int = 100, eval_temperature: float = 1.0,
                 eval_seed: int = 1, classifier_ngrams: Sequence[int] = (1, 3),
                 classifier_c: float = 1.0, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(backbone, optimizer, scheduler, monitor, max_predictions)
        self.itos = list(spec.itos)
        self.categories = list(spec.categories)
        self.aliases = dict(spec.aliases)  # other names of a category: fr_FR
        self.max_len = int(spec.max_len)
        self.unk_id = spec.unk_id
        self.model = ConditionedGenerator(
            backbone, spec.num_chars, len(self.categories), condition, char_dim,
            category_dim, bos_id=spec.bos_id, eos_id=spec.eos_id, padding_idx=spec.padding_idx,
            banned=[i for i in (spec.padding_idx, self.unk_id, spec.bos_id) if i is not None],
            dropout=dropout)
        self.pad_id = spec.padding_idx
        self.condition = condition
        # counts, temperatures and n-gram range are checked by the config schema
        self.sample_temperatures = [float(t) for t in sample_temperatures]
        self.sample_count, self.sample_seed = sample_count, sample_seed
        self.eval_samples, self.eval_temperature = eval_samples, float(eval_temperature)
        self.eval_seed = eval_seed
        self.classifier_ngrams, self.classifier_c = list(classifier_ngrams), float(classifier_c)

    # ---- loss --------------------------------------------------------------------------
    def forward(self, x: Tensor, category: Tensor, lengths: Tensor | None = None) -> Tensor:
        return self.model(x, category, lengths)

    def _nats(self, batch: dict) -> tuple[Tensor, int, Tensor]:
        """Summed cross-entropy over the batch's real symbols, their count and the logits."""
        logits = self(batch["x"], batch["category"], batch["lengths"])
        total = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["y"].reshape(-1),
                                ignore_index=self.pad_id, reduction="sum")
        return total, int(batch["lengths"].sum()), logits

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        total, n, _ = self._nats(batch)
        return self.log_train_loss(total / n, n)

    def evaluate(self, batch: dict, batch_idx: int, split: str) -> dict[str, Any]:
        """The batch's nats and, on test, those of its names under another category than
        their own: how much the model leans on the category (``test/category_gain``)."""
        total, n, logits = self._nats(batch)
        out: dict[str, Any] = {"loss": (total, n), "logits": logits}
        if split == "test" and self.model.category_embedding is not None:
            k = len(self.categories)
            shift = 1 + torch.arange(len(batch["category"]), device=self.device) % (k - 1)
            other = {**batch, "category": (batch["category"] + shift) % k}
            out["loss_other_category"] = self._nats(other)[:2]
        return out

    def prediction_rows(self, batch: dict, out: dict[str, Any],
                        ids: list[int] | None) -> list[dict[str, Any]]:
        """One row per test name: its category (the input), the name, the model's most
        likely next symbol at each step, and its summed nats."""
        logits, y = out["logits"].float(), batch["y"]
        nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1),
                               ignore_index=self.pad_id, reduction="none").view(y.shape).sum(1)
        best = logits.argmax(-1).tolist()
        return [{"input": self.categories[cat], "gold": self.decode(y[i, : n - 1].tolist()),
                 "prediction": self.decode(best[i][: n - 1]),
                 "score": float(nats[i]) / max(n, 1), "nats": float(nats[i]), "symbols": n}
                for i, (n, cat) in enumerate(zip(batch["lengths"].tolist(),
                                                 batch["category"].tolist(), strict=True))]

    def epoch_values(self, split: str) -> dict[str, Any]:
        """Nats per symbol; on test also the other-category loss and the category metrics."""
        values = super().epoch_values(split)
        if split == "test" and self.model.category_embedding is not None:
            other = self.mean(split, "loss_other_category")
            values.update(loss_other_category=other, category_gain=other - values["loss"])
        if split == "test":
            values.update(self._category_metrics())
        return values

    # ---- generation --------------------------------------------------------------------
    def category_index(self, name: str) -> int:
        """A category by its label (any case) or its locale code; else a one-line refusal."""
        for i, known in enumerate(self.categories):
            if name == known or name.lower() == known.lower():
                return i
        if self.aliases.get(name) in self.categories:
            return self.categories.index(self.aliases[name])
        raise UserError(f"unknown category {name!r}; this model knows "
                        f"{', '.join(self.categories)}.")

    def encode_prefix(self, prefix: str) -> list[int]:
        stoi = {c: i for i, c in enumerate(self.itos)}
        unknown = sorted({c for c in prefix if c not in stoi})
        if unknown:
            raise UserError(f"the prefix {prefix!r} has characters never seen in training "
                            f"({''.join(unknown)!r}); use letters of the training names.")
        return [stoi[c] for c in prefix]

    def sample_ids(self, categories: Sequence[int], temperature: float = 1.0,
                   seed: int | None = None, prefix: Sequence[int] = (),
                   max_len: int | None = None) -> list[list[int]]:
        gen = torch.Generator()
        if seed is not None:
            gen.manual_seed(seed)
        return self.model.sample(torch.tensor(list(categories), dtype=torch.long),
                                 max_len or self.max_len, temperature, gen, prefix)

    def generate(self, category: str, n: int = 10, temperature: float = 1.0, seed: int = 1,
                 prefix: str = "", max_len: int | None = None) -> list[str]:
        """``n`` names for ``category``; the same seed gives the same names."""
        check_sampling(temperature)
        if n < 1:
            raise UserError(f"--n must be at least 1, got {n}.")
        index = self.category_index(category)
        ids = self.sample_ids([index] * n, temperature, seed, self.encode_prefix(prefix), max_len)
        return [self.decode(row) for row in ids]

    # ---- artifacts and the category metrics --------------------------------------------
    def log_samples(self) -> None:
        if self.sample_count <= 0:
            return
        parts = [f"step {self.global_step}, epoch {self.current_epoch}, "
                 f"condition {self.condition}\n"]
        for t in self.sample_temperatures:
            parts.append(f"=== temperature {t}")
            wanted = [i for i in range(len(self.categories)) for _ in range(self.sample_count)]
            rows = self.sample_ids(wanted, t, seed=self.sample_seed)
            for i, cat in enumerate(self.categories):
                names = rows[i * self.sample_count: (i + 1) * self.sample_count]
                parts.append(f"{cat}: {', '.join(self.decode(r) for r in names)}")
            parts.append("")
        log_text(self.trainer, "\n".join(parts), f"samples/step_{self.global_step:07d}.txt")

    def _category_metrics(self) -> dict[str, float]:
        """Every rank computes the same figures (same names, seeds and weights); the
        samples' confusion matrix goes to the run as a plot."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.eval_samples <= 0 or not hasattr(datamodule, "examples"):
            return {}
        train, test = datamodule.examples("train"), datamodule.examples("test")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # sklearn convergence chatter on tiny data
            judge = fit_category_classifier([n for _, n in train], [c for c, _ in train],
                                            self.classifier_ngrams, self.classifier_c)
        real = balanced_accuracy([c for c, _ in test], judge.predict([n for _, n in test]))
        wanted = [i for i in range(len(self.categories)) for _ in range(self.eval_samples)]
        names = [self.decode(r) for r in
                 self.sample_ids(wanted, self.eval_temperature, seed=self.eval_seed)]
        truth = [self.categories[i] for i in wanted]
        predicted = list(judge.predict(names))
        seen = {n for _, n in train}
        index = {c: i for i, c in enumerate(self.categories)}
        matrix = np.zeros((len(self.categories),) * 2, dtype=int)
        for t, p in zip(truth, predicted, strict=True):
            if p in index:
                matrix[index[t], index[p]] += 1
        agreement = balanced_accuracy(truth, predicted)
        # what the figure is: a classifier's reading of generated names, not a test score
        title = (f"generated names, as a name classifier reads them\n"
                 f"balanced agreement {agreement:.3f} (real test names {real:.3f}, "
                 f"chance {1.0 / len(self.categories):.3f})")
        log_figure(self.trainer, confusion_matrix_figure(
            matrix, self.categories, title=title, xlabel="category the classifier reads",
            ylabel="category asked for"), "samples/category_confusion.png")
        return {"category_acc": agreement, "category_acc_real": real,
                "category_chance": 1.0 / len(self.categories),
                "novel_share": float(np.mean([n not in seen for n in names]))}
