#!/usr/bin/env python
"""Quality at a fixed wall-clock budget on task=charlm: the lab's recipe vs a plain loop.

targets.md's charlm bar: val loss <= 1.50 nats/char within 10 minutes on this 2-core CPU,
and better than a plain PyTorch loop given the same time. This bench runs both, one after
the other, on the same split (whole Shakespeare plays held out):

* plain loop: the reference recipe (LSTM 1x512 over 128-d embeddings, Adam 2e-3 constant,
  random windows of 64 x 128, gradient clipping 1.0), trained until the budget runs out;
* pipeline: ``python train.py experiment=charlm_shakespeare model=...`` as a user runs it
  (validation, checkpointing, MLflow to a throw-away store all inside the budget), scored
  from its best checkpoint.

Both final models are then scored by one function on every character of the validation
plays, two ways: ``windows`` (each 128-char window from a zero state, as the reference
loop is usually scored) and ``carried`` (the state carried along 64 streams, as a
language model is used). The table prints steps, characters seen and both losses.

    python bench/charlm_budget.py                       # 10 minutes each, LSTM
    python bench/charlm_budget.py --minutes 2 --model gru
    python bench/charlm_budget.py --override task.stateful=false   # vary the recipe
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RNNLAB_ROOT", str(ROOT))
os.environ.setdefault("CI", "1")  # plain output, no progress bar
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from charlm_vs_plain_loop import PlainLM  # noqa: E402  (this folder is on sys.path)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from rnnlab.build.schema import register_configs  # noqa: E402
from rnnlab.core.paths import config_dir, register_resolvers  # noqa: E402
from rnnlab.models.cells import cell_names  # noqa: E402

EVAL_STREAMS = 64
# the plain loop's data: random windows (no carried state), 64 per batch
PLAIN_RECIPE = ["experiment=charlm_shakespeare", "task.stateful=false",
                "task.datamodule.batch_size=64"]
Forward = Callable[[torch.Tensor, object], tuple[torch.Tensor, object]]


def common_overrides(model: str, seed: int) -> list[str]:
    """What both runs share: the cell, the seed, the CPU and the validation streams."""
    return [f"model={model}", f"seed={seed}", "trainer.accelerator=cpu",
            f"task.datamodule.eval_streams={EVAL_STREAMS}"]


def max_time(minutes: float) -> str:
    """A budget in minutes as ``trainer.max_time`` takes it (DD:HH:MM:SS)."""
    return f"00:00:{int(minutes):02d}:{round(minutes % 1 * 60):02d}"


def make_config(overrides: list[str], store: Path) -> DictConfig:
    register_resolvers()
    register_configs()
    paths = [f"paths.root_dir={store}", f"paths.output_dir={store}/outputs",
             f"paths.data_dir={ROOT / 'data'}",
             f"logger.mlflow.tracking_uri=sqlite:///{store}/mlflow.db"]
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=[*paths, *overrides])


@torch.no_grad()
def evaluate(forward: Forward, dm: object, carry: bool) -> float:
    """Nats per character over every validation character (state carried or reset)."""
    total, chars, hidden = 0.0, 0, None
    for batch in dm.val_dataloader():
        if batch["reset"] or not carry or hidden is None:
            hidden = None
        logits, hidden = forward(batch["x"], hidden)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                       batch["y"].reshape(-1), reduction="sum"))
        chars += batch["y"].numel()
    return total / chars


def plain_loop(cfg: DictConfig, seconds: float,
               after_step: Callable[[PlainLM, float, int, int], None] | None = None
               ) -> dict[str, float]:
    """The reference recipe, trained until ``seconds`` have passed.

    ``after_step(model, seconds, steps, chars)`` may watch the run after each step (e.g. keep
    snapshots); its own time is taken off the clock, so the model still trains ``seconds``."""
    model = PlainLM(cfg, lr=2e-3)
    steps = chars = 0
    start = time.perf_counter()
    model.backbone.train()
    while time.perf_counter() - start < seconds:
        for batch in model.dm.train_dataloader():
            chars += model.step(batch)
            steps += 1
            if after_step is not None:
                paused = time.perf_counter()
                after_step(model, paused - start, steps, chars)
                start += time.perf_counter() - paused
            if time.perf_counter() - start >= seconds:
                break
    model.backbone.eval()
    return {"steps": steps, "chars": chars, "train_s": time.perf_counter() - start,
            "windows": evaluate(model, model.dm, carry=False),
            "carried": evaluate(model, model.dm, carry=True)}


def pipeline(cfg: DictConfig) -> dict[str, float]:
    """``rnnlab.run.train.run`` as train.py calls it, then its best checkpoint scored."""
    from rnnlab.build import build_datamodule
    from rnnlab.inference import load_checkpoint
    from rnnlab.run.train import run

    start = time.perf_counter()
    metrics = run(cfg)
    train_s = time.perf_counter() - start
    loaded = load_checkpoint(Path(cfg.paths.output_dir) / "checkpoints" / "best.ckpt")
    module = loaded.module.eval()
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    steps = int(torch.load(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt",
                           map_location="cpu", weights_only=True)["global_step"])
    return {"steps": steps, "chars": steps * cfg.task.datamodule.batch_size
            * cfg.task.datamodule.seq_len, "train_s": train_s,
            "windows": evaluate(module, dm, carry=False),
            "carried": evaluate(module, dm, carry=True),
            "test": float(metrics.get("test/loss", math.nan))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lstm", choices=cell_names())
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--skip-plain", action="store_true", help="pipeline row only")
    parser.add_argument("--override", action="append", default=[],
                        help="extra train.py override for the pipeline run (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    common = common_overrides(args.model, args.seed)
    rows: list[tuple[str, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_plain:
            reference = make_config([*PLAIN_RECIPE, *common], Path(tmp) / "plain")
            rows.append(("plain loop (LSTM recipe of targets.md)", plain_loop(reference,
                                                                           args.minutes * 60)))
        cfg = make_config(["experiment=charlm_shakespeare", *common,
                           f"trainer.max_time={max_time(args.minutes)}", *args.override],
                          Path(tmp) / "lab")
        rows.append((f"pipeline experiment=charlm_shakespeare model={args.model}",
                     pipeline(cfg)))
    print(f"\ncharlm on Shakespeare (val plays: every character), {args.minutes:g} min "
          f"budget each, {args.threads} threads, torch {torch.__version__}")
    if args.override:
        print("pipeline overrides: " + " ".join(args.override))
    print(f"{'run':<52}{'steps':>7}{'M chars':>9}{'wall s':>9}{'val windows':>13}"
          f"{'val carried':>13}{'test':>8}")
    for name, r in rows:
        test = f"{r['test']:.4f}" if "test" in r else "-"
        print(f"{name:<52}{r['steps']:>7}{r['chars'] / 1e6:>9.2f}{r['train_s']:>9.0f}"
              f"{r['windows']:>13.4f}{r['carried']:>13.4f}{test:>8}")
    print("(nats per character; bar: pipeline <= 1.50 and below the plain loop)")


if __name__ == "__main__":
    main()
