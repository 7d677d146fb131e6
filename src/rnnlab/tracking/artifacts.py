"""Plots and files as run artifacts, whichever logger is configured.

Modules call :func:`log_figure` / :func:`log_text` with the trainer; with MLflow the file
becomes an artifact of the run, with other loggers it lands in the logger's directory.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from pytorch_lightning.loggers import MLFlowLogger  # noqa: E402


def _mlflow_logger(trainer):
    for logger in getattr(trainer, "loggers", []) or []:
        if isinstance(logger, MLFlowLogger):
            return logger
    return None


def log_file(trainer, local_path: str | Path, artifact_dir: str | None = None) -> None:
    """Copy a finished file into the run (MLflow artifact) or the logger's folder."""
    if trainer is None or getattr(trainer, "global_rank", 0) != 0:
        return
    ml = _mlflow_logger(trainer)
    if ml is not None:
        ml.experiment.log_artifact(ml.run_id, str(local_path), artifact_dir)
        return
    # the logger's own folder: Trainer.log_dir is a collective under DDP, and only rank
    # zero gets here, so asking the trainer would wait for ranks that never ask
    log_dir = next((lg.log_dir for lg in getattr(trainer, "loggers", None) or []
                    if getattr(lg, "log_dir", None)), None) or getattr(
        trainer, "default_root_dir", None) or getattr(trainer, "log_dir", None)
    if log_dir:
        dest = Path(log_dir) / (artifact_dir or "") / Path(local_path).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(Path(local_path).read_bytes())


def log_text(trainer, text: str, artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_path).name
        path.write_text(text, encoding="utf-8")
        log_file(trainer, path, str(Path(artifact_path).parent) if "/" in artifact_path else None)


def log_figure(trainer, fig: Figure, artifact_path: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_path).name
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        log_file(trainer, path, str(Path(artifact_path).parent) if "/" in artifact_path else None)


def confusion_matrix_figure(matrix: np.ndarray, labels: list[str], title: str | None = None,
                            xlabel: str = "predicted", ylabel: str = "true") -> Figure:
    """Counts with row-normalised shading (rows: truth, columns: prediction), titled by
    default with the accuracy they give; a matrix that is not a model's test predictions
    says what it is in ``title`` and its axis labels."""
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * n, 1.0 + 0.55 * n))
    norm = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if norm[i, j] > 0.5 else "black", fontsize=8)
    ax.set_title(title or f"test accuracy {np.trace(matrix) / max(matrix.sum(), 1):.3f}",
                 fontsize=9 if title else None)
    return fig
