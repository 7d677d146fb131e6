"""Corpora, readers, vocabularies and batching: one datamodule per task family. Nothing
here imports a task, a tracker or a loader above it; everything above reads data here."""
