"""A linear-chain CRF over per-token emission scores (Lafferty et al. 2001; Lample et al. 2016).

The CRF scores whole tag sequences, so the model learns that ``I-PER`` follows ``B-PER``
rather than predicting each token alone. Transitions that IOB2 forbids (``O -> I-X``,
start ``-> I-X``, ``B-X/I-X -> I-Y`` with ``Y != X``) are fixed to a large negative score,
so neither training nor Viterbi decoding ever puts mass on them.

Everything is vectorised over the batch; only the recursion over time is a loop, as in
every forward-algorithm / Viterbi implementation (each step depends on the previous).
Padding is handled with a mask: a padded step carries the previous scores unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

FORBIDDEN = -10_000.0


def bio_constraints(tag_names: Sequence[str]) -> tuple[Tensor, Tensor]:
    """Boolean (allowed_start (K,), allowed_transition (K, K)) for IOB2 tags."""
    k = len(tag_names)
    start = torch.ones(k, dtype=torch.bool)
    trans = torch.ones(k, k, dtype=torch.bool)
    for j, to in enumerate(tag_names):
        if not to.startswith("I-"):
            continue
        start[j] = False
        for i, frm in enumerate(tag_names):
            trans[i, j] = frm != "O" and frm[2:] == to[2:] and frm[:2] in ("B-", "I-")
    return start, trans


class LinearChainCRF(nn.Module):
    """Transition scores, negative log-likelihood and Viterbi decoding.

    Args:
        num_tags: K.
        tag_names: if given (IOB2 names), invalid moves are forbidden as described above.
    """

    def __init__(self, num_tags: int, tag_names: Sequence[str] | None = None) -> None:
        super().__init__()
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(num_tags))
        self.end = nn.Parameter(torch.zeros(num_tags))
        if tag_names is not None:
            allowed_start, allowed = bio_constraints(tag_names)
        else:
            allowed_start, allowed = torch.ones(num_tags, dtype=torch.bool), \
                torch.ones(num_tags, num_tags, dtype=torch.bool)
        self.register_buffer("start_penalty", (~allowed_start).float() * FORBIDDEN)
        self.register_buffer("trans_penalty", (~allowed).float() * FORBIDDEN)

    def _trans(self) -> tuple[Tensor, Tensor]:
        return self.start + self.start_penalty, self.transitions + self.trans_penalty

    def score(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Unnormalised score of the given paths: (B,)."""
        start, trans = self._trans()
        b, t, _ = emissions.shape
        tags = tags.masked_fill(~mask, 0)
        maskf = mask.to(emissions.dtype)
        emit = emissions.gather(2, tags.unsqueeze(-1)).squeeze(-1)  # (B, T)
        total = start[tags[:, 0]] + (emit * maskf).sum(1)
        if t > 1:
            step = trans[tags[:, :-1], tags[:, 1:]]  # (B, T-1)
            total = total + (step * maskf[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1).clamp(min=0).unsqueeze(1)).squeeze(1)
        return total + self.end[last]

    def log_partition(self, emissions: Tensor, mask: Tensor) -> Tensor:
        """log of the sum over all paths of exp(score): the forward algorithm, (B,)."""
        start, trans = self._trans()
        alpha = start.unsqueeze(0) + emissions[:, 0]  # (B, K)
        for i in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha.unsqueeze(2) + trans.unsqueeze(0), dim=1) + emissions[:, i]
            alpha = torch.where(mask[:, i].unsqueeze(1), nxt, alpha)
        return torch.logsumexp(alpha + self.end.unsqueeze(0), dim=1)

    def log_likelihood(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """log p(tags | emissions) for each sequence, (B,). ``mask[:, 0]`` must be all true."""
        return self.score(emissions, tags, mask) - self.log_partition(emissions, mask)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """The best path of each sequence (Viterbi), cut to its real length."""
        start, trans = self._trans()
        b, t, k = emissions.shape
        score = start.unsqueeze(0) + emissions[:, 0]
        pointers = []
        for i in range(1, t):
            cand = score.unsqueeze(2) + trans.unsqueeze(0)  # (B, from, to)
            best, idx = cand.max(dim=1)
            nxt = best + emissions[:, i]
            keep = mask[:, i].unsqueeze(1)
            score = torch.where(keep, nxt, score)
            # a padded step points each tag to itself, so backtracking passes through it
            same = torch.arange(k, device=emissions.device).expand(b, k)
            pointers.append(torch.where(keep, idx, same))
        score = score + self.end.unsqueeze(0)
        last = score.argmax(1)
        path = [last]
        for ptr in reversed(pointers):
            last = ptr.gather(1, last.unsqueeze(1)).squeeze(1)
            path.append(last)
        full = torch.stack(path[::-1], dim=1).tolist()
        lengths = mask.sum(1).tolist()
        return [row[:n] for row, n in zip(full, lengths, strict=True)]
