"""Non-neural baselines: ``model=`` choices that fit without a Trainer.

A baseline declares the task families it fits, reads the same prepared split as the
networks through the datamodule, and returns metrics under the task's own names
(``val/acc``, ``test/f1``...), so MLflow and ``compare.py`` put it beside the networks.
"""

from __future__ import annotations

from typing import Any, ClassVar


class Baseline:
    """Subclasses set ``families`` and implement :meth:`fit_evaluate`."""

    families: ClassVar[tuple[str, ...]] = ()

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        """Fit on train (choosing settings on val), score val and test.

        ``run`` is a trainer-like object for :mod:`rnnlab.tracking.artifacts`, so a
        baseline can attach plots exactly as the networks do."""
        raise NotImplementedError

    def num_parameters(self) -> int:
        return 0
