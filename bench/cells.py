"""The new cells (minGRU, minLSTM, IndRNN) against LSTM, GRU and IRNN: speed and quality.

Why: minGRU and minLSTM (Feng et al. 2024) give up state-dependent gates so that
training computes every gate for all steps at once and only an element-wise scan is left
along time; IndRNN (Li et al. 2018) trades a full recurrent matrix for one weight per unit.
What either buys is only worth knowing at equal cost, so this bench prints two tables,
each side by side in one run, with the machine load (shared machines move these numbers):

* speed: training tokens per second (forward, backward and an Adam step of a
  ``RecurrentEncoder`` over real-valued frames, full-length batches) at several lengths;
* quality at equal wall time: every cell gets the same budget, run alone one after the
  other, as a user runs ``train.py``: ``experiment=charlm_shakespeare`` (val/test
  nats per character of the best checkpoint) and ``task=adding`` at T = 200 and 400
  (val/test MSE of the best checkpoint; the memoryless baseline is 0.167).
  ``--charlm-steps N`` caps charlm by training steps instead of minutes (equal steps,
  for choosing settings on validation while the machine is shared).

A ``--cells`` entry is a ``model=`` choice with optional ``+``-joined model overrides:
``mingru+block=residual`` runs ``model=mingru model.block=residual``; a ``trainer.`` or
``task.`` part is passed as it is (``mingru+block=residual+trainer.precision=bf16-mixed``).

    python bench/cells.py                          # the speed table (minutes)
    python bench/cells.py --part all               # both tables (about 120 minutes)
    python bench/cells.py --part speed [--lengths 128 512 2048 8192] [--batch 32] [--hidden 256]
    python bench/cells.py --part quality [--charlm-minutes 10] [--adding-minutes 3]
    python bench/cells.py --part quality --charlm-steps 400 --adding-lengths \
        --cells lstm mingru mingru+block=residual
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("RNNLAB_ROOT", str(ROOT))
os.environ.setdefault("CI", "1")  # plain output, no progress bar
sys.path.insert(0, str(ROOT / "src"))

import torch  # noqa: E402

from rnnlab.models import RecurrentEncoder  # noqa: E402
from rnnlab.models.cells import get_cell  # noqa: E402

SCANNED = ("mingru", "minlstm", "indrnn")
FUSED = ("gru", "lstm")
#: speed ratios printed: (cell, fused peer)
RATIOS = (("mingru", "gru"), ("minlstm", "lstm"), ("indrnn", "gru"))
# quality: the cells added through the registry, bare and as residual blocks (two blocks
# of 256 units: the size of the LSTM recipe, chosen on charlm validation, docs/results.md),
# then the references
RESIDUAL = "+block=residual+hidden_size=256+num_layers=2"
NEW = ("mingru", "minlstm", "indrnn", f"mingru{RESIDUAL}", f"minlstm{RESIDUAL}",
       f"indrnn{RESIDUAL}")
REFERENCE = ("lstm", "gru", "irnn")


def model_overrides(entry: str) -> list[str]:
    """``mingru+block=residual`` -> ``["model=mingru", "model.block=residual"]``; a part
    naming another group is kept as it is (``lstm+trainer.precision=bf16-mixed``)."""
    name, *extra = entry.split("+")
    return [f"model={name}", *(e if e.startswith(("trainer.", "task.")) else f"model.{e}"
                               for e in extra)]


def training_step(cell: str, steps: int, batch: int, hidden: int) -> Callable[[], float]:
    """A closure that runs one training step of ``cell`` and returns its wall time."""
    torch.manual_seed(0)
    enc = RecurrentEncoder(cell, hidden_size=hidden, input_size=hidden)
    opt = torch.optim.Adam(enc.parameters(), lr=1e-3)
    x = torch.randn(batch, steps, hidden)

    def step() -> float:
        start = time.perf_counter()
        opt.zero_grad()
        enc(x).outputs.pow(2).mean().backward()
        opt.step()
        return time.perf_counter() - start

    return step


def tokens_per_second(cells: list[str], steps: int, batch: int, hidden: int,
                      repeats: int) -> dict[str, float]:
    """Best of ``repeats`` timed steps per cell, after a warm-up; the cells take turns in
    every round, so a burst of load from elsewhere hits them alike."""
    runs = {c: training_step(c, steps, batch, hidden) for c in cells}
    for run in runs.values():
        run()  # warm-up: allocators and kernels
    best = dict.fromkeys(cells, float("inf"))
    for _ in range(repeats):
        for cell, run in runs.items():
            best[cell] = min(best[cell], run())
    return {c: batch * steps / best[c] for c in cells}


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, {date.today()}")


def load_line(when: str) -> str:
    load = os.getloadavg()
    return f"load average {when}: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"


def speed_table(args: argparse.Namespace) -> None:
    cells = [*SCANNED, *FUSED]
    for cell in cells:
        get_cell(cell)  # a clear error if a cell is missing from the registry
    print(f"training tokens/s, batch {args.batch}, hidden {args.hidden}, {machine()}")
    print(load_line("at start"))
    ratios = [f"{c}/{peer}" for c, peer in RATIOS]
    print(f"| {'T':>5} | " + " | ".join(f"{c:>9}" for c in [*cells, *ratios]) + " |")
    print("|" + "---:|" * (len(cells) + len(ratios) + 1))
    for steps in args.lengths:
        speed = tokens_per_second(cells, steps, args.batch, args.hidden, args.repeats)
        print(f"| {steps:>5} | " + " | ".join(f"{speed[c]:>9.0f}" for c in cells) + " | "
              + " | ".join(f"{speed[c] / speed[peer]:>{len(r)}.2f}"
                           for (c, peer), r in zip(RATIOS, ratios, strict=True)) + " |",
              flush=True)
    print(load_line("at end"))


def train_alone(overrides: list[str], store: Path) -> tuple[dict, float]:
    """``rnnlab.run.train.run`` on one composed config (a throw-away MLflow store), timed."""
    from charlm_budget import make_config  # noqa: PLC0415  (this folder is on sys.path)

    from rnnlab.run.train import run

    cfg = make_config(overrides, store)
    start = time.perf_counter()
    metrics = run(cfg)
    return {**metrics, "cfg": cfg}, time.perf_counter() - start


def attempt(name: str, fn: Callable[[], dict[str, object]]) -> dict[str, object]:
    """One row; a run that fails (a diverged loss, say) is a row that says so, not a crash."""
    print(f"--- {name} ({load_line('before')})", flush=True)
    try:
        return fn()
    except Exception as err:  # noqa: BLE001 - the table reports it
        return {"failed": str(err).splitlines()[0][:80] if str(err) else type(err).__name__}


def charlm_row(cell: str, minutes: float, seed: int, store: Path,
               steps: int = 0) -> dict[str, object]:
    """``experiment=charlm_shakespeare model=<cell>`` under a cap of ``minutes`` (or of
    ``steps`` training steps, if given); its best checkpoint scored on every validation
    character (state carried) and the test plays."""
    from charlm_budget import EVAL_STREAMS, make_config, pipeline  # noqa: PLC0415

    budget = f"00:00:{int(minutes):02d}:{round(minutes % 1 * 60):02d}"
    cap = ([f"trainer.max_steps={steps}", "trainer.max_time=null",
            f"trainer.val_check_interval={min(steps, 200)}"] if steps
           else [f"trainer.max_time={budget}"])
    cfg = make_config(["experiment=charlm_shakespeare", *model_overrides(cell), f"seed={seed}",
                       "trainer.accelerator=cpu", f"task.datamodule.eval_streams={EVAL_STREAMS}",
                       *cap], store)
    r = pipeline(cfg)
    return {"steps": r["steps"], "wall": r["train_s"], "val": r["carried"], "test": r["test"]}


def adding_row(cell: str, steps: int, minutes: float, hidden: int, seed: int,
               store: Path) -> dict[str, object]:
    """``task=adding model=<cell> task.seq_len=<steps>`` under a cap of ``minutes``."""
    budget = f"00:00:{int(minutes):02d}:{round(minutes % 1 * 60):02d}"
    metrics, wall = train_alone(
        ["task=adding", *model_overrides(cell), f"seed={seed}", "trainer.accelerator=cpu",
         f"task.seq_len={steps}", f"model.hidden_size={hidden}", "trainer.max_epochs=1000",
         f"trainer.max_time={budget}", "logger.mlflow.log_model=false"], store)
    last = Path(metrics["cfg"].paths.output_dir) / "checkpoints" / "last.ckpt"
    steps_done = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    return {"steps": steps_done, "wall": wall,
            "val": metrics.get("best/val/loss", math.nan),
            "test": metrics.get("test/loss", math.nan),
            "solved": metrics.get("test/solved", math.nan)}


def folder(entry: str) -> str:
    """A ``--cells`` entry as a folder name Hydra can read back in an override."""
    return entry.replace("+", "-").replace("=", "-")


def print_rows(title: str, rows: dict[str, dict[str, object]], extra: str = "") -> None:
    print(f"\n{title}")
    print(f"| cell | steps | wall s | best val | test |{extra and f' {extra} |'}")
    print("|---|---:|---:|---:|---:|" + ("---:|" if extra else ""))
    for cell, r in rows.items():
        if "failed" in r:
            print(f"| {cell} | failed: {r['failed']} |")
            continue
        tail = f" {r['solved']:.0f} |" if extra else ""
        print(f"| {cell} | {r['steps']:.0f} | {r['wall']:.0f} | {r['val']:.4f} | "
              f"{r['test']:.4f} |{tail}", flush=True)


def quality_tables(args: argparse.Namespace) -> None:
    from rnnlab.core.paths import config_dir

    cells = args.cells
    missing = [c for c in cells
               if not (config_dir() / "model" / f"{c.split('+')[0]}.yaml").exists()]
    if missing:
        raise SystemExit(f"--cells: no conf/model/{missing[0]}.yaml; choose from the files "
                         f"in {config_dir() / 'model'}.")
    print(f"quality at equal wall time, each run alone, {machine()}")
    print(load_line("at start"))
    with tempfile.TemporaryDirectory() as tmp:
        if args.charlm_minutes > 0 or args.charlm_steps > 0:
            rows = {c: attempt(f"charlm {c}", lambda c=c: charlm_row(
                c, args.charlm_minutes, args.seed, Path(tmp) / f"charlm-{folder(c)}",
                args.charlm_steps)) for c in cells}
            cap = (f"{args.charlm_steps} steps" if args.charlm_steps
                   else f"{args.charlm_minutes:g} min")
            print_rows(f"charlm, experiment=charlm_shakespeare, {cap} each (nats/char; val: "
                       "every validation character, state carried)", rows)
        for steps in args.adding_lengths:
            rows = {c: attempt(f"adding T={steps} {c}", lambda c=c, steps=steps: adding_row(
                c, steps, args.adding_minutes, args.adding_hidden, args.seed,
                Path(tmp) / f"adding-{steps}-{folder(c)}")) for c in cells}
            print_rows(f"adding problem, T={steps}, hidden {args.adding_hidden}, "
                       f"{args.adding_minutes:g} min each (MSE; memoryless 0.167; solved: "
                       "test MSE < 10% of it)", rows, extra="solved")
    print(load_line("at end"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "quality", "all"], default="speed",
                        help="speed (the default: minutes), quality (about 80 minutes), all")
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048, 8192])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--charlm-minutes", type=float, default=10.0,
                        help="budget per cell on charlm (0 skips it)")
    parser.add_argument("--charlm-steps", type=int, default=0,
                        help="cap charlm by training steps instead (equal steps, not time)")
    parser.add_argument("--adding-minutes", type=float, default=3.0)
    parser.add_argument("--adding-lengths", type=int, nargs="*", default=[200, 400])
    parser.add_argument("--adding-hidden", type=int, default=128)
    parser.add_argument("--cells", nargs="+", default=[*NEW, *REFERENCE],
                        help="model= choices for the quality tables, each with optional "
                        "+-joined model overrides (mingru+block=residual)")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.part in ("speed", "all"):
        speed_table(args)
    if args.part in ("quality", "all"):
        quality_tables(args)


if __name__ == "__main__":
    main()
