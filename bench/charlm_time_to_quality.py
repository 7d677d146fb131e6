#!/usr/bin/env python
"""Time to quality on task=charlm: how soon the lab's recipe reaches the plain loop's loss.

charlm_budget.py compares both at equal time; this asks the question a user pays for:
how long does ``train.py experiment=charlm_shakespeare`` need to match what a plain
PyTorch loop reaches in ``--minutes``? Bar: at most 2/3 of the plain loop's time (400 s
of 600 s). One run after the other, on the same split (whole plays held out):

1. plain loop: charlm_budget's reference recipe for ``--minutes``; its final model scored
   by charlm_budget's ``evaluate`` on every validation character with the state carried
   along 64 streams: that loss is the TARGET. Its own snapshots (every ``--every`` s of
   training) give the time at which the plain loop itself first reached the target (a
   sanity row: about the whole budget).
2. lab: ``rnnlab.run.train.run`` with ``experiment=charlm_shakespeare model=--model`` and
   any ``--override``, ``trainer.max_time`` = the same budget, with its own validation,
   checkpointing and MLflow (a throw-away store), as a user runs it. A callback keeps a CPU
   copy of the weights every ``--every`` s of training; after training they are scored in
   order by the same function, stopping at the first at or below the target.

Times are training wall time from the first step (Lightning's ``on_train_start``, where
``trainer.max_time`` starts too), the snapshots' own time taken off; the lab's includes its
validation and checkpointing. A snapshot's time is an upper bound: the target was reached
at most ``--every`` s earlier.

    python bench/charlm_time_to_quality.py                   # 10 min plain, then the lab
    python bench/charlm_time_to_quality.py --skip-plain --target 1.6159 --plain-seconds 600 \\
        --override task.datamodule.batch_size=64 --override task.optimizer.lr=0.008
    python bench/charlm_time_to_quality.py --minutes 0.3 --every 5 --threads 1   # smoke
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

# this folder is on sys.path; these benches put src/ on it and set RNNLAB_ROOT and CI
from cells import load_line, machine
from charlm_budget import (
    PLAIN_RECIPE,
    Forward,
    common_overrides,
    evaluate,
    make_config,
    max_time,
    plain_loop,
)
from charlm_vs_plain_loop import PlainLM
from omegaconf import DictConfig

from rnnlab.models.cells import cell_names

BAR = 2 / 3


@dataclass
class Snapshot:
    """The weights at ``seconds`` of training, after ``steps`` steps over ``chars`` chars."""

    seconds: float
    steps: int
    chars: int
    state: dict[str, torch.Tensor]
    carried: float | None = None  # val carried loss, once scored


class Trajectory:
    """Copies of a model's weights every ``every`` seconds of training, to be scored later
    (scoring during training would cost the run its own time)."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.snapshots: list[Snapshot] = []
        self._due = every

    def offer(self, weights: torch.nn.Module, seconds: float, steps: int, chars: int,
              final: bool = False) -> None:
        """Keep a CPU copy of ``weights`` if a snapshot is due (always when ``final``)."""
        if seconds < self._due and not final:
            return
        state = {k: v.detach().to("cpu", copy=True) for k, v in weights.state_dict().items()}
        self.snapshots.append(Snapshot(seconds, steps, chars, state))
        self._due = (seconds // self.every + 1) * self.every

    def first_at(self, weights: torch.nn.Module, forward: Forward, dm: Any, target: float
                 ) -> Snapshot | None:
        """The first snapshot whose val carried loss is <= ``target`` (scored in order,
        loaded into ``weights``, which ``forward`` runs); None if none is."""
        weights.eval()
        for snap in self.snapshots:
            weights.load_state_dict(snap.state)
            snap.carried = evaluate(forward, dm, carry=True)
            print(f"  {snap.seconds:7.1f} s  step {snap.steps:>6}  val carried "
                  f"{snap.carried:.4f}", flush=True)
            if snap.carried <= target:
                return snap
        return None


class SnapshotEvery(pl.Callback):
    """Offers the module to a :class:`Trajectory` after every training batch and at the end,
    on a clock of training wall time that starts at ``on_train_start`` without its own time."""

    def __init__(self, trajectory: Trajectory) -> None:
        self.trajectory = trajectory
        self.module: pl.LightningModule | None = None
        self._start = 0.0
        self._chars = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.module = pl_module
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._chars += batch["x"].numel()
        self._offer(trainer, pl_module, final=False)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._offer(trainer, pl_module, final=True)

    def _offer(self, trainer: pl.Trainer, pl_module: pl.LightningModule, final: bool) -> None:
        paused = time.perf_counter()
        self.trajectory.offer(pl_module, paused - self._start, trainer.global_step,
                              self._chars, final)
        self._start += time.perf_counter() - paused


def plain(cfg: DictConfig, seconds: float, every: float) -> dict[str, Any]:
    """The reference recipe for ``seconds``; the target is its final val carried loss."""
    trajectory, kept = Trajectory(every), {}  # plain_loop builds the model: kept here

    def watch(model: PlainLM, elapsed: float, steps: int, chars: int) -> None:
        if not kept:
            kept.update(model=model, weights=torch.nn.ModuleDict(
                {"backbone": model.backbone, "head": model.head}))
        trajectory.offer(kept["weights"], elapsed, steps, chars)

    print(load_line("at plain loop start"), flush=True)
    result = plain_loop(cfg, seconds, after_step=watch)
    print(load_line("at plain loop end"), flush=True)
    target = result["carried"]
    print(f"TARGET = plain loop's final val carried loss {target:.4f} nats/char "
          f"({result['steps']} steps, {result['train_s']:.0f} s); its own snapshots:")
    model = kept["model"]
    hit = trajectory.first_at(kept["weights"], model, model.dm, target)
    # the final weights are the target by definition: no earlier snapshot reached it
    return {**result, "target": target,
            "time": hit.seconds if hit else result["train_s"]}


def lab(cfg: DictConfig, every: float, target: float) -> dict[str, Any]:
    """``rnnlab.run.train.run`` as a user runs it, watched; its snapshots scored in order."""
    from rnnlab.build import build_datamodule
    from rnnlab.run.train import run

    trajectory = Trajectory(every)
    watch = SnapshotEvery(trajectory)
    print(load_line("at lab start"), flush=True)
    run(cfg, extra_callbacks=[watch])
    print(load_line("at lab end"), flush=True)
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    module, final = watch.module, trajectory.snapshots[-1]
    print(f"lab snapshots against the target {target:.4f}:")
    hit = trajectory.first_at(module, module, dm, target)
    module.load_state_dict(final.state)
    return {"steps": final.steps, "chars": final.chars, "train_s": final.seconds,
            "time": hit.seconds if hit else None,
            "carried": final.carried if final.carried is not None
            else evaluate(module, dm, carry=True),
            "windows": evaluate(module, dm, carry=False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lstm", choices=cell_names())
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--lab-minutes", type=float, default=None,
                        help="the lab's budget (default: --minutes; 2/3 of it decides the bar)")
    parser.add_argument("--every", type=float, default=30.0,
                        help="seconds of training between snapshots")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--override", action="append", default=[],
                        help="extra train.py override for the lab run (repeatable)")
    parser.add_argument("--skip-plain", action="store_true",
                        help="no plain loop: give its figures with --target, --plain-seconds")
    parser.add_argument("--target", type=float, help="the plain loop's val carried loss")
    parser.add_argument("--plain-seconds", type=float,
                        help="the plain loop's time to the target (default: the budget)")
    args = parser.parse_args()
    if args.skip_plain and args.target is None:
        parser.error("--skip-plain needs --target (the plain loop's val carried loss)")
    if not args.skip_plain and (args.target is not None or args.plain_seconds is not None):
        parser.error("--target and --plain-seconds replace the plain loop: add --skip-plain")
    torch.set_num_threads(args.threads)
    print(machine(), flush=True)
    common = common_overrides(args.model, args.seed)
    rows: list[tuple[str, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.skip_plain:
            target = args.target
            plain_s = args.plain_seconds or args.minutes * 60
        else:
            reference = plain(make_config([*PLAIN_RECIPE, *common], Path(tmp) / "plain"),
                              args.minutes * 60, args.every)
            target, plain_s = reference["target"], reference["time"]
            rows.append(("plain loop (reference recipe)", reference))
        cfg = make_config(["experiment=charlm_shakespeare", *common,
                           f"trainer.max_time={max_time(args.lab_minutes or args.minutes)}",
                           *args.override],
                          Path(tmp) / "lab")
        rows.append((f"lab experiment=charlm_shakespeare model={args.model}",
                     lab(cfg, args.every, target)))
    print(f"\ncharlm on Shakespeare, {args.minutes:g} min budget each, snapshots every "
          f"{args.every:g} s, {machine()}")
    if args.override:
        print("lab overrides: " + " ".join(args.override))
    print(f"TARGET: val carried {target:.4f} nats/char (the plain loop's final model), "
          f"plain loop's time {plain_s:.0f} s" + (" (given)" if args.skip_plain else ""))
    print(f"{'run':<44}{'steps':>7}{'M chars':>9}{'to target s':>13}{'val carried':>13}"
          f"{'val windows':>13}{'ratio':>7}")
    for name, r in rows:
        reached = r["time"] is not None
        time_s = f"{r['time']:.0f}" if reached else f">{r['train_s']:.0f}"
        ratio = f"{r['time'] / plain_s:.3f}" if reached else "-"
        print(f"{name:<44}{r['steps']:>7}{r['chars'] / 1e6:>9.2f}{time_s:>13}"
              f"{r['carried']:>13.4f}{r['windows']:>13.4f}{ratio:>7}")
    print(f"(time to target: the first snapshot at or below it, so an upper bound by up to "
          f"{args.every:g} s; steps, chars and val losses: final model; "
          f"bar: lab ratio <= {BAR:.3f})")
    ratio = rows[-1][1]["time"] and rows[-1][1]["time"] / plain_s
    print("lab: " + (f"ratio {ratio:.3f}, " + ("meets" if ratio <= BAR else "misses")
                     if ratio else "target not reached, misses") + " the bar")


if __name__ == "__main__":
    main()
