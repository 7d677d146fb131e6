"""Sampling from trained generators: text continuing a prompt (``task=charlm``) and names
of a category (``task=names``); ``rnnlab-generate`` and the served generators call these."""

from __future__ import annotations

from rnnlab.build import LoadedModel
from rnnlab.core.errors import UserError
from rnnlab.inference import load_checkpoint
from rnnlab.tasks.language_model import LanguageModelTask, check_sampling, encode_prompt


def generate_text(checkpoint: str, prompt: str = "\n", length: int = 500,
                  temperature: float = 0.8, top_k: int = 0, seed: int = 1,
                  device: str = "cpu") -> str:
    """The prompt followed by ``length`` sampled characters (a ``task=charlm`` checkpoint)."""
    return charlm_text(load_checkpoint(checkpoint, map_location=device), checkpoint, prompt,
                        length, temperature, top_k, seed, device)


def generate_names(checkpoint: str, category: str, n: int = 10, temperature: float = 0.8,
                   seed: int = 1, prefix: str = "", max_len: int | None = None,
                   device: str = "cpu") -> list[str]:
    """``n`` sampled names of ``category`` (a ``task=names`` checkpoint)."""
    return sample_names(load_checkpoint(checkpoint, map_location=device), checkpoint, category, n,
                  temperature, seed, prefix, max_len, device)


def charlm_text(loaded: LoadedModel, checkpoint: str, prompt: str, length: int, temperature: float,
                 top_k: int, seed: int, device: str) -> str:
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


def sample_names(loaded: LoadedModel, checkpoint: str, category: str | None, n: int, temperature: float,
           seed: int, prefix: str, max_len: int | None, device: str) -> list[str]:
    module = loaded.module
    if category is None:
        raise UserError(f"checkpoint {checkpoint} generates names of a category; pass "
                        f"--category, one of {', '.join(module.categories)}.")
    if max_len is not None and max_len < 1:
        raise UserError(f"--length must be at least 1 character per name, got {max_len}.")
    module.to(device)
    return module.generate(category, n, temperature, seed, prefix, max_len)
