"""ROCKET: random convolutional kernels + a ridge classifier (Dempster et al. 2020).

ROCKET matched the best time-series classifiers of its day on the UCR archive at a
fraction of their cost, so it is the second yardstick (after 1NN-DTW) a recurrent model
on these sets must face. Each of ``num_kernels`` kernels is drawn once for a seed:
length from {7, 9, 11}; weights normal, mean-centred; bias uniform(-1, 1); dilation
``floor(2 ** uniform(0, log2((T - 1) / (length - 1))))`` for the longest training
series length T; zero padding ``(length - 1) * dilation // 2`` on both sides or none
(a fair coin); on multivariate series a random subset of channels (the multivariate
form of sktime's ``MiniRocketMultivariate``/``Rocket``: ``2 ** uniform(0, log2(min(C,
length) + 1))`` channels, each with its own weights). Every kernel gives two features of
each series: the proportion of positive values (ppv) and the maximum of its output. A
ridge classifier with the regularisation chosen by efficient leave-one-out
cross-validation (scikit-learn's ``RidgeClassifierCV``, alphas 10^-3..10^3, on
standardised features) reads them. Each series is z-normalised first, as in the paper.
Series of different lengths are zero-padded and each kernel's output is read only over
the positions a series of its own length has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeClassifierCV
from sklearn.preprocessing import StandardScaler

from rnnlab.baselines.sequence import SequenceBaseline, Series, stack_padded
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS

LENGTHS = (7, 9, 11)


@dataclass
class Kernels:
    """``n`` random kernels; kernel ``k``'s weights are ``weights[k, :channels[k].size,
    :lengths[k]]`` over the input channels ``channels[k]``."""

    lengths: np.ndarray
    weights: np.ndarray
    biases: np.ndarray
    dilations: np.ndarray
    paddings: np.ndarray
    channels: list[np.ndarray]


def make_kernels(num_kernels: int, input_length: int, num_channels: int, seed: int
                 ) -> Kernels:
    """The kernels for series of ``input_length`` steps and ``num_channels`` channels: the
    same for the same arguments, on any machine (numpy's PCG64 generator)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice(LENGTHS, num_kernels)
    weights = np.zeros((num_kernels, num_channels, max(LENGTHS)))
    biases = rng.uniform(-1.0, 1.0, num_kernels)
    dilations = np.zeros(num_kernels, dtype=np.int64)
    paddings = np.zeros(num_kernels, dtype=np.int64)
    channels = []
    for k, length in enumerate(lengths):
        limit = np.log2(min(num_channels, length) + 1)
        chosen = np.sort(rng.choice(num_channels, int(2 ** rng.uniform(0, limit)),
                                    replace=False))
        w = rng.normal(0.0, 1.0, (chosen.size, length))
        weights[k, :chosen.size, :length] = w - w.mean(axis=1, keepdims=True)
        top = np.log2(max(input_length - 1, 1) / (length - 1))
        dilations[k] = int(2 ** rng.uniform(0, max(top, 0.0)))
        paddings[k] = (length - 1) * dilations[k] // 2 if rng.integers(2) else 0
        channels.append(chosen)
    return Kernels(lengths, weights, biases, dilations, paddings, channels)


def transform(series: Series, kernels: Kernels) -> np.ndarray:
    """``(n, 2 * num_kernels)`` features: ppv and max of each kernel's output, per series."""
    x, lengths = stack_padded(series)
    n, _, t = x.shape
    pad = int(kernels.paddings.max())
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad)))
    out = np.zeros((n, 2 * len(kernels.lengths)))
    for k, length in enumerate(kernels.lengths):
        d, p, chosen = int(kernels.dilations[k]), int(kernels.paddings[k]), kernels.channels[k]
        span = (length - 1) * d
        width = t + 2 * p - span  # output positions of the longest series
        conv = np.full((n, max(width, 0)), kernels.biases[k])
        if width > 0:
            xs = xp[:, chosen, :]
            for j in range(length):
                start = pad - p + j * d
                conv += np.einsum("c,nct->nt", kernels.weights[k, :chosen.size, j],
                                  xs[:, :, start:start + width])
        valid = np.clip(lengths + 2 * p - span, 0, None)  # each series' own output length
        mask = np.arange(max(width, 0))[None, :] < valid[:, None]
        count = np.maximum(valid, 1)
        out[:, 2 * k] = ((conv > 0) & mask).sum(1) / count
        out[:, 2 * k + 1] = np.where(valid > 0,
                                     np.where(mask, conv, -np.inf).max(1, initial=-np.inf), 0.0)
    return out


