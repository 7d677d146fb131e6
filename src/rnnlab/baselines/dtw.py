"""1-nearest-neighbour with dynamic time warping: the sequence-classification yardstick.

For two decades 1NN-DTW was the baseline every new time-series classifier had to beat
on the UCR/UEA archive (Bagnall et al. 2017); a recurrent model on these sets is worth
its cost only if it is not worse. The distances come from ``dtaidistance`` (its C
library): the dependent multivariate DTW (DTW_D), whose cost between two frames is their
squared Euclidean distance, ``sqrt`` of the cheapest warping path's sum, over series of
any lengths. ``window`` limits the warping (a Sakoe-Chiba band, a fraction of the longer
series); ``window_grid`` chooses it on the validation split, never on test.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from dtaidistance import dtw_ndim

from rnnlab.baselines.sequence import SequenceBaseline, Series, split_series
from rnnlab.tracking.predictions import DEFAULT_MAX_ROWS


def dtw_distances(queries: Series, references: Series, window: float | None = None
                  ) -> np.ndarray:
    """``(len(queries), len(references))`` DTW distances (``sqrt`` of the summed squared
    frame distances along the best path). Every series is ``time x channels``.

    ``window`` (None: no limit) is the band's half-width as a fraction of the longest
    series; as in dtaidistance, the band widens by the two series' length difference,
    so that their last steps can always meet."""
    series = [np.ascontiguousarray(s, dtype=np.float64) for s in [*queries, *references]]
    n = len(queries)
    kwargs: dict[str, Any] = {}
    if window is not None:
        longest = max(len(s) for s in series)
        kwargs["window"] = max(1, int(np.ceil(window * longest)))
    full = dtw_ndim.distance_matrix_fast(series, block=((0, n), (n, len(series))),
                                         compact=False, **kwargs)
    return np.asarray(full[:n, n:], dtype=np.float64)


class DTW1NN(SequenceBaseline):
    """Each series gets the class of its nearest training series under DTW.

    Args:
        window: warping band as a fraction of the longer series (null: unconstrained,
            the archive's "DTW (w=100)" column).
        window_grid: candidate windows (null in a list for none) chosen on val accuracy.
        refit: score test with train + val as the references (see the sequence module).
    """

    def __init__(self, window: float | None = None, window_grid: Sequence | None = None,
                 refit: bool = True, max_predictions: int = DEFAULT_MAX_ROWS) -> None:
        super().__init__(refit, max_predictions)
        self.window = window
        self.window_grid = list(window_grid) if window_grid else None
        self.references: Series = []
        self.labels = np.zeros(0, dtype=np.int64)

    def fit(self, series: Series, labels: np.ndarray) -> DTW1NN:
        self.references, self.labels = list(series), np.asarray(labels)
        return self

    def predict_scores(self, series: Series) -> tuple[np.ndarray, np.ndarray]:
        nearest = dtw_distances(series, self.references, self.window).argmin(1)
        pred = self.labels[nearest]
        return pred, np.eye(max(self.num_classes, int(pred.max()) + 1))[pred]  # a 1-NN vote: all mass on one class

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        if self.window_grid:
            self.window = self._choose_window(datamodule)
        return super().fit_evaluate(datamodule, run)

    def _choose_window(self, datamodule: Any) -> float | None:
        (x_tr, y_tr), (x_va, y_va) = (split_series(datamodule, s) for s in ("train", "val"))
        best = None
        for window in self.window_grid:  # in the given order: ties keep the first
            acc = float((y_tr[dtw_distances(x_va, x_tr, window).argmin(1)] == y_va).mean())
            if best is None or acc > best[0]:
                best = (acc, window)
        return best[1]

    def state(self) -> dict[str, Any]:
        return {"window": self.window, "num_classes": self.num_classes,
                "labels": self.labels.tolist(),
                "references": [s.round(6).tolist() for s in self.references]}

    def load_state(self, state: dict[str, Any]) -> DTW1NN:
        self.window, self.num_classes = state["window"], int(state["num_classes"])
        self.fit([np.asarray(s, dtype=np.float64) for s in state["references"]],
                 np.asarray(state["labels"], dtype=np.int64))
        return self

    def extra_metrics(self) -> dict[str, float]:
        return {"window": -1.0 if self.window is None else float(self.window)}

    def num_parameters(self) -> int:
        """The stored reference values (a 1-NN keeps its whole training set)."""
        return int(sum(s.size for s in self.references))
