"""Backbones and heads. Plain PyTorch: nothing here knows about Lightning or data files."""

from rnnlab.models.encoder import CELLS, Backbone, EncoderOutput, RecurrentEncoder
from rnnlab.models.heads import ClassifierHead, pool
from rnnlab.models.transformer import TransformerEncoder

__all__ = ["CELLS", "Backbone", "ClassifierHead", "EncoderOutput", "RecurrentEncoder",
           "TransformerEncoder", "pool"]
