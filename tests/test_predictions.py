"""predictions/test.parquet: one row per test example, whose scores give the logged metric."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import (
    FAST,
    seasonal_values,
    tiny_run_parts,
    write_cmudict,
    write_conll,
    write_pairs,
    write_sentiment_csv,
    write_series_csv,
    write_text,
)
from mlflow.tracking import MlflowClient

from rnnlab.report.stats import metric_value
from rnnlab.run.train import run

COLUMNS = {"example", "input", "gold", "prediction", "score"}


def _predictions(root: Path, experiment: str) -> tuple[pd.DataFrame, dict, dict]:
    """The newest run's predictions table, its JSON description and the run's metrics."""
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    r = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])[0]
    out = root / "downloaded"
    table = pd.read_parquet(client.download_artifacts(r.info.run_id, "predictions/test.parquet",
                                                      str(out)))
    meta = json.loads(Path(client.download_artifacts(r.info.run_id, "predictions/test.json",
                                                     str(out))).read_text())
    return table, meta, r.data.metrics


def _check(table: pd.DataFrame, meta: dict, metrics: dict, n_test: int | None) -> None:
    assert set(table.columns) >= COLUMNS
    if n_test is not None:
        assert len(table) == n_test == meta["examples"] and not meta["sampled"]
    assert table["example"].is_unique
    for name, spec in meta["metrics"].items():
        assert metric_value(table, spec) == pytest.approx(metrics[name], rel=1e-5, abs=1e-6), name


SENTIMENT_FAST = FAST["sentiment"]


def test_sentiment_rows_reproduce_test_acc_f1_and_loss(make_config, sentiment_csv: Path,
                                                       lab_root: Path) -> None:
    run(make_config("model=gru", f"task.data.train={sentiment_csv}", *SENTIMENT_FAST))
    table, meta, metrics = _predictions(lab_root, "sentiment")
    _check(table, meta, metrics, 16)
    assert set(meta["metrics"]) == {"test/acc", "test/f1", "test/loss"}
    assert table["score"].mean() == pytest.approx(metrics["test/acc"])
    texts = pd.read_csv(sentiment_csv)["text"]
    assert set(table["input"]) <= set(texts)  # the raw snippet, not ids
    assert set(table["gold"]) <= {"positive", "negative"}


def test_tfidf_baseline_writes_the_same_table(make_config, sentiment_csv: Path,
                                              lab_root: Path) -> None:
    run(make_config("model=tfidf_logreg", f"task.data.train={sentiment_csv}"))
    table, meta, metrics = _predictions(lab_root, "sentiment")
    _check(table, meta, metrics, 16)
    assert set(meta["metrics"]) == {"test/acc", "test/f1"} and "loss" in table
    assert sorted(table["example"]) == list(range(16))


def test_ner_rows_count_spans_per_sentence(make_config, tmp_path: Path, lab_root: Path) -> None:
    data = write_conll(tmp_path / "train.conll", n=200)
    run(make_config("task=ner", "model=bilstm", "task.crf=true", "model.hidden_size=16",
                    "model.embedding_dim=16", "trainer.max_epochs=4", "task.optimizer.lr=0.01",
                    "task.datamodule.batch_size=16", "task.module.dropout=0.0",
                    f"task.data.train={data}"))
    table, meta, metrics = _predictions(lab_root, "ner")
    _check(table, meta, metrics, 20)
    assert {"tp", "fp", "fn", "tokens", "correct_tokens"} <= set(table.columns)
    assert table["tp"].sum() > 0 and metrics["test/f1"] > 0  # F1 really recomputed from spans
    first = table.iloc[0]
    assert len(first["gold"].split()) == len(first["input"].split()) == first["tokens"]


def test_rows_are_bounded_by_max_predictions(make_config, sentiment_csv: Path,
                                             lab_root: Path) -> None:
    run(make_config("model=gru", f"task.data.train={sentiment_csv}", *SENTIMENT_FAST,
                    "+task.module.max_predictions=5"))
    table, meta, metrics = _predictions(lab_root, "sentiment")
    assert len(table) == meta["rows"] == 5 and meta["examples"] == 16 and meta["sampled"]
    assert table["example"].is_unique


@pytest.mark.parametrize("task", ["g2p", "translate"])
def test_seq2seq_rows_reproduce_wer_per_and_corpus_bleu(task: str, make_config, tmp_path: Path,
                                                        lab_root: Path) -> None:
    if task == "g2p":
        data = write_cmudict(tmp_path / "tiny.dict")
    else:
        data = write_pairs(tmp_path / "pairs.tsv")
    run(make_config(f"task={task}", "model=gru", f"task.data.path={data}", *FAST[task]))
    table, meta, metrics = _predictions(lab_root, task)
    _check(table, meta, metrics, None)
    assert len(table) == meta["examples"] >= 10
    if task == "g2p":
        assert set(meta["metrics"]) == {"test/wer", "test/per"} and table["ref_len"].min() > 0
    else:
        assert set(meta["metrics"]) == {"test/bleu"} and metrics["test/bleu"] > 0
        assert table["bleu_sys_len"].sum() == sum(len(p.split()) for p in table["prediction"])


@pytest.mark.parametrize("stateful", [False, True])
def test_charlm_rows_sum_to_test_nats_per_char(stateful: bool, make_config, tmp_path: Path,
                                               lab_root: Path) -> None:
    data = write_text(tmp_path / "book.txt")
    run(make_config("model=gru", "task=charlm", f"task.data.path={data}", *FAST["charlm"],
                    f"task.stateful={str(stateful).lower()}"))
    table, meta, metrics = _predictions(lab_root, "charlm")
    _check(table, meta, metrics, None)
    assert set(meta["metrics"]) == {"test/loss", "test/bpc"} and len(table) > 1
    assert (table["input"].str.len() == table["chars"]).all()
    assert table["input"].iloc[0][1:] == table["gold"].iloc[0][:-1]  # the next characters


@pytest.mark.usefixtures("fake_faker")
def test_names_rows_sum_to_test_nats_per_symbol(make_config, lab_root: Path) -> None:
    run(make_config("experiment=names_tiny", "model=gru", "task.condition=both", *FAST["names"]))
    table, meta, metrics = _predictions(lab_root, "names")
    _check(table, meta, metrics, None)
    assert table["input"].nunique() >= 2  # the category is the input
    assert (table["gold"].str.len() + 1 == table["symbols"]).all()  # the name and its end


@pytest.mark.parametrize("task", ["adding", "copy", "forecast"])
def test_regression_copy_and_forecast_rows(task: str, make_config, tmp_path: Path,
                                           lab_root: Path) -> None:
    if task == "forecast":
        data = write_series_csv(tmp_path / "sales.csv", {"sales": list(seasonal_values(96))})
        overrides = ["task=forecast", "model=gru", f"task.data.path={data}",
                     "task.data.target=sales", "task.data.date_column=month", *FAST["forecast"]]
    else:
        extra = "task.seq_len=6" if task == "adding" else "task.delay=3"
        overrides = [f"task={task}", *FAST["synthetic"], extra, "trainer.max_epochs=1"]
    run(make_config(*overrides))
    table, meta, metrics = _predictions(lab_root, task)
    _check(table, meta, metrics, 64 if task != "forecast" else None)
    assert "test/loss" in meta["metrics"]


@pytest.mark.parametrize("task", ["sentiment", "ner", "g2p", "charlm", "copy"])
def test_two_processes_write_the_rows_one_does(task: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rank collects its shard; rank zero writes the gathered rows, in the order and
    with the example indices of a single process (forked gloo processes, uneven shards)."""
    import pickle

    import pytorch_lightning as pl

    from rnnlab.build import build_module
    from rnnlab.tracking import artifacts, predictions

    monkeypatch.setattr(artifacts, "log_file", lambda *args, **kwargs: None)
    written = tmp_path / "rows.pkl"

    def capture(run, rows, metrics, max_rows=0):  # rank zero only, in its own process
        written.write_bytes(pickle.dumps(rows))

    monkeypatch.setattr(predictions, "write_rows", capture)
    cfg, dm = tiny_run_parts(task, tmp_path)
    module = build_module(cfg, dm.spec)
    common = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
              "enable_model_summary": False, "enable_checkpointing": False,
              "use_distributed_sampler": False, "inference_mode": False,
              "default_root_dir": str(tmp_path)}  # anything written stays in the test's folder
    pl.Trainer(max_epochs=1, **common).fit(module, datamodule=dm)
    pl.Trainer(devices=1, **common).test(module, datamodule=dm, verbose=False)
    one = pickle.loads(written.read_bytes())
    written.unlink()
    pl.Trainer(devices=2, strategy="ddp_fork", **common).test(module, datamodule=dm,
                                                               verbose=False)
    two = pickle.loads(written.read_bytes())
    assert len(one) == len(two) > 1
    text = ("example", "input", "gold", "prediction")
    assert [[r[k] for k in text] for r in one] == [[r[k] for k in text] for r in two]
    assert [r["score"] for r in one] == pytest.approx([r["score"] for r in two], abs=1e-5)
    if task in ("sentiment", "ner", "g2p"):  # bucketed: indices of the test split
        assert sorted(r["example"] for r in one) == list(range(30))


def test_compare_pairs_a_network_with_the_baseline_example_by_example(
        make_config, tmp_path: Path, lab_root: Path) -> None:
    """Real runs: the network's rows (bucketed batches) and the baseline's (split order)
    carry the same example indices, so compare.py can test them on the same snippets."""
    import csv

    from rnnlab.report.compare import main

    data = write_sentiment_csv(tmp_path / "big.csv", n=400)
    run(make_config("model=gru", f"task.data.train={data}", *SENTIMENT_FAST))
    run(make_config("model=tfidf_logreg", f"task.data.train={data}"))
    out = tmp_path / "rep"
    assert main(["--tracking-uri", f"sqlite:///{lab_root}/mlflow.db", "--out", str(out),
                 "--no-log", "--resamples", "200"]) == 0
    with open(out / "report.csv", newline="") as f:
        rows = {r["model"]: r for r in csv.DictReader(f)}
    p_values = [rows[m]["p vs best"] for m in ("gru", "tfidf_logreg")]
    assert "best" in p_values and 0 < float(next(p for p in p_values if p != "best")) <= 1
    assert all(rows[m]["test 95% CI"].startswith("[") for m in rows)
    assert "on the same 40 test examples" in (out / "report.md").read_text()
