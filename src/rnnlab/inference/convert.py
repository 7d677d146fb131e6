"""Words or sentences -> pronunciations or translations with a trained encoder-decoder
(``rnnlab-convert`` and the served converter)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rnnlab.build import LoadedModel
from rnnlab.core.errors import ConfigError, DataError, UserError
from rnnlab.data.batching import pad_batch
from rnnlab.data.translate import split_source
from rnnlab.data.vocab import Vocabulary
from rnnlab.tasks.seq2seq import Seq2SeqTask


def require_seq2seq(loaded: LoadedModel, what: str = "rnnlab-convert") -> None:
    """Refuse a checkpoint whose module is no encoder-decoder, naming its task."""
    if not isinstance(loaded.module, Seq2SeqTask):
        task = loaded.config.get("task", {}).get("name", "?")
        raise UserError(f"the checkpoint was trained for task={task}; {what} needs a "
                        f"sequence-to-sequence checkpoint (task=g2p or task=translate).")


def convert(loaded: LoadedModel, inputs: Sequence[str], beam_size: int | None = None,
            batch_size: int = 64) -> list[list[str]]:
    """Output tokens for each input string, using a loaded seq2seq checkpoint."""
    require_seq2seq(loaded)
    state = loaded.data_state
    if beam_size is not None and beam_size < 1:
        raise ConfigError(f"--beam must be at least 1 (1 = greedy search), got {beam_size}.")
    vocab = Vocabulary.from_dict(state["src_vocab"])
    tokenizer = loaded.spec.tokenizer
    encoded = []
    for i, text in enumerate(inputs, 1):
        tokens = split_source(text, tokenizer, bool(state.get("lowercase", True)))
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
