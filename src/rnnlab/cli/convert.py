"""``rnnlab-convert CKPT WORD ...``: pronounce words (g2p) or translate sentences.

Reads the inputs from the command line or, with ``--file``, one per line; prints
``input<TAB>output`` per input. ``--ensemble`` adds checkpoints that decode together with
the first. Everything needed (vocabularies, the tokenizer the data module declared, search
settings) comes from the checkpoint, so neither configs nor training data are needed; the
command serves any sequence-to-sequence checkpoint without asking which task it was.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rnnlab.core.errors import DataError, UserError
from rnnlab.data.tables import read_text_file
from rnnlab.inference import load_checkpoint
from rnnlab.inference.convert import convert, require_seq2seq
from rnnlab.tasks.seq2seq import load_members


def read_inputs(path: str) -> list[str]:
    """Non-empty lines of ``path``; an empty line inside the file is an error (file:line)."""
    lines = read_text_file(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{path}, line {n}: the line is empty; give one input per line.")
    if not lines:
        raise DataError(f"{path} is empty; give one word or sentence per line.")
    return [line.strip() for line in lines]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="rnnlab-convert",
        description="Pronounce words (g2p) or translate sentences with a trained checkpoint.")
    parser.add_argument("checkpoint", help="a .ckpt written by train.py (task=g2p or "
                                           "translate), or a registered model: "
                                           "models:/rnnlab-g2p@champion")
    parser.add_argument("inputs", nargs="*", help="words or sentences (quote sentences)")
    parser.add_argument("--file", help="read inputs from this file, one per line")
    parser.add_argument("--beam", type=int, default=None,
                        help="beam size (default: the training config's task.beam_size)")
    parser.add_argument("--ensemble", nargs="+", default=[], metavar="CKPT",
                        help="more checkpoints of the same task and data, decoding together "
                             "with the first (their next-token probabilities averaged)")
    args = parser.parse_intermixed_args(argv)
    try:
        if bool(args.inputs) == bool(args.file):
            raise UserError("give the inputs either on the command line or with --file (exactly "
                            "one of the two).")
        inputs = read_inputs(args.file) if args.file else list(args.inputs)
        loaded = load_checkpoint(args.checkpoint)
        if args.ensemble:
            require_seq2seq(loaded, "--ensemble")
            loaded.module.use_ensemble(load_members(args.ensemble, loaded.data_state,
                                                    load_checkpoint, "--ensemble"))
        outputs = convert(loaded, inputs, args.beam)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for text, out in zip(inputs, outputs, strict=True):
        print(f"{text}\t{' '.join(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
