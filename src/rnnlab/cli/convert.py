"""``rnnlab-convert CKPT WORD ...``: pronounce words (g2p) or translate sentences.

Reads the inputs from the command line or, with ``--file``, one per line; prints
``input<TAB>output`` per input. ``--ensemble`` adds checkpoints that decode together with
the first. Everything needed (vocabularies, tokenization, search
settings) comes from the checkpoint, so neither configs nor training data are needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from rnnlab.errors import ConfigError, DataError, UserError

KINDS = ("g2p", "translate")


def read_inputs(path: str) -> list[str]:
    """Non-empty lines of ``path``; an empty line inside the file is an error (file:line)."""
    from rnnlab.data.tables import read_text_file

    lines = read_text_file(path).splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            raise DataError(f"{path}, line {n}: the line is empty; give one input per line.")
    if not lines:
        raise DataError(f"{path} is empty; give one word or sentence per line.")
    return [line.strip() for line in lines]


def source_tokens(kind: str, text: str, lowercase: bool) -> list[str]:
    """Split raw input exactly as the training data was split."""
    if kind == "g2p":
        text = text.strip()
        return list(text.lower() if lowercase else text)
    from rnnlab.data.translate import tokenize_words

    return tokenize_words(text, lowercase)


def convert(loaded, inputs: Sequence[str], beam_size: int | None = None,
            batch_size: int = 64) -> list[list[str]]:
    """Output tokens for each input string, using a loaded seq2seq checkpoint."""
    from rnnlab.data.batching import pad_batch
    from rnnlab.data.vocab import Vocabulary

    state = loaded.data_state
    kind = state.get("kind")
    if kind not in KINDS:
        task = loaded.config.get("task", {}).get("name", "?")
        raise UserError(f"the checkpoint was trained for task={task}; rnnlab-convert needs a "
                        f"task=g2p or task=translate checkpoint.")
    if beam_size is not None and beam_size < 1:
        raise ConfigError(f"--beam must be at least 1 (1 = greedy search), got {beam_size}.")
    vocab = Vocabulary.from_dict(state["src_vocab"])
    encoded = []
    for i, text in enumerate(inputs, 1):
        tokens = source_tokens(kind, text, bool(state.get("lowercase", True)))
        if not tokens:
            raise DataError(f"input {i} ({text!r}) is empty; give a word or sentence.")
        encoded.append(torch.tensor(vocab.encode(tokens), dtype=torch.long))
    module = loaded.module
    outputs: list[list[str]] = []
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            x, lengths = pad_batch(encoded[start: start + batch_size], vocab.pad_id)
            outputs.extend(module.decode(x, lengths, beam_size))
    return outputs


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
        from rnnlab.checkpoint import load_checkpoint

        loaded = load_checkpoint(args.checkpoint)
        if args.ensemble:
            from rnnlab.tasks.seq2seq import load_members

            if not hasattr(loaded.module, "use_ensemble"):
                raise UserError(f"--ensemble needs a task=g2p or task=translate checkpoint; "
                                f"{args.checkpoint} is not one.")
            loaded.module.use_ensemble(load_members(args.ensemble, loaded.data_state,
                                                    "--ensemble"))
        outputs = convert(loaded, inputs, args.beam)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for text, out in zip(inputs, outputs, strict=True):
        print(f"{text}\t{' '.join(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
