"""Packed vs padded recurrent passes on length-bucketed and on random batches.

Why: ``RecurrentEncoder(pack="auto")`` runs unidirectional batches padded (exact for
every real step) and packs only bidirectional ones (or when the final state is needed).
This measures what that choice costs or saves, forward + backward, on the sentiment
length distribution, with and without bucketing, side by side in one run.

    python bench/packed_vs_padded.py [--batches 30] [--hidden 256]
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from rnnlab.data.batching import BucketBatchSampler
from rnnlab.models import RecurrentEncoder


def lengths_like_sentiment(n: int, seed: int = 0) -> list[int]:
    """Snippet lengths: roughly 5..50 tokens, mean ~21 (as the Rotten Tomatoes corpus)."""
    rng = random.Random(seed)
    return [max(2, min(60, int(rng.gauss(21, 9)))) for _ in range(n)]


def batches(lengths: list[int], batch_size: int, bucketed: bool) -> list[list[int]]:
    if bucketed:
        return list(BucketBatchSampler(lengths, batch_size, shuffle=True, seed=0))
    idx = list(range(len(lengths)))
    random.Random(0).shuffle(idx)
    return [idx[i: i + batch_size] for i in range(0, len(idx), batch_size)]


def time_pass(enc: RecurrentEncoder, plan: list[list[int]], lengths: list[int], vocab: int) -> float:
    """Real tokens per second over forward + backward on every batch of ``plan``."""
    tokens = 0
    start = time.perf_counter()
    for b in plan:
        lens = torch.tensor([lengths[i] for i in b])
        x = torch.randint(1, vocab, (len(b), int(lens.max())))
        out = enc(x, lens)
        out.last.sum().backward()
        tokens += int(lens.sum())
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    torch.manual_seed(0)
    lengths = lengths_like_sentiment(args.batches * args.batch_size)
    print(f"{'cell':<6} {'bidir':<6} {'batching':<9} {'padded tok/s':>13} {'packed tok/s':>13} "
          f"{'packed/padded':>14} {'real/processed':>15}")
    for cell in ("lstm", "gru"):
        for bidirectional in (False, True):
            for bucketed in (True, False):
                plan = batches(lengths, args.batch_size, bucketed)
                eff = sum(lengths) / sum(max(lengths[i] for i in b) * len(b) for b in plan)
                speeds = {}
                for pack in ("never", "always"):
                    enc = RecurrentEncoder(cell, hidden_size=args.hidden, embedding_dim=128,
                                           vocab_size=10_000, bidirectional=bidirectional,
                                           pack=pack)
                    time_pass(enc, plan[:3], lengths, 10_000)  # warm-up
                    speeds[pack] = time_pass(enc, plan, lengths, 10_000)
                print(f"{cell:<6} {bidirectional!s:<6} {'bucketed' if bucketed else 'random':<9} "
                      f"{speeds['never']:>13.0f} {speeds['always']:>13.0f} "
                      f"{speeds['always'] / speeds['never']:>14.2f} {eff:>15.3f}")
    print("padded bidirectional rows are for speed only: their backward direction reads "
          "padding first, which is why pack=auto packs them.")


if __name__ == "__main__":
    main()
