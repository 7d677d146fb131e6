"""``rnnlab-generate CKPT --prompt "ROMEO:"`` or ``rnnlab-generate CKPT --category French``.

Samples from a generator trained with ``task=charlm`` (text continuing a prompt) or with
``task=names`` (``--n`` names of one category, one per line; ``--prompt`` is then the
start every name shares). The checkpoint alone is enough (it carries the config and the
vocabulary). The same checkpoint, settings and seed always give the same output. The
text goes to stdout, messages to stderr.

    rnnlab-generate CKPT --prompt "ROMEO:" --length 500 --temperature 0.8 --seed 1
    rnnlab-generate CKPT --category French --n 10 --temperature 0.8
"""

from __future__ import annotations

import argparse
import sys
import warnings

from rnnlab.core.errors import UserError
from rnnlab.inference import load_checkpoint
from rnnlab.inference.sampling import charlm_text, sample_names
from rnnlab.tasks.names import NamesTask


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rnnlab-generate", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py with task=charlm or "
                                           "task=names, or a registered model: "
                                           "models:/rnnlab-charlm@champion")
    parser.add_argument("--prompt", default=None,
                        help="charlm: text to continue (default: a new line); names: the "
                             "start of every name (default: none)")
    parser.add_argument("--length", type=int, default=None,
                        help="charlm: characters to generate (default 500); names: the most "
                             "characters per name (default: the training max_len)")
    parser.add_argument("--category", default=None,
                        help="names: the category (language) to generate, e.g. French")
    parser.add_argument("--n", type=int, default=10, help="names: how many names")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="> 0; lower is more conservative, 1.0 samples the model as is")
    parser.add_argument("--top-k", type=int, default=0,
                        help="charlm: sample among the k likeliest characters only (0: all)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same output")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser.parse_args(argv)


def run_generate(args: argparse.Namespace) -> str:
    """The text ``main`` prints: charlm text, or one name per line."""
    loaded = load_checkpoint(args.checkpoint, map_location=args.device)
    if isinstance(loaded.module, NamesTask):
        names = sample_names(loaded, args.checkpoint, args.category, args.n, args.temperature,
                       args.seed, args.prompt or "", args.length, args.device)
        return "\n".join(names) + "\n"
    if args.category is not None:
        raise UserError(f"--category is for task=names checkpoints, and {args.checkpoint} "
                        f"holds a task={loaded.config.task.name} model; give it a --prompt "
                        f"instead.")
    prompt = "\n" if args.prompt is None else args.prompt
    length = 500 if args.length is None else args.length
    return charlm_text(loaded, args.checkpoint, prompt, length, args.temperature, args.top_k,
                        args.seed, args.device)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library noise; our own warning is re-raised below
        warnings.filterwarnings("default", message="the prompt has characters")
        warnings.showwarning = _plain_warning
        try:
            text = run_generate(args)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