def znormalise(series: Series) -> Series:
    """Each series, each channel, to mean 0 and deviation 1 over its own steps."""
    out = []
    for s in series:
        std = s.std(axis=0, keepdims=True)
        out.append((s - s.mean(axis=0, keepdims=True)) / np.where(std > 1e-8, std, 1.0))
    return out


class Rocket(SequenceBaseline):
    """Random convolutional kernels + ``RidgeClassifierCV``, deterministic for ``seed``.

    Args:
        num_kernels: 10,000 in the paper (20,000 features).
        seed: draws the kernels.
        normalise: z-normalise each series first (the paper's setting).
        alphas: the ridge penalties searched by leave-one-out cross-validation.
        refit: score test with a fit on train + val (see the sequence module).
    """

    def __init__(self, num_kernels: int = 10000, seed: int = 0, normalise: bool = True,
                 alphas: tuple = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1000.0),
                 refit: bool = True, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(refit, max_predictions)
        self.num_kernels, self.seed, self.normalise = num_kernels, seed, normalise
        self.alphas = [float(a) for a in alphas]
        self.kernels: Kernels | None = None
        self.linear: dict[str, Any] = {}
        self.shape = (0, 0)  # the longest training series' length, channels: the kernels'

    def features(self, series: Series) -> np.ndarray:
        assert self.kernels is not None, "fit first"
        return transform(znormalise(series) if self.normalise else series, self.kernels)

    def fit(self, series: Series, labels: np.ndarray) -> Rocket:
        self.shape = (max(len(s) for s in series), int(series[0].shape[1]))
        self.kernels = make_kernels(self.num_kernels, *self.shape, self.seed)
        scaler, ridge = StandardScaler(), RidgeClassifierCV(alphas=np.asarray(self.alphas))
        ridge.fit(scaler.fit_transform(self.features(series)), labels)
        # kept as plain arrays: predicting is one affine map, and a served model reads them
        self.linear = {"mean": scaler.mean_, "scale": scaler.scale_,
                       "coef": np.atleast_2d(ridge.coef_), "intercept": np.ravel(ridge.intercept_),
                       "classes": ridge.classes_, "alpha": float(ridge.alpha_)}
        return self

    def predict_scores(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        lin = self.linear
        scores = ((self.features(series) - lin["mean"]) / lin["scale"]) @ lin["coef"].T \
            + lin["intercept"]
        if scores.shape[1] == 1:  # two classes: one signed margin, the second class positive
            scores = np.hstack([-scores, scores])
        pred = lin["classes"][scores.argmax(1)]
        # ridge margins are no probabilities; a softmax of them only fills the loss column
        proba = np.exp(scores - scores.max(1, keepdims=True))
        proba = proba / proba.sum(1, keepdims=True)
        full = np.zeros((len(series), max(self.num_classes, int(lin["classes"].max()) + 1)))
        full[:, lin["classes"]] = proba
        return pred, full

    def state(self) -> dict[str, Any]:
        """The kernels' shape (they are drawn again from the seed) and the fitted scaler and
        ridge classifier as arrays."""
        return {"shape": list(self.shape), "num_classes": self.num_classes,
                **{k: np.asarray(v).tolist() for k, v in self.linear.items()}}

    def load_state(self, state: dict[str, Any]) -> Rocket:
        self.shape, self.num_classes = tuple(state["shape"]), int(state["num_classes"])
        self.kernels = make_kernels(self.num_kernels, *self.shape, self.seed)
        self.linear = {k: np.asarray(state[k]) for k in ("mean", "scale", "coef", "intercept",
                                                         "classes")}
        self.linear["alpha"] = float(state["alpha"])
        return self

    def extra_metrics(self) -> dict[str, float]:
        return {"alpha": self.linear["alpha"]}

    def num_parameters(self) -> int:
        """Ridge weights (the kernels are drawn from the seed, not learned)."""
        return int(self.linear["coef"].size + self.linear["intercept"].size) if self.linear \
            else 0
