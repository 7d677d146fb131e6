#!/usr/bin/env python
"""Pipeline overhead on task=charlm: the lab's training path vs a plain PyTorch loop.

Both train the same model (the lab's RecurrentEncoder + a linear output layer, built from
the same config) on the same batches (the datamodule's random windows of epoch 0, in the
same order) with Adam and gradient-norm clipping at 1.0, for the same number of steps,
and report training tokens per second (wall clock from the first batch to the last step,
data loading included). The pipeline is ``rnnlab.run.train.run`` as ``train.py`` runs it:
Lightning, the task module, MLflow tracking (to a throw-away store) and the throughput
callback; no validation, checkpointing or early stopping. Runs alternate plain/pipeline
to spread machine noise over both; the table shows every run and the medians.

    python bench/charlm_vs_plain_loop.py                    # LSTM 1x512, batch 64 x 128
    python bench/charlm_vs_plain_loop.py --model gru --steps 20 --hidden 256 --repeats 3
    python bench/charlm_vs_plain_loop.py --path my.txt      # any UTF-8 text file

Bar (targets.md): pipeline tokens/s >= 0.97 x the plain loop.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RNNLAB_ROOT", str(ROOT))
os.environ.setdefault("CI", "1")  # plain output, no progress bar
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from rnnlab.build.schema import register_configs  # noqa: E402
from rnnlab.core.paths import config_dir, register_resolvers  # noqa: E402
from rnnlab.models.cells import cell_names  # noqa: E402


def make_config(args: argparse.Namespace, store: Path) -> DictConfig:
    register_resolvers()
    register_configs()
    overrides = [
        "experiment=charlm_shakespeare", f"model={args.model}", f"seed={args.seed}",
        f"model.hidden_size={args.hidden}", f"task.datamodule.seq_len={args.seq_len}",
        f"task.datamodule.batch_size={args.batch}", f"task.optimizer.lr={args.lr}",
        f"++trainer.limit_train_batches={args.steps}", "trainer.max_epochs=1",
        "trainer.max_time=null", "++trainer.limit_val_batches=0", "trainer.val_check_interval=null",
        "trainer.accelerator=cpu", "trainer.log_every_n_steps=50", "callbacks=none", "test=false",
        f"paths.root_dir={store}", f"paths.output_dir={store}/outputs",
        f"paths.data_dir={ROOT / 'data'}", f"logger.mlflow.tracking_uri=sqlite:///{store}/mlflow.db",
    ]
    if args.path:
        overrides.append(f"task.data.path={Path(args.path).resolve()}")
    with initialize_config_dir(str(config_dir()), version_base="1.3"):
        return compose("config", overrides=overrides)


class PlainLM:
    """The hand-written reference: the lab's backbone + a linear output layer, Adam and
    gradient-norm clipping at 1.0, over the config's datamodule (no Lightning)."""

    def __init__(self, cfg: DictConfig, lr: float) -> None:
        from rnnlab.build import build_backbone, build_datamodule

        torch.manual_seed(cfg.seed)
        self.dm = build_datamodule(cfg)
        self.dm.prepare_data()
        self.dm.setup("fit")
        self.backbone = build_backbone(cfg, self.dm.spec)
        self.head = torch.nn.Linear(self.backbone.output_size, self.dm.spec.vocab_size)
        self.params = [*self.backbone.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=lr)

    def step(self, batch: dict) -> int:
        """One optimizer step; returns the batch's token count."""
        logits = self.head(self.backbone(batch["x"]).outputs)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["y"].reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.optimizer.step()
        return batch["x"].numel()

    def __call__(self, x: torch.Tensor, hidden: object = None) -> tuple[torch.Tensor, object]:
        """Logits and the final state, as the lab's language model returns them."""
        enc = self.backbone(x, hidden=hidden)
        return self.head(enc.outputs), enc.hidden


def plain_loop(cfg: DictConfig, steps: int) -> float:
    """Tokens/s of a hand-written loop over the same model and batches."""
    model = PlainLM(cfg, float(cfg.task.optimizer.lr))
    model.backbone.train()
    tokens = 0
    start = time.perf_counter()
    for step, batch in enumerate(model.dm.train_dataloader()):
        if step == steps:
            break
        tokens += model.step(batch)
    return tokens / (time.perf_counter() - start)


def pipeline(cfg: DictConfig) -> float:
    """Tokens/s of ``rnnlab.run.train.run`` (the ThroughputMonitor's figure for the epoch)."""
    from rnnlab.run.train import run

    metrics = run(cfg)
    return float(metrics["perf/train_items_per_sec"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lstm", choices=cell_names())
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--path", default=None, help="a UTF-8 text file instead of Shakespeare")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[tuple[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            cfg = make_config(args, Path(tmp) / f"r{r}")
            rows.append(("plain loop", plain_loop(cfg, args.steps)))
            rows.append(("pipeline", pipeline(cfg)))
    plain = statistics.median(v for k, v in rows if k == "plain loop")
    pipe = statistics.median(v for k, v in rows if k == "pipeline")
    print(f"\ncharlm, model={args.model} 1x{args.hidden}, batch {args.batch} x {args.seq_len}, "
          f"{args.steps} steps, {args.threads} threads, torch {torch.__version__}")
    print(f"{'run':<6}{'plain loop tok/s':>18}{'pipeline tok/s':>16}{'ratio':>8}")
    for r in range(args.repeats):
        a, b = rows[2 * r][1], rows[2 * r + 1][1]
        print(f"{r + 1:<6}{a:>18.0f}{b:>16.0f}{b / a:>8.3f}")
    print(f"{'median':<6}{plain:>18.0f}{pipe:>16.0f}{pipe / plain:>8.3f}   (bar: >= 0.97)")


if __name__ == "__main__":
    main()
