"""Each run's train / val / test splits as MLflow dataset inputs.

MLflow's Datasets column and a run's Inputs then say what the run was trained and scored
on: the corpus or the user's file by name, the data fingerprint as the digest (runs on the
same prepared split share it, with the split after a colon), the pinned distribution with its sha256 or the file's path
as the source, and the split as the context. Only metadata is logged, never the data.
"""

from __future__ import annotations

import random
import time
import warnings
from typing import Any

SPLITS = ("train", "val", "test")


def dataset_inputs(dm: Any, task: str) -> list:
    """One ``DatasetInput`` per split the datamodule holds."""
    # mlflow is heavy (about a second to import): loaded only when a run logs its inputs
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    out = []
    for split in SPLITS:
        if split not in (getattr(dm, "datasets", None) or {}):
            continue
        name, uri = dm.data_source(split)
        if uri == "generated":
            source = CodeDatasetSource({"generator": f"{type(dm).__module__}.{type(dm).__name__}"})
        elif uri.startswith("http"):
            source = HTTPDatasetSource(uri)
        else:
            with warnings.catch_warnings():  # MLflow registers the local source class twice
                warnings.simplefilter("ignore")
                source = resolve_dataset_source(uri)
        # MLflow keeps one input per (name, digest) in a run, whatever its context, so the
        # split goes into the digest beside the fingerprint: three inputs, one per split
        digest = f"{dm.fingerprint[:28]}:{split}" if dm.fingerprint else None
        dataset = MetaDataset(source, name=f"{task}/{name}", digest=digest)
        out.append(DatasetInput(dataset._to_mlflow_entity(),
                                tags=[InputTag("mlflow.data.context", split)]))
    return out


def log_datasets(client: Any, run_id: str, dm: Any, task: str, attempts: int = 5) -> None:
    """Log the inputs; parallel jobs that log the same new dataset at once race to insert
    it (a unique-key violation on a database store), and a retry then finds it."""
    inputs = dataset_inputs(dm, task)
    for attempt in range(attempts):
        try:
            if inputs:
                client.log_inputs(run_id, datasets=inputs)
            return
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1) + random.random() * 0.3)
