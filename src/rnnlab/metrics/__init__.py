"""Metric functions that torchmetrics does not cover (entity spans, edit distances...)."""
