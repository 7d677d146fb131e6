"""The linear-chain CRF against brute force on tiny cases."""

from __future__ import annotations

import itertools

import torch

from rnnlab.models.crf import LinearChainCRF, bio_constraints

TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def _crf(constrained: bool, seed: int = 0) -> LinearChainCRF:
    torch.manual_seed(seed)
    crf = LinearChainCRF(len(TAGS), TAGS if constrained else None)
    with torch.no_grad():
        for p in crf.parameters():
            p.normal_()
    return crf


def test_all_paths_sum_to_one_with_padding() -> None:
    for constrained in (False, True):
        crf = _crf(constrained)
        em = torch.randn(2, 4, len(TAGS))
        mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)
        for b, n in ((0, 4), (1, 2)):
            total = 0.0
            for path in itertools.product(range(len(TAGS)), repeat=n):
                tags = torch.zeros(2, 4, dtype=torch.long)
                tags[b, :n] = torch.tensor(path)
                total += crf.log_likelihood(em, tags, mask)[b].exp().item()
            assert abs(total - 1.0) < 1e-4


def test_viterbi_equals_brute_force() -> None:
    for constrained in (False, True):
        for seed in range(3):
            crf = _crf(constrained, seed)
            em = torch.randn(3, 4, len(TAGS))
            mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]], dtype=torch.bool)
            decoded = crf.decode(em, mask)
            for b, n in enumerate(mask.sum(1).tolist()):
                best, best_path = None, None
                for path in itertools.product(range(len(TAGS)), repeat=n):
                    tags = torch.zeros(3, 4, dtype=torch.long)
                    tags[b, :n] = torch.tensor(path)
                    s = crf.score(em, tags, mask)[b].item()
                    if best is None or s > best:
                        best, best_path = s, list(path)
                assert decoded[b] == best_path


def test_constraints_forbid_invalid_bio_moves() -> None:
    start, trans = bio_constraints(TAGS)
    assert start.tolist() == [True, True, False, True, False]
    o, bp, ip, bl, il = range(5)
    assert not trans[o, ip] and not trans[bl, ip] and not trans[il, ip]
    assert trans[bp, ip] and trans[ip, ip] and trans[ip, o] and trans[o, bl]
    # even with emissions pushing hard for I-PER everywhere, the decoded path stays valid
    crf = LinearChainCRF(len(TAGS), TAGS)
    em = torch.zeros(1, 3, len(TAGS))
    em[0, :, ip] = 5.0
    em[0, 0, bp] = 1.0
    path = crf.decode(em, torch.ones(1, 3, dtype=torch.bool))[0]
    assert path == [bp, ip, ip]


def test_gradient_reaches_transitions() -> None:
    crf = _crf(True)
    em = torch.randn(2, 5, len(TAGS), requires_grad=True)
    tags = torch.tensor([[1, 2, 0, 3, 4], [0, 1, 2, 0, 0]])
    mask = torch.ones(2, 5, dtype=torch.bool)
    (-crf.log_likelihood(em, tags, mask).sum()).backward()
    assert crf.transitions.grad is not None and em.grad.abs().sum() > 0
