"""From a checkpoint or a ``models:/`` URI to a ready model, and what a ready model does.

This is the one loading layer: the console scripts (:mod:`rnnlab.cli`) and the served
MLflow model (:mod:`rnnlab.serving`) both call these functions and never each other.

* :func:`load_checkpoint`: a ``.ckpt`` path or a registered/logged MLflow model
  (``models:/rnnlab-ner@champion``) -> :class:`~rnnlab.build.LoadedModel`;
* :mod:`rnnlab.inference.tagging`: raw text -> IOB2 tags and entity spans;
* :mod:`rnnlab.inference.convert`: words or sentences -> pronunciations or translations;
* :mod:`rnnlab.inference.sampling`: text continuing a prompt, names of a category.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rnnlab.build import LoadedModel, load_module
from rnnlab.core.errors import UserError
from rnnlab.core.paths import project_root
from rnnlab.tracking.mlflow import quiet_mlflow, redact, resolve_tracking_uri, using_tracking_uri

CHECKPOINT_FILE = "model.ckpt"  # the checkpoint's name inside a logged model's artifacts


def is_model_uri(path: Any) -> bool:
    return isinstance(path, str) and path.startswith("models:/")


@contextmanager
def model_checkpoint(uri: str, tracking_uri: str | None = None) -> Iterator[Path]:
    """The checkpoint inside the model ``uri`` (``models:/rnnlab-ner@champion``,
    ``models:/rnnlab-ner/3``, ``models:/m-<id>``), downloaded from the tracking store
    (``MLFLOW_TRACKING_URI`` or the project's ``mlflow.db``) into a temporary folder that
    is removed afterwards. It holds the weights and metadata of the run's best checkpoint."""
    from mlflow.artifacts import download_artifacts  # heavy: only when a URI is given

    store = resolve_tracking_uri(tracking_uri, project_root())
    with tempfile.TemporaryDirectory(prefix="rnnlab-model-") as tmp:
        try:
            with using_tracking_uri(store), quiet_mlflow():
                local = Path(download_artifacts(artifact_uri=uri, dst_path=tmp))
        except Exception as err:
            reason = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise UserError(f"{uri} cannot be read from the MLflow store {redact(store)} "
                            f"({redact(reason)}); check the name and alias (python compare.py "
                            f"--register creates rnnlab-<task>@champion) or set "
                            f"MLFLOW_TRACKING_URI to the store that has it.") from None
        ckpt = local / "artifacts" / CHECKPOINT_FILE
        if not ckpt.is_file():
            raise UserError(f"{uri} is a baseline model without a checkpoint (scikit-learn or "
                            f"a lookup table); load it with mlflow.pyfunc.load_model instead.")
        yield ckpt


def load_checkpoint(path: str | Path, map_location: str = "cpu",
                    key: str = "checkpoint") -> LoadedModel:
    """Load a ``.ckpt`` written by this lab, or fail with one sentence saying why.

    ``path`` may also be a registered or logged MLflow model, ``models:/rnnlab-ner@champion``
    (see :mod:`rnnlab.report.registry`): its checkpoint is downloaded through MLflow and
    read the same way, so every command that takes a checkpoint takes such a URI."""
    if is_model_uri(str(path)):
        with model_checkpoint(str(path)) as local:
            return load_module(local, map_location, key, shown=str(path))
    return load_module(path, map_location, key)
