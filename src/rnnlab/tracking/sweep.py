"""Sweep identity for runs launched by a Hydra multirun (grouping under a parent run)."""

from __future__ import annotations

import os

SWEEP_ID_ENV = "RNNLAB_SWEEP_ID"
PARENT_RUN_ENV = "RNNLAB_PARENT_RUN_ID"


def sweep_tags() -> dict[str, str]:
    """Tags that link a job to its sweep; empty for a single run."""
    tags: dict[str, str] = {}
    if os.environ.get(SWEEP_ID_ENV):
        tags["sweep_id"] = os.environ[SWEEP_ID_ENV]
    if os.environ.get(PARENT_RUN_ENV):
        tags["mlflow.parentRunId"] = os.environ[PARENT_RUN_ENV]
    return tags
