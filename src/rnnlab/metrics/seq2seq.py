"""Scores for sequence-to-sequence output: edit distances for g2p, BLEU/chrF for translation.

G2P is scored per word against *every* accepted pronunciation: a word is right when the
prediction equals any variant (WER), and its phoneme errors are counted against the
closest variant (PER = total edits / total reference phonemes), the usual convention
for CMUdict. ``stressless`` drops ARPAbet stress digits (``AH0`` -> ``AH``) from both
sides first, which separates "wrong sounds" from "right sounds, stress misplaced" and gives
the stress-free figures that part of the G2P literature reports. Translation uses
sacrebleu so figures are comparable with published ones.
"""

from __future__ import annotations

from collections.abc import Sequence


def edit_distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two token sequences (insert, delete, substitute = 1)."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ta in enumerate(a, 1):
        cur = [i]
        for j, tb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ta != tb)))
        prev = cur
    return prev[-1]


def closest_reference(hyp: Sequence[str], refs: Sequence[Sequence[str]]) -> tuple[int, int]:
    """(edits, reference length) against the reference with the fewest edits."""
    if not refs:
        raise ValueError("every prediction needs at least one reference")
    return min((edit_distance(hyp, r), len(r)) for r in refs)


def g2p_scores(hyps: Sequence[Sequence[str]],
               refs: Sequence[Sequence[Sequence[str]]]) -> dict[str, float]:
    """Word error rate and phoneme error rate, each hypothesis against all its variants."""
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} reference sets")
    if not hyps:
        return {"wer": 0.0, "per": 0.0}
    wrong = edits = total = 0
    for hyp, variants in zip(hyps, refs, strict=True):
        e, n = closest_reference(hyp, variants)
        wrong += e > 0
        edits += e
        total += n
    return {"wer": wrong / len(hyps), "per": edits / max(total, 1)}


def strip_stress(phonemes: Sequence[str]) -> list[str]:
    """``["T", "AH0", "M", "EY1"]`` -> ``["T", "AH", "M", "EY"]`` (ARPAbet vowels end in 0-2)."""
    return [p[:-1] if len(p) > 1 and p[-1] in "012" else p for p in phonemes]


def stressless_g2p_scores(hyps: Sequence[Sequence[str]],
                          refs: Sequence[Sequence[Sequence[str]]]) -> dict[str, float]:
    """``g2p_scores`` with stress digits removed from predictions and every variant."""
    return g2p_scores([strip_stress(h) for h in hyps],
                      [[strip_stress(v) for v in variants] for variants in refs])


def translation_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and chrF (sacrebleu, 0-100), one reference each.

    The lab's inputs are space-joined tokens on both sides, so sacrebleu's 13a
    tokenizer changes nothing and ``force=True`` only silences its detokenization warning.
    """
    # sacrebleu: only the BLEU/chrF of a corpus
    import sacrebleu

    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} hypotheses but {len(refs)} references")
    if not hyps:
        return {"bleu": 0.0, "chrf": 0.0}
    bleu = sacrebleu.corpus_bleu(list(hyps), [list(refs)], force=True)
    chrf = sacrebleu.corpus_chrf(list(hyps), [list(refs)])
    return {"bleu": float(bleu.score), "chrf": float(chrf.score)}
