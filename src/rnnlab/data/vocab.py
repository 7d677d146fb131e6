"""Vocabularies built from the training split only (never from val/test)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<s>", "</s>"


class Vocabulary:
    """Token <-> id mapping; ``<pad>`` is always id 0 so padding masks are ``ids == 0``."""

    def __init__(self, tokens: Sequence[str], specials: Sequence[str] = (PAD, UNK)) -> None:
        self.itos: list[str] = list(dict.fromkeys([*specials, *tokens]))
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}
        self.pad_id = self.stoi.get(PAD, 0)
        self.unk_id = self.stoi.get(UNK)
        #: training count per id (0 for specials, and for vocabularies not made by
        #: :meth:`build`): word dropout picks the rare words by it
        self.counts: list[int] = [0] * len(self.itos)

    @classmethod
    def build(cls, sequences: Iterable[Iterable[str]], min_freq: int = 1,
              max_size: int | None = None, specials: Sequence[str] = (PAD, UNK)) -> Vocabulary:
        """Most frequent first (ties broken alphabetically, so the ids are reproducible)."""
        counts: Counter[str] = Counter()
        for seq in sequences:
            counts.update(seq)
        kept = sorted((t for t, c in counts.items() if c >= min_freq and t not in specials),
                      key=lambda t: (-counts[t], t))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(specials))]
        vocab = cls(kept, specials)
        vocab.counts = [0 if t in specials else counts[t] for t in vocab.itos]
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, token: str) -> bool:
        return token in self.stoi

    def encode(self, tokens: Iterable[str]) -> list[int]:
        unk = self.unk_id
        if unk is None:
            return [self.stoi[t] for t in tokens]
        return [self.stoi.get(t, unk) for t in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.itos[i] for i in ids]

    def to_dict(self) -> dict:
        return {"itos": list(self.itos)}

    @classmethod
    def from_dict(cls, state: dict) -> Vocabulary:
        vocab = cls([], specials=())
        vocab.itos = list(state["itos"])
        vocab.stoi = {t: i for i, t in enumerate(vocab.itos)}
        vocab.pad_id = vocab.stoi.get(PAD, 0)
        vocab.unk_id = vocab.stoi.get(UNK)
        vocab.counts = [0] * len(vocab.itos)
        return vocab
