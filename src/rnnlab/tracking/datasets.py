"""Each run's train / val / test splits as MLflow dataset inputs.

MLflow's Datasets column and a run's Inputs then say what the run was trained and scored
on: the corpus or the user's file by name, the data fingerprint as the digest (runs on the
same prepared split share it, with the split after a colon), the pinned distribution with its sha256 or the file's path
as the source, and the split as the context. Only metadata is logged, never the data: the
dataset drawer's *schema* is what the model reads from the split (the fields of a
collated batch: token ids, lengths, labels... with their types) and its *profile* the
split's size and example lengths.
"""

from __future__ import annotations

import json
import random
import statistics
import time
import warnings
from typing import Any

import torch

SPLITS = ("train", "val", "test")


def dataset_inputs(dm: Any, task: str) -> list:
    """One ``DatasetInput`` per split the datamodule holds."""
    # mlflow is heavy (about a second to import): loaded only when a run logs its inputs
    from mlflow.data.code_dataset_source import CodeDatasetSource
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.http_dataset_source import HTTPDatasetSource
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Dataset, DatasetInput, InputTag

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
        dataset = MetaDataset(source, name=f"{task}/{name}", digest=digest,
                              schema=split_schema(dm, split))
        fields = dataset.to_dict()
        entity = Dataset(name=fields["name"], digest=fields["digest"],
                         source_type=fields["source_type"], source=fields["source"],
                         schema=fields.get("schema"),
                         profile=json.dumps(split_profile(dm, split)))
        out.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", split)]))
    return out


def split_profile(dm: Any, split: str) -> dict[str, Any]:
    """The split's size, and its examples' lengths where the datamodule knows them
    (tokens, characters or steps): short, since the drawer shows the first 80 characters."""
    profile: dict[str, Any] = {"num_rows": len(dm.datasets[split])}
    try:
        lengths = [int(n) for n in dm.lengths(split)]
    except Exception:  # a layout without per-example lengths (streams, generated batches)
        return profile
    if lengths:
        profile.update(length_min=min(lengths), length_mean=round(statistics.fmean(lengths), 1),
                       length_max=max(lengths))
    return profile


def split_schema(dm: Any, split: str) -> Any:
    """The fields of a batch collated from the split's first examples, typed as MLflow
    columns (a padded sequence is an array); None where the split's examples are not
    read one by one (character streams, generated problems)."""
    # mlflow: about a second to import, MLflow runs only
    from mlflow.types.schema import Array, ColSpec, DataType, Schema  # heavy: see above

    try:
        dataset = dm.datasets[split]
        batch = dm.collate([dataset[i] for i in range(min(2, len(dataset)))])
    except Exception:
        return None
    if not isinstance(batch, dict):
        return None
    columns = []
    for key, value in batch.items():
        if isinstance(value, torch.Tensor) and value.dim() >= 1:
            kind: Any = (DataType.boolean if value.dtype == torch.bool else
                         DataType.double if value.is_floating_point() else DataType.long)
            for _ in range(value.dim() - 1):
                kind = Array(kind)
        elif isinstance(value, list) and value and isinstance(value[0], list):
            kind = Array(DataType.string)
        elif isinstance(value, list) and value and isinstance(value[0], str):
            kind = DataType.string
        else:
            continue
        columns.append(ColSpec(kind, str(key)))
    return Schema(columns) if columns else None


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
