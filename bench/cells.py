"""Training speed of the scanned cells (minGRU, minLSTM) against the fused LSTM and GRU.

Why: minGRU and minLSTM (Feng et al. 2024) give up state-dependent gates so that
training can read all steps at once (a log-space scan) instead of stepping through
time. This measures what that buys on this machine's CPU: training tokens per second
(forward, backward and an Adam step of a ``RecurrentEncoder`` over real-valued frames,
full-length batches) at several sequence lengths, side by side in one run, with the
machine load printed (shared machines move these numbers).

    python bench/cells.py [--lengths 128 512 2048] [--batch 32] [--hidden 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable
from datetime import date

import torch

from rnnlab.models import RecurrentEncoder
from rnnlab.models.cells import get_cell

SCANNED = ("mingru", "minlstm")
FUSED = ("lstm", "gru")


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cells = [*SCANNED, *FUSED]
    for cell in cells:
        get_cell(cell)  # a clear error if a cell is missing from the registry
    load = os.getloadavg()
    print(f"training tokens/s, batch {args.batch}, hidden {args.hidden}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {date.today()}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"| {'T':>5} | " + " | ".join(f"{c:>9}" for c in cells) + " | minGRU/GRU | minLSTM/LSTM |")
    print("|" + "---:|" * (len(cells) + 3))
    for steps in args.lengths:
        speed = tokens_per_second(cells, steps, args.batch, args.hidden, args.repeats)
        print(f"| {steps:>5} | " + " | ".join(f"{speed[c]:>9.0f}" for c in cells)
              + f" | {speed['mingru'] / speed['gru']:>10.2f} | "
              f"{speed['minlstm'] / speed['lstm']:>12.2f} |", flush=True)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
