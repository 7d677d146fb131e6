"""``rnnlab-tag CKPT --text "..."`` / ``--file F``: tag raw text with a trained NER model.

Prints one ``token<TAB>tag`` line per token, then the entity spans found, per sentence.
Text is split as the training data was: into characters for character-level corpora
(MSRA Chinese), into whitespace-separated tokens otherwise (``--chars`` / ``--words``
override). With ``--file`` every non-empty line is one sentence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rnnlab.core.errors import UserError
from rnnlab.data.ner import SentenceEncoder
from rnnlab.data.tables import read_text_file
from rnnlab.inference import load_checkpoint
from rnnlab.inference.tagging import split_text, tag_sentences
from rnnlab.metrics.spans import bio_spans


def render(tokens: list[str], tags: list[str], char_level: bool) -> str:
    joiner = "" if char_level else " "
    lines = [f"{tok}\t{tag}" for tok, tag in zip(tokens, tags, strict=True)]
    spans = bio_spans(tags)
    lines.append("entities: " + ("; ".join(f"{typ} [{s}:{e}] {joiner.join(tokens[s:e])}"
                                            for typ, s, e in spans) if spans else "(none)"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="rnnlab-tag", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="a .ckpt written by train.py task=ner, or a "
                                           "registered model: models:/rnnlab-ner@champion")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="one sentence to tag")
    src.add_argument("--file", help="a UTF-8 text file, one sentence per line")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--chars", action="store_true", help="split text into characters")
    split.add_argument("--words", action="store_true", help="split text on whitespace")
    args = parser.parse_args(argv)
    try:
        loaded = load_checkpoint(args.checkpoint)
        state = loaded.data_state
        if "tag_names" not in state or not hasattr(loaded.module, "predict_tags"):
            raise UserError(f"checkpoint {args.checkpoint} was trained on task="
                            f"{loaded.config.task.name}, not task=ner; pass a NER checkpoint.")
        char_level = True if args.chars else False if args.words else bool(state.get("char_level"))
        lines = [args.text] if args.text is not None else \
            read_text_file(Path(args.file)).splitlines()
        sentences = [split_text(line, char_level) for line in lines]
        sentences = [s for s in sentences if s]
        if not sentences:
            raise UserError("there is no text to tag; give a non-empty --text or --file.")
        tags = tag_sentences(loaded.module, SentenceEncoder.from_state(state), sentences)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("\n\n".join(render(s, t, char_level) for s, t in zip(sentences, tags, strict=True)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
