"""Inference commands that load a checkpoint written by ``train.py``."""
