"""rnnlab: an experiment lab for recurrent networks.

Hydra composes a task (data, head, loss, metrics) with a model (a recurrent backbone,
a Transformer, or a non-neural baseline) and a trainer; every run lands in MLflow.
"""

__version__ = "0.1.0"
