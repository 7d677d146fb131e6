"""Gradient flow through time: ||dLoss/dh_t|| for every step t on a fixed probe batch.

Why a tanh RNN cannot learn long dependencies is visible in one plot: the gradient of
the loss with respect to the hidden state t steps back shrinks geometrically with t,
while an LSTM or GRU keeps it roughly level. The quantity wanted is the *total*
derivative dL/dh_t (through every later step), but the fused RNN kernels return their
outputs as one tensor whose gradient holds only the *direct* part (for an N->1 task:
zero everywhere but the last step). So, for the probe only, the recurrent backbone is
unrolled one step at a time with the same weights (same numbers as the fused pass), and
each step's top-layer state, which feeds both the output and the next step, is a node
of the graph; ``torch.autograd.grad`` then gives dL/dh_t exactly, without touching the
parameters' ``.grad``. Backbones that cannot be unrolled this way (Transformer,
bidirectional RNN) get the gradient with respect to ``EncoderOutput.outputs``, which for a
Transformer is the total derivative anyway.

The callback needs only ``pl_module.backbone`` and ``pl_module.training_step(batch, 0)``:
``backbone.forward`` is wrapped for the probe and ``log`` is silenced. Norms are aligned
by distance from each sequence's last real step (for N->1 tasks, the distance from the
loss), measured before training, at chosen epochs and at the end; they are logged as
``grad_flow/*`` metrics, a plot ``plots/gradient_flow.png`` and ``gradient_flow/norms.json``.

``SweepComparison`` is a Hydra callback for multiruns (``experiment=vanishing_gradients``):
after the last job it gathers the sweep's runs from MLflow and logs a summary run with
the loss-vs-T comparison and the gradient-flow curves of every cell side by side.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.utilities.apply_func import move_data_to_device
from torch import Tensor, nn

from rnnlab.models.encoder import Backbone, EncoderOutput
from rnnlab.tracking.artifacts import log_figure, log_text, plt
from rnnlab.tracking.mlflow import resolve_tracking_uri

log = logging.getLogger("rnnlab")


# ---- measuring -----------------------------------------------------------------------
def unrolled_forward(backbone: Backbone, states: list[Tensor]) -> Callable[..., Any]:
    """A stand-in for ``backbone.forward`` that runs the recurrence step by step and appends
    each step's top-layer state to ``states`` (:meth:`Backbone.forward_steps`). Only for
    probing: one small batch, a few times per run."""

    def forward(x: Tensor, lengths: Tensor | None = None, hidden: Any = None,
                need_state: bool = False, features: Tensor | None = None) -> EncoderOutput:
        return backbone.forward_steps(x, lengths, states, hidden, features=features)

    return forward


def can_unroll(backbone: nn.Module) -> bool:
    return bool(getattr(backbone, "is_recurrent", False)) and not backbone.bidirectional


def _loss_of(module: pl.LightningModule, batch: Any) -> Tensor:
    out = module.training_step(batch, 0)
    return out["loss"] if isinstance(out, dict) else out


def step_gradients(module: pl.LightningModule, batch: Any) -> Tensor:
    """dLoss/dh_t of the probe ``batch`` as a (B, T, D) tensor (see the module docstring)."""
    backbone = module.backbone
    states: list[Tensor] = []
    captured: list[Tensor] = []
    original = backbone.forward
    unroll = can_unroll(backbone)

    def wrapped(*args: Any, **kwargs: Any) -> EncoderOutput:
        if unroll and not states:
            return unrolled_forward(backbone, states)(*args, **kwargs)
        out = original(*args, **kwargs)
        if not captured and not states:
            captured.append(out.outputs)
        return out

    def silent(*args: Any, **kwargs: Any) -> None:
        return None

    was_training = module.training
    backbone.forward = wrapped
    module.log = silent
    module.log_dict = silent
    module.eval()  # no dropout: the same probe gives the same numbers at every epoch
    try:
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            loss = _loss_of(module, batch)
            if states:
                grads = torch.autograd.grad(loss, states, allow_unused=True)
                grads = [torch.zeros_like(s) if g is None else g
                         for s, g in zip(states, grads, strict=True)]
                return torch.stack(grads, dim=1).detach()
            if not captured:
                raise RuntimeError("the module's training_step never called its backbone")
            (grad,) = torch.autograd.grad(loss, captured, allow_unused=True)
            return (torch.zeros_like(captured[0]) if grad is None else grad).detach()
    finally:
        del backbone.forward
        del module.log
        del module.log_dict
        module.train(was_training)


def norms_by_distance(grads: Tensor, lengths: Tensor | None = None) -> Tensor:
    """(B, T, D) per-step gradients -> (T,) norms over the batch, index d = d steps before
    each sequence's last real step (padding is never counted)."""
    batch, steps, _ = grads.shape
    lengths = (torch.full((batch,), steps, dtype=torch.long) if lengths is None
               else lengths.to("cpu").long())
    per_step = grads.detach().float().cpu().norm(dim=-1).pow(2)  # (B, T)
    index = lengths[:, None] - 1 - torch.arange(steps)[None, :]
    valid = index >= 0
    gathered = per_step.gather(1, index.clamp(min=0)) * valid
    return gathered.sum(0).sqrt()[: int(lengths.max())]


