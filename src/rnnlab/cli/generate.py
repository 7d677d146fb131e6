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

from rnnlab.errors import UserError


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


def generate_text(checkpoint: str, prompt: str = "\n", length: int = 500,
                  temperature: float = 0.8, top_k: int = 0, seed: int = 1,
                  device: str = "cpu") -> str:
    """The prompt followed by ``length`` sampled characters (a ``task=charlm`` checkpoint)."""
    from rnnlab.checkpoint import load_checkpoint

    return _charlm_text(load_checkpoint(checkpoint, map_location=device), checkpoint, prompt,
                        length, temperature, top_k, seed, device)


def generate_names(checkpoint: str, category: str, n: int = 10, temperature: float = 0.8,
                   seed: int = 1, prefix: str = "", max_len: int | None = None,
                   device: str = "cpu") -> list[str]:
    """``n`` sampled names of ``category`` (a ``task=names`` checkpoint)."""
    from rnnlab.checkpoint import load_checkpoint

    return _names(load_checkpoint(checkpoint, map_location=device), checkpoint, category, n,
                  temperature, seed, prefix, max_len, device)


def _charlm_text(loaded, checkpoint: str, prompt: str, length: int, temperature: float,
                 top_k: int, seed: int, device: str) -> str:
    from rnnlab.tasks.language_model import LanguageModelTask, check_sampling, encode_prompt

    check_sampling(temperature, top_k)
    if length < 0:
        raise UserError(f"--length must be 0 or more characters, got {length}.")
    module = loaded.module
    if not isinstance(module, LanguageModelTask):
        raise UserError(f"checkpoint {checkpoint} holds a task={loaded.config.task.name} model; "
                        f"rnnlab-generate needs one trained with task=charlm or task=names.")
    module.to(device)
    ids = encode_prompt(prompt, module.itos, module.unk_id)
    return prompt + module.decode(module.generate(ids, length, temperature, top_k, seed))


def _names(loaded, checkpoint: str, category: str | None, n: int, temperature: float,
           seed: int, prefix: str, max_len: int | None, device: str) -> list[str]:
    module = loaded.module
    if category is None:
        raise UserError(f"checkpoint {checkpoint} generates names of a category; pass "
                        f"--category, one of {', '.join(module.categories)}.")
    if max_len is not None and max_len < 1:
        raise UserError(f"--length must be at least 1 character per name, got {max_len}.")
    module.to(device)
    return module.generate(category, n, temperature, seed, prefix, max_len)


def run_generate(args: argparse.Namespace) -> str:
    """The text ``main`` prints: charlm text, or one name per line."""
    from rnnlab.checkpoint import load_checkpoint
    from rnnlab.tasks.names import NamesTask

    loaded = load_checkpoint(args.checkpoint, map_location=args.device)
    if isinstance(loaded.module, NamesTask):
        names = _names(loaded, args.checkpoint, args.category, args.n, args.temperature,
                       args.seed, args.prompt or "", args.length, args.device)
        return "\n".join(names) + "\n"
    if args.category is not None:
        raise UserError(f"--category is for task=names checkpoints, and {args.checkpoint} "
                        f"holds a task={loaded.config.task.name} model; give it a --prompt "
                        f"instead.")
    prompt = "\n" if args.prompt is None else args.prompt
    length = 500 if args.length is None else args.length
    return _charlm_text(loaded, args.checkpoint, prompt, length, args.temperature, args.top_k,
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
