"""``rnnlab-generate CKPT --prompt "ROMEO:" --length 500 --temperature 0.8 --seed 1``.

Samples text from a character language model trained with ``task=charlm``. The checkpoint
alone is enough (it carries the config and the vocabulary). The same checkpoint, prompt,
settings and seed always give the same text. Prompt characters never seen in training are
read as ``<unk>`` with a warning; the text goes to stdout, messages to stderr.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from rnnlab.errors import UserError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="rnnlab-generate", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a .ckpt written by train.py with task=charlm")
    parser.add_argument("--prompt", default="\n",
                        help="text to continue (default: a new line)")
    parser.add_argument("--length", type=int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=float, default=0.8,
                        help="> 0; lower is more conservative, 1.0 samples the model as is")
    parser.add_argument("--top-k", type=int, default=0,
                        help="sample among the k likeliest characters only (0: all)")
    parser.add_argument("--seed", type=int, default=1, help="same seed, same text")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    return parser.parse_args(argv)


def generate_text(checkpoint: str, prompt: str = "\n", length: int = 500,
                  temperature: float = 0.8, top_k: int = 0, seed: int = 1,
                  device: str = "cpu") -> str:
    """The prompt followed by ``length`` sampled characters."""
    from rnnlab.checkpoint import load_checkpoint
    from rnnlab.tasks.language_model import LanguageModelTask, check_sampling, encode_prompt

    check_sampling(temperature, top_k)
    if length < 0:
        raise UserError(f"--length must be 0 or more characters, got {length}.")
    loaded = load_checkpoint(checkpoint, map_location=device)
    module = loaded.module
    if not isinstance(module, LanguageModelTask):
        raise UserError(f"checkpoint {checkpoint} holds a task={loaded.config.task.name} model; "
                        f"rnnlab-generate needs one trained with task=charlm.")
    module.to(device)
    ids = encode_prompt(prompt, module.itos, module.unk_id)
    return prompt + module.decode(module.generate(ids, length, temperature, top_k, seed))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # library noise; our own warning is re-raised below
        warnings.filterwarnings("default", message="the prompt has characters")
        warnings.showwarning = _plain_warning
        try:
            text = generate_text(args.checkpoint, args.prompt, args.length, args.temperature,
                                 args.top_k, args.seed, args.device)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def _plain_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