def gradient_norms(module: pl.LightningModule, batch: dict) -> Tensor:
    """||dLoss/dh_t|| by distance from the end for one batch (a dict with x / lengths)."""
    lengths = batch.get("lengths") if isinstance(batch, dict) else None
    return norms_by_distance(step_gradients(module, batch), lengths)


# ---- the callback --------------------------------------------------------------------
def _take(batch: Any, k: int) -> Any:
    if isinstance(batch, dict):
        n = next((len(v) for v in batch.values() if isinstance(v, Tensor) and v.dim() > 0), 0)
        return {key: (v[:k] if isinstance(v, Tensor) and v.dim() > 0 and len(v) == n else v)
                for key, v in batch.items()}
    return batch


def _steps(batch: Any) -> int:
    x = batch.get("x") if isinstance(batch, dict) else None
    return int(x.shape[1]) if isinstance(x, Tensor) and x.dim() > 1 else 0


def curve_figure(curves: dict[str, list[float]], title: str):
    """Norm vs distance from the loss (log y), one line per measurement or per model."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    colours = plt.cm.viridis([i / max(len(curves) - 1, 1) for i in range(len(curves))])
    for (label, norms), colour in zip(curves.items(), colours, strict=True):
        values = [v if v > 0 else float("nan") for v in norms]
        ax.semilogy(range(len(values)), values, label=label, color=colour)
    ax.set_xlabel("distance from the loss (time steps back)")
    ax.set_ylabel("||dLoss/dh_t||")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def summary_metrics(norms: Tensor, distances: list[int]) -> dict[str, float]:
    """A few numbers per measurement: the norm at chosen distances and the overall decay."""
    out = {f"grad_flow/norm_d{d}": float(norms[d]) for d in distances if d < len(norms)}
    first, far = float(norms[0]), float(norms[-1])
    out["grad_flow/norm_far"] = far
    if first > 0 and far > 0:
        out["grad_flow/log10_far_over_near"] = math.log10(far / first)
    return out


class GradientFlow(pl.Callback):
    """Measures ||dLoss/dh_t|| per step on a fixed validation batch during training.

    Args:
        every_n_epochs: measure after every n-th training epoch (besides before training
            and at the end); ``epochs`` lists exact epochs instead.
        probe_size: examples in the probe batch (the validation batch with the longest
            sequences, cut to this many).
        distances: distances whose norm is logged as a metric ``grad_flow/norm_d<d>``.
    """

    def __init__(self, every_n_epochs: int = 5, epochs: list[int] | None = None,
                 probe_size: int = 64, distances: list[int] | None = None) -> None:
        self.every_n_epochs = max(int(every_n_epochs), 1)
        self.epochs = set(epochs or [])
        self.probe_size = probe_size
        self.distances = list(distances or [0, 10, 25, 50, 100, 200])
        self.curves: dict[str, list[float]] = {}
        self.probe: Any = None
        self._last_epoch: int | None = None

    def _pick_probe(self, trainer: pl.Trainer) -> Any:
        dm = getattr(trainer, "datamodule", None)
        loader = dm.val_dataloader() if dm is not None else trainer.val_dataloaders
        best = None
        for batch in loader:
            if best is None or _steps(batch) > _steps(best):
                best = batch
        return _take(best, self.probe_size)

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, label: str) -> None:
        if self.probe is None:
            self.probe = self._pick_probe(trainer)
        if self.probe is None:
            return
        norms = gradient_norms(pl_module, move_data_to_device(self.probe, pl_module.device))
        self.curves[label] = norms.tolist()
        metrics = summary_metrics(norms, self.distances)
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._measure(trainer, pl_module, "before training")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        chosen = epoch in self.epochs if self.epochs else (epoch + 1) % self.every_n_epochs == 0
        if chosen:
            self._measure(trainer, pl_module, f"epoch {epoch + 1}")
            self._last_epoch = epoch

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._last_epoch != trainer.current_epoch and self._last_epoch != trainer.current_epoch - 1:
            self._measure(trainer, pl_module, f"end (epoch {trainer.current_epoch})")
        if trainer.global_rank != 0 or not self.curves:
            return
        backbone = pl_module.backbone
        name = getattr(backbone, "cell", None) or type(backbone).__name__
        title = f"{name}: gradient flow through time ({'total' if can_unroll(backbone) else 'direct'} dL/dh_t)"
        log_figure(trainer, curve_figure(self.curves, title), "plots/gradient_flow.png")
        log_text(trainer, json.dumps({"model": str(name), "curves": self.curves}),
                 "gradient_flow/norms.json")


# ---- sweep summary (Hydra callback) ---------------------------------------------------
try:
    from hydra.experimental.callback import Callback as _HydraCallback
except ImportError:  # pragma: no cover - hydra is a dependency
    _HydraCallback = object  # type: ignore[assignment,misc]


class SweepComparison(_HydraCallback):
    """After a multirun: one MLflow summary run comparing all jobs of the sweep.

    ``param`` is the swept run parameter on the x axis (e.g. ``task.seq_len``) and
    ``metric`` the test metric compared against ``test/baseline_loss``.
    """

    def __init__(self, param: str = "task.seq_len", metric: str = "test/loss") -> None:
        self.param, self.metric = param, metric
        self.started_ms: int | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.started_ms = int(time.time() * 1000)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        try:
            self._summarise(config)
        except Exception as err:  # a summary must never turn a finished sweep into a failure
            log.warning("sweep summary skipped: %s", err)

    def _summarise(self, config: Any) -> None:
        from mlflow.tracking import MlflowClient  # only a sweep summary needs the client

        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        root = config.paths.root_dir
        client = MlflowClient(resolve_tracking_uri(config.logger.mlflow.get("tracking_uri"), root))
        exp = client.get_experiment_by_name(str(config.logger.mlflow.experiment_name))
        if exp is None or self.started_ms is None:
            return
        # this sweep's jobs: started after it began, with a model tag (not parent/summary
        # runs) and, when jobs carry one, the sweep id most of them share
        runs = [r for r in client.search_runs(
            [exp.experiment_id], filter_string=f"attributes.start_time >= {self.started_ms}",
            max_results=1000) if r.data.tags.get("model")]
        ids = Counter(r.data.tags.get("sweep_id") for r in runs)
        sweep_id = ids.most_common(1)[0][0] if ids else None
        runs = [r for r in runs if r.data.tags.get("sweep_id") == sweep_id]
        rows, curves = [], {}
        with tempfile.TemporaryDirectory() as tmp:
            for run in runs:
                model = run.data.tags.get("model", "?")
                x = run.data.params.get(self.param, "?")
                rows.append((model, x, run.data.metrics.get(self.metric),
                             run.data.metrics.get("test/baseline_loss"),
                             run.data.metrics.get("test/solved")))
                try:
                    path = client.download_artifacts(run.info.run_id, "gradient_flow/norms.json",
                                                     tmp)
                    data = json.loads(Path(path).read_text())
                    final = list(data["curves"].values())[-1]
                    curves.setdefault(x, {})[model] = final
                except Exception:  # noqa: S112 - a run without the diagnostic has no curve
                    continue
        if not rows:
            return
        summary = client.create_run(exp.experiment_id, run_name="sweep-summary",
                                    tags={"sweep_id": str(sweep_id), "rnnlab_role": "sweep_summary"})
        rid = summary.info.run_id
        rows.sort(key=lambda r: (r[0], float(r[1]) if r[1].replace(".", "").isdigit() else 0))
        table = [f"| model | {self.param} | {self.metric} | baseline | solved |", "|---|---|---|---|---|"]
        table += [f"| {m} | {x} | {_fmt(v)} | {_fmt(b)} | {_fmt(s)} |" for m, x, v, b, s in rows]
        client.log_text(rid, "\n".join(table) + "\n", "results.md")
        with tempfile.TemporaryDirectory() as tmp:
            fig = _comparison_figure(rows, self.param, self.metric)
            fig.savefig(Path(tmp) / "loss_vs_param.png", dpi=110, bbox_inches="tight")
            plt.close(fig)
            client.log_artifact(rid, str(Path(tmp) / "loss_vs_param.png"), "plots")
            for x, by_model in curves.items():
                fig = curve_figure(by_model, f"gradient flow at the end of training, {self.param}={x}")
                name = f"gradient_flow_{self.param.split('.')[-1]}{x}.png"
                fig.savefig(Path(tmp) / name, dpi=110, bbox_inches="tight")
                plt.close(fig)
                client.log_artifact(rid, str(Path(tmp) / name), "plots")
        client.set_terminated(rid)
        print("\n".join(table))


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _comparison_figure(rows: list[tuple], param: str, metric: str):
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    baseline = next((r[3] for r in rows if r[3] is not None), None)
    for model in sorted({r[0] for r in rows}):
        pts = sorted((float(r[1]), r[2]) for r in rows if r[0] == model and r[2] is not None)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=model)
    if baseline is not None:
        ax.axhline(baseline, ls="--", color="grey", label="memoryless baseline")
        ax.axhline(0.1 * baseline, ls=":", color="grey", label="solved (< 10% of baseline)")
    ax.set_yscale("log")
    ax.set_xlabel(param)
    ax.set_ylabel(metric)
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    return fig
