"""``rnnlab-transcribe CKPT a.wav b.wav ...`` / ``--manifest M.csv``: transcribe audio with a
trained transcriber (a task=asr CTC or a task=asr_attention checkpoint).

Prints ``path<TAB>transcript`` per file. With ``--manifest`` (the training manifest's
``path,transcript`` layout) each line also carries the reference, and a last line gives
the label error rate over the files. MFCC settings and normalisation come from the
checkpoint, so neither configs nor training data are needed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rnnlab.core.errors import UserError
from rnnlab.data.asr import check_transcript, read_manifest
from rnnlab.inference import load_checkpoint
from rnnlab.inference.transcribe import require_ctc, transcribe_wavs
from rnnlab.metrics.ctc import edit_counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnnlab-transcribe",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py task=asr or task=asr_attention, or a "
                                           "registered model: models:/rnnlab-asr@champion")
    parser.add_argument("wavs", nargs="*", help="WAV files")
    parser.add_argument("--manifest", help="a CSV with columns path,transcript (paths "
                                           "relative to it): transcribe and score its files")
    parser.add_argument("--beam", type=int, default=None,
                        help="prefix beam width (default: the checkpoint's "
                             "task.decode.beam_size; 1 = greedy)")
    args = parser.parse_intermixed_args(argv)
    try:
        if bool(args.wavs) == bool(args.manifest):
            raise UserError("give WAV files either on the command line or with --manifest "
                            "(exactly one of the two).")
        loaded = load_checkpoint(args.checkpoint)
        module = require_ctc(loaded)
        refs: list[str] = []
        paths: list[Path] = [Path(p) for p in args.wavs]
        if args.manifest:
            rows = read_manifest(Path(args.manifest), "--manifest")
            alphabet = "".join(module.alphabet)
            refs = [check_transcript(text, alphabet, f"{args.manifest}, row {n}")
                    for n, _, text in rows]
            paths = [wav for _, wav, _ in rows]
        hyps = transcribe_wavs(loaded, paths, args.beam)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for i, (path, hyp) in enumerate(zip(paths, hyps, strict=True)):
        print(f"{path}\t{hyp}" + (f"\t{refs[i]}" if refs else ""))
    if refs:
        edits, lengths = edit_counts([list(h) for h in hyps], [list(r) for r in refs])
        print(f"label error rate: {sum(edits) / max(sum(lengths), 1):.4f} "
              f"({sum(edits)} edits over {sum(lengths)} symbols, "
              f"{sum(e == 0 for e in edits)}/{len(refs)} transcripts exact)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
