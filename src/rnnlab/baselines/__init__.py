"""Non-neural baselines logged like any run."""

from rnnlab.baselines.base import Baseline

__all__ = ["Baseline"]
