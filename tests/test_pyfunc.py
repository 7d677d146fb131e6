"""Every finished run logs a servable MLflow model: ``mlflow.pyfunc.load_model(uri)`` answers
raw inputs exactly as the checkpoint (and the run's own test) did, for every task kind and
for the baselines; a model that cannot be logged fails the run with the reason."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from helpers import (
    compose_config,
    seasonal_values,
    write_cmudict,
    write_conll,
    write_frames_npz,
    write_pairs,
    write_sentiment_csv,
    write_series_csv,
    write_text,
)
from mlflow.tracking import MlflowClient

from rnnlab.build import build_datamodule
from rnnlab.core.errors import UserError
from rnnlab.data.sources import sha256_of
from rnnlab.data.speech import read_frames_npz
from rnnlab.inference import load_checkpoint
from rnnlab.metrics.spans import SpanScorer
from rnnlab.run.train import run
from rnnlab.serving.publish import MODEL_URI_TAG, package_requirement

SMALL = ["model.hidden_size=16", "model.embedding_dim=16"]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project root and MLflow store for the module (creating a store costs seconds)."""
    root = tmp_path_factory.mktemp("pyfunc_lab")
    yield root
    mlflow.set_tracking_uri(None)


def _train(root: Path, name: str, *overrides: str) -> tuple[dict[str, Any], Any, Any]:
    """Run ``overrides`` in its own output folder; (metrics, config, MLflow run)."""
    cfg = compose_config([f"paths.root_dir={root}", f"paths.output_dir={root}/outputs/{name}",
                          f"logger.mlflow.tracking_uri=sqlite:///{root}/mlflow.db", *overrides],
                         log_model=True)
    metrics = run(cfg)
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`rnnlab.output_dir` = '{root}/outputs/{name}'")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    return metrics, cfg, runs[0]


def _model(root: Path, mlflow_run: Any) -> Any:
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    uri = mlflow_run.data.tags[MODEL_URI_TAG]
    assert uri.startswith("models:/m-")
    return mlflow.pyfunc.load_model(uri)


def _datamodule(cfg: Any) -> Any:
    dm = build_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _labels(module: Any, loader: Any, names: list[str]) -> list[str]:
    """The checkpoint's own predicted labels over a loader, in its order."""
    out = []
    with torch.no_grad():
        for batch in loader:
            out += [names[i] for i in module(batch["x"], batch["lengths"]).argmax(-1).tolist()]
    return out


def test_sentiment_model_labels_raw_text_as_the_checkpoint(
        lab: Path, capsys: pytest.CaptureFixture, caplog: pytest.LogCaptureFixture) -> None:
    csv = write_sentiment_csv(lab / "reviews.csv", n=200)
    metrics, cfg, r = _train(lab, "sentiment", "model=gru", f"task.data.train={csv}",
                             "task.datamodule.min_freq=1", "trainer.max_epochs=4", *SMALL)
    # the line printed after the run names the store, so it serves from any folder
    assert (f"serve it with MLFLOW_TRACKING_URI=sqlite:///{lab}/mlflow.db mlflow models "
            f"serve -m {r.data.tags[MODEL_URI_TAG]} --env-manager local") in capsys.readouterr().out
    model = _model(lab, r)
    dm = _datamodule(cfg)
    texts, ids = dm.texts("test")
    served = model.predict(pd.DataFrame({"text": texts}))
    assert list(served.columns) == ["label", "probability", "unknown_share"]
    assert ((served["probability"] >= 0.5) & (served["probability"] <= 1.0)).all()
    # text the vocabulary does not know is answered, and said to be mostly unknown
    with caplog.at_level("WARNING", logger="rnnlab.serving.predictors"):
        odd = model.predict(pd.DataFrame({"text": ["zzxq vbnm qwpo great", texts[0]]}))
    assert odd["unknown_share"].iloc[0] == pytest.approx(0.75)
    assert odd["unknown_share"].iloc[1] <= 0.5
    assert "1 of 2 inputs to the text_classification model are mostly (> 50%) tokens " \
        "unknown to its vocabulary (rows 0)" in caplog.text
    # the checkpoint's own predictions on the training pipeline's encoded test split
    loaded = load_checkpoint(metrics["ckpt_path"])
    batch = dm.collate(dm.datasets["test"].items)  # one batch, in the order of the texts
    assert _labels(loaded.module, [batch], dm.class_names) == served["label"].tolist()
    accuracy = np.mean([p == dm.class_names[y] for p, y in zip(served["label"], ids, strict=True)])
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)
    # what a user of the Models tab sees: signature, example, the package as requirement
    meta = model.metadata
    assert meta.signature.inputs.input_names() == ["text"]
    assert meta.metadata["rnnlab_kind"] == "text_classification"
    local = Path(mlflow.artifacts.download_artifacts(r.data.tags[MODEL_URI_TAG]))
    assert package_requirement() in (local / "requirements.txt").read_text().splitlines()
    assert json.loads((local / "input_example.json").read_text())["columns"] == ["text"]
    assert (local / "artifacts" / "model.ckpt").stat().st_size < \
        Path(metrics["ckpt_path"]).stat().st_size  # weights only, no optimizer state
    assert "python_model.pkl" not in {p.name for p in local.iterdir()}  # from code, no pickle
    # the weights travel with their sha256: a changed file is refused when the model loads
    ckpt = local / "artifacts" / "model.ckpt"
    assert (local / "artifacts" / "model.ckpt.sha256").read_text().split() == [
        sha256_of(ckpt), "model.ckpt"]
    ckpt.write_bytes(ckpt.read_bytes()[:-1] + b"x")
    with pytest.raises(UserError, match="does not match its recorded sha256"):
        mlflow.pyfunc.load_model(str(local))


def test_ner_model_tags_sentences_and_scores_the_runs_f1(lab: Path) -> None:
    conll = write_conll(lab / "train.conll")
    metrics, cfg, r = _train(lab, "ner", "task=ner", "model=bilstm", "task.crf=true",
                             f"task.data.train={conll}", "task.datamodule.batch_size=16",
                             "trainer.max_epochs=3", *SMALL)
    model = _model(lab, r)
    tokens, gold = _datamodule(cfg).tagged("test")
    served = model.predict(pd.DataFrame({"text": [" ".join(t) for t in tokens]}))
    assert [list(t) for t in served["tokens"]] == tokens
    scorer = SpanScorer()
    scorer.update(gold, [list(t) for t in served["tags"]])
    assert scorer.compute()["f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)
    row = served.iloc[0]
    spans = [(e["type"], e["start"], e["end"], e["text"]) for e in row["entities"]]
    from rnnlab.metrics.spans import bio_spans

    assert [(t, s, e) for t, s, e, _ in spans] == bio_spans(list(row["tags"]))
    assert all(text == " ".join(row["tokens"][s:e]) for _, s, e, text in spans)
    empty = model.predict(pd.DataFrame({"text": [""]}))
    assert list(empty.iloc[0]["tokens"]) == [] and list(empty.iloc[0]["entities"]) == []
    # three made-up words before the first test sentence: three more unknown tokens
    n, unknown = len(tokens[0]), served.iloc[0]["unknown_share"] * len(tokens[0])
    odd = model.predict(pd.DataFrame({"text": ["Qzx Vbw Plk " + " ".join(tokens[0])]}))
    assert odd.iloc[0]["unknown_share"] == pytest.approx((3 + unknown) / (3 + n))


def test_a_tagger_says_when_most_of_a_sentence_is_unknown(
        lab: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The majority-tag baseline answers in the tagger's schema, unknown share included."""
    from rnnlab.serving.pyfunc import MajorityTagPredictor

    tagger = MajorityTagPredictor({"table": {"ann": "B-PER", "oslo": "B-LOC"},
                                   "lowercase": True, "char_level": False})
    with caplog.at_level("WARNING", logger="rnnlab.serving.predictors"):
        out = tagger(pd.DataFrame({"text": ["Ann went to Oslo", "Ann Oslo"]}))
    assert list(out.columns) == ["tokens", "tags", "entities", "unknown_share"]
    assert out["unknown_share"].tolist() == [0.5, 0.0]  # one half is not most
    assert "mostly" not in caplog.text
    with caplog.at_level("WARNING", logger="rnnlab.serving.predictors"):
        assert tagger(pd.DataFrame({"text": ["Ann flew to Bergen"]}))[
            "unknown_share"].tolist() == [0.75]
    assert "1 of 1 inputs to the majority_tag model are mostly" in caplog.text


def test_charlm_model_continues_a_prompt_as_rnnlab_generate(lab: Path) -> None:
    from rnnlab.inference.sampling import generate_text

    text = write_text(lab / "plays.txt")
    metrics, _, r = _train(lab, "charlm", "task=charlm", "model=gru", f"task.data.path={text}",
                           "task.datamodule.seq_len=32", "task.datamodule.batch_size=16",
                           "task.datamodule.batches_per_epoch=8", "trainer.max_epochs=1",
                           "task.module.sample_length=0", "model.hidden_size=32",
                           "model.embedding_dim=16")
    model = _model(lab, r)
    params = {"length": 60, "temperature": 0.7, "seed": 3}
    served = model.predict(pd.DataFrame({"prompt": ["ROMEO:", "JULIET: O"]}), params=params)
    assert served["text"][0] == generate_text(metrics["ckpt_path"], "ROMEO:", 60, 0.7, seed=3)
    assert served["text"][1].startswith("JULIET: O") and len(served["text"][1]) == 9 + 60
    defaults = model.metadata.signature.params
    assert {p.name: p.default for p in defaults} == {"length": 500, "temperature": 0.8,
                                                     "top_k": 0, "seed": 1}
    with pytest.raises(Exception, match="temperature must be greater than 0"):
        model.predict(pd.DataFrame({"prompt": ["x"]}), params={"temperature": 0.0})


def test_forecast_model_forecasts_a_history_as_the_test_period(lab: Path) -> None:
    from rnnlab.metrics.forecast import forecast_metrics

    series = write_series_csv(lab / "sales.csv", {"sales": list(seasonal_values(96))})
    metrics, cfg, r = _train(lab, "forecast", "task=forecast", "model=gru",
                             f"task.data.path={series}", "task.data.target=sales",
                             "task.data.date_column=month", "task.window=12", "task.horizon=6",
                             "task.test_size=12", "task.val_size=12", "trainer.max_epochs=3",
                             "task.datamodule.batch_size=8", "model.hidden_size=16")
    model = _model(lab, r)
    dm = _datamodule(cfg)
    history = pd.DataFrame(dm.history("test"), columns=dm.series.columns)
    served = model.predict(history, params={"horizon": 12})
    assert list(served.columns) == ["step", "sales"] and served["step"].tolist() == list(range(1, 13))
    module = load_checkpoint(metrics["ckpt_path"]).module
    np.testing.assert_allclose(served[["sales"]].to_numpy(), module.forecast(dm, "test"),
                               rtol=1e-6)
    scores = forecast_metrics(dm.truth("test"), served[["sales"]].to_numpy(),
                              dm.history("test")[:, dm.series.targets], dm.spec.season, "test/")
    assert scores["test/mae"] == pytest.approx(metrics["test/mae"], rel=1e-5)
    assert len(model.predict(history)) == 6  # the default horizon is task.horizon
    with pytest.raises(Exception, match="at least 24 rows"):
        model.predict(history.tail(5))


def test_g2p_model_pronounces_words_as_rnnlab_convert(lab: Path) -> None:
    from rnnlab.inference.convert import convert

    words = write_cmudict(lab / "tiny.dict")
    metrics, _, r = _train(lab, "g2p", "task=g2p", "model=gru", f"task.data.path={words}",
                           "trainer.max_epochs=2", "task.datamodule.batch_size=16",
                           "model.hidden_size=32", "model.embedding_dim=16",
                           "task.module.embedding_dim=16", "task.module.attention_size=16",
                           "task.beam_size=2", "task.module.max_decode_len=12")
    model = _model(lab, r)
    inputs = ["bad", "mask", "dots", "tomato"]
    served = model.predict(pd.DataFrame({"text": inputs}))
    expected = convert(load_checkpoint(metrics["ckpt_path"]), inputs)  # beam 2, as trained
    assert [list(t) for t in served["tokens"]] == expected
    assert served["output"].tolist() == [" ".join(e) for e in expected]
    greedy = model.predict(pd.DataFrame({"text": inputs}), params={"beam_size": 1})
    assert [list(t) for t in greedy["tokens"]] == \
        convert(load_checkpoint(metrics["ckpt_path"]), inputs, 1)


def test_speech_model_labels_frames_as_the_checkpoint(lab: Path) -> None:
    frames = write_frames_npz(lab / "frames.npz", n=90)
    metrics, cfg, r = _train(lab, "speech", "task=speech", "model=gru",
                             f"task.data.train={frames}", "trainer.max_epochs=3",
                             "task.datamodule.batch_size=16", "model.hidden_size=16")
    model = _model(lab, r)
    dm = _datamodule(cfg)
    # the raw test utterances: the split is fixed by split_seed, so find them in the file
    raw, _ = read_frames_npz(frames, str(frames))
    loaded = load_checkpoint(metrics["ckpt_path"])
    mean, std = (np.asarray(loaded.data_state[k], np.float32) for k in ("mean", "std"))
    test_items = [item[0].numpy() for item in dm.datasets["test"].items]
    utterances = [next(u for u in raw if u.shape == x.shape
                       and np.allclose((u - mean) / std, x, atol=1e-5)) for x in test_items]
    served = model.predict(pd.DataFrame({"frames": [u.tolist() for u in utterances]}))
    own = _labels(loaded.module, [dm.collate(dm.datasets["test"].items)], dm.class_names)
    assert served["label"].tolist() == own
    gold = [dm.class_names[int(y)] for y in dm.collate(dm.datasets["test"].items)["y"]]
    assert np.mean([a == b for a, b in zip(own, gold, strict=True)]) == \
        pytest.approx(metrics["test/acc"], abs=1e-6)


def test_tfidf_baseline_is_a_scikit_learn_model_of_the_runs_accuracy(lab: Path) -> None:
    csv = write_sentiment_csv(lab / "reviews_tfidf.csv", n=200, seed=3)
    metrics, cfg, r = _train(lab, "tfidf", "model=tfidf_logreg", f"task.data.train={csv}")
    model = _model(lab, r)
    assert "sklearn" in model.metadata.flavors
    texts, ids = _datamodule(cfg).texts("test")
    served = model.predict(pd.DataFrame({"text": texts}))
    names = sorted({"positive", "negative"})
    accuracy = np.mean([p == names[y] for p, y in zip(served, ids, strict=True)])
    assert accuracy == pytest.approx(metrics["test/acc"], abs=1e-6)


def test_majority_tag_and_naive_forecast_baselines_are_served(lab: Path) -> None:
    conll = write_conll(lab / "train_majority.conll", seed=4)
    metrics, cfg, r = _train(lab, "majority", "task=ner", "model=majority_tag",
                             f"task.data.train={conll}")
    tokens, gold = _datamodule(cfg).tagged("test")
    served = _model(lab, r).predict(pd.DataFrame({"text": [" ".join(t) for t in tokens]}))
    scorer = SpanScorer()
    scorer.update(gold, [list(t) for t in served["tags"]])
    assert scorer.compute()["f1"] == pytest.approx(metrics["test/f1"], abs=1e-6)

    series = write_series_csv(lab / "sales_naive.csv", {"sales": list(seasonal_values(96))})
    metrics, cfg, r = _train(lab, "seasonal_naive", "task=forecast", "model=seasonal_naive",
                             f"task.data.path={series}", "task.data.target=sales",
                             "task.data.date_column=month", "task.test_size=12",
                             "task.val_size=12")
    dm = _datamodule(cfg)
    history = pd.DataFrame(dm.history("test")[:, dm.series.targets], columns=["sales"])
    served = _model(lab, r).predict(history, params={"horizon": 12})
    mae = np.mean(np.abs(served["sales"].to_numpy() - dm.truth("test")[:, 0]))
    assert mae == pytest.approx(metrics["test/mae"], rel=1e-6)


def test_a_model_that_cannot_predict_fails_the_run_with_the_reason(
        lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rnnlab.serving import predictors

    def broken(self, frame, params):  # noqa: ANN001
        raise RuntimeError("the predictor is broken")

    monkeypatch.setattr(predictors.TextClassifier, "predict", broken)
    csv = write_sentiment_csv(lab / "reviews_broken.csv", n=60)
    cfg = compose_config([f"paths.root_dir={lab}", f"paths.output_dir={lab}/outputs/broken",
                          f"logger.mlflow.tracking_uri=sqlite:///{lab}/mlflow.db",
                          "model=gru", "trainer=debug", f"task.data.train={csv}", *SMALL],
                         log_model=True)
    with pytest.raises(RuntimeError, match="the predictor is broken"):
        run(cfg)
    client = MlflowClient(f"sqlite:///{lab}/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`rnnlab.output_dir` = '{lab}/outputs/broken'")
    assert r.info.status == "FAILED"
    assert "the predictor is broken" in r.data.tags["rnnlab.failure"]
    assert MODEL_URI_TAG not in r.data.tags


def test_a_failed_upload_fails_the_run_and_marks_the_model_failed(
        lab: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.models import Model

    def no_room(*args: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(Model, "log", no_room)
    csv = write_sentiment_csv(lab / "reviews_full.csv", n=60)
    cfg = compose_config([f"paths.root_dir={lab}", f"paths.output_dir={lab}/outputs/full",
                          f"logger.mlflow.tracking_uri=sqlite:///{lab}/mlflow.db",
                          "model=gru", "trainer=debug", f"task.data.train={csv}", *SMALL],
                         log_model=True)
    with pytest.raises(OSError, match="No space left"):
        run(cfg)
    client = MlflowClient(f"sqlite:///{lab}/mlflow.db")
    (r,) = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              f"tags.`rnnlab.output_dir` = '{lab}/outputs/full'")
    assert r.info.status == "FAILED" and "No space left" in r.data.tags["rnnlab.failure"]
    (model,) = [m for m in client.search_logged_models([r.info.experiment_id])
                if m.source_run_id == r.info.run_id]
    assert str(model.status) == "FAILED"


def test_translate_model_translates_sentences_as_rnnlab_convert(lab: Path) -> None:
    from rnnlab.inference.convert import convert

    pairs = write_pairs(lab / "pairs.tsv")
    metrics, _, r = _train(lab, "translate", "task=translate", "model=gru",
                           f"task.data.path={pairs}", "trainer.max_epochs=2",
                           "task.datamodule.batch_size=16", "model.hidden_size=32",
                           "model.embedding_dim=16", "task.module.embedding_dim=16",
                           "task.module.attention_size=16", "task.beam_size=2",
                           "task.module.max_decode_len=12", "task.datamodule.min_freq=1")
    inputs = ["The cat sees the dog.", "A big red fish eats."]
    served = _model(lab, r).predict(pd.DataFrame({"text": inputs}))
    assert [list(t) for t in served["tokens"]] == \
        convert(load_checkpoint(metrics["ckpt_path"]), inputs)


def test_names_model_generates_names_as_rnnlab_generate(lab: Path) -> None:
    from rnnlab.inference.sampling import generate_names

    names = lab / "names.csv"
    rows = ["category,sequence"] + [f"{c},{p}{s}" for c, p in (("Alpha", "Ka"), ("Beta", "Zu"))
                                    for s in ("ra", "ro", "ri", "na", "no", "ni", "la", "lo",
                                              "li", "ta", "to", "ti", "ma", "mo", "mi")]
    names.write_text("\n".join(rows) + "\n", encoding="utf-8")
    metrics, _, r = _train(lab, "names", "task=names", "model=gru", f"task.data.path={names}",
                           "trainer.max_epochs=1", "task.datamodule.batch_size=8",
                           "model.hidden_size=16", "model.embedding_dim=16",
                           "task.category_dim=4", "task.module.eval_samples=2",
                           "task.module.sample_count=0")
    model = _model(lab, r)
    served = model.predict(pd.DataFrame({"category": ["Beta", "alpha"]}),
                           params={"n": 4, "seed": 5, "temperature": 0.9})
    assert list(served["names"][0]) == generate_names(metrics["ckpt_path"], "Beta", 4, 0.9, 5)
    assert len(served["names"][1]) == 4  # any case of a category's name is accepted
    with pytest.raises(Exception, match="unknown category 'Gamma'"):
        model.predict(pd.DataFrame({"category": ["Gamma"]}))


def test_adding_and_copy_models_answer_as_their_test(lab: Path) -> None:
    metrics, cfg, r = _train(lab, "adding", "task=adding", "model=gru", "task.seq_len=10",
                             "task.datamodule.n_train=256", "task.datamodule.n_val=64",
                             "task.datamodule.n_test=64", "trainer.max_epochs=2",
                             "model.hidden_size=16")
    test = _datamodule(cfg).fixed["test"]
    served = _model(lab, r).predict(pd.DataFrame({"x": [x.tolist() for x in test["x"]]}))
    mse = np.mean((served["prediction"].to_numpy() - test["y"].numpy()) ** 2)
    assert mse == pytest.approx(metrics["test/loss"], rel=1e-4)

    metrics, cfg, r = _train(lab, "copy", "task=copy", "model=gru", "task.delay=5",
                             "task.datamodule.n_train=256", "task.datamodule.n_val=64",
                             "task.datamodule.n_test=64", "trainer.max_epochs=1",
                             "model.hidden_size=16", "model.embedding_dim=8")
    test = _datamodule(cfg).fixed["test"]
    served = _model(lab, r).predict(pd.DataFrame({"x": [x.tolist() for x in test["x"]]}))
    module = load_checkpoint(metrics["ckpt_path"]).module
    with torch.no_grad():
        own = module(test["x"], test["lengths"]).argmax(-1).tolist()
    assert [list(p) for p in served["prediction"]] == own


# ---- the command line ----------------------------------------------------------------------
def _mlflow_predict(root: Path, uri: str, request: Path, out: Path) -> dict[str, Any]:
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    proc = subprocess.run([str(mlflow_cli), "models", "predict", "-m", uri, "-i", str(request),
                           "-t", "json", "-o", str(out), "--env-manager", "local"],
                          capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ,
                               "MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


@pytest.mark.slow
def test_mlflow_models_predict_serves_sentiment_and_ner(lab: Path, tmp_path: Path) -> None:
    csv = write_sentiment_csv(lab / "reviews_cli.csv", n=120)
    _, _, r = _train(lab, "sentiment_cli", "model=gru", f"task.data.train={csv}",
                     "task.datamodule.min_freq=1", "trainer=debug", *SMALL)
    request = tmp_path / "texts.json"
    request.write_text(json.dumps({"dataframe_records": [{"text": "a great and moving film"},
                                                         {"text": "dull, boring plot"}]}))
    answer = _mlflow_predict(lab, r.data.tags[MODEL_URI_TAG], request, tmp_path / "s.json")
    expected = _model(lab, r).predict(pd.DataFrame({"text": ["a great and moving film",
                                                             "dull, boring plot"]}))
    assert [row["label"] for row in answer["predictions"]] == expected["label"].tolist()

    conll = write_conll(lab / "train_cli.conll", seed=2)
    _, _, r = _train(lab, "ner_cli", "task=ner", "model=gru", f"task.data.train={conll}",
                     "trainer=debug", *SMALL)
    request = tmp_path / "sentences.json"
    request.write_text(json.dumps({"dataframe_split": {
        "columns": ["text"], "data": [["Ann went to New York"], ["Bob Smith visited Oslo"]]}}))
    answer = _mlflow_predict(lab, r.data.tags[MODEL_URI_TAG], request, tmp_path / "n.json")
    rows = answer["predictions"]
    assert [row["tokens"] for row in rows] == [["Ann", "went", "to", "New", "York"],
                                               ["Bob", "Smith", "visited", "Oslo"]]
    expected = _model(lab, r).predict(pd.DataFrame({"text": ["Ann went to New York",
                                                             "Bob Smith visited Oslo"]}))
    assert [row["tags"] for row in rows] == [list(t) for t in expected["tags"]]


def test_make_ui_server_and_serve_honour_port_and_refuse_a_port_in_use() -> None:
    """Three defaults that run side by side, PORT= honoured by each, the store and the
    venv's bin (uvicorn) given to mlflow models serve, and a used port refused in one
    sentence before anything starts."""
    import shutil
    import socket

    from helpers import REPO

    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def dry(*args: str) -> str:
        return subprocess.run(["make", "-n", *args], cwd=REPO, capture_output=True, text=True,
                              check=True, env={"PATH": "/usr/bin:/bin"}).stdout

    assert "--host 127.0.0.1 --port 5000" in dry("ui")
    assert "--host 127.0.0.1 --port 5007" in dry("ui", "PORT=5007")
    assert "start --host 127.0.0.1 --port 5001" in dry("server")
    assert "start --host 127.0.0.1 --port 5008" in dry("server", "PORT=5008")
    serve = dry("serve", "MODEL=models:/rnnlab-ner@champion")
    assert "port-check --port 5002" in serve
    assert (f'PATH="{REPO}/.venv/bin:$PATH" MLFLOW_TRACKING_URI="sqlite:///{REPO}/mlflow.db" '
            f'.venv/bin/mlflow models serve -m "models:/rnnlab-ner@champion" --env-manager '
            f'local --host 127.0.0.1 --port 5002') in serve
    assert 'MLFLOW_TRACKING_URI="http://h:9"' in dry("serve", "MODEL=m",
                                                    "MLFLOW_TRACKING_URI=http://h:9")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        check = subprocess.run([sys.executable, "-m", "rnnlab.ops.server", "port-check",
                                "--port", str(port)], capture_output=True, text=True)
    assert check.returncode == 2
    assert check.stderr == (f"error: port {port} is in use by another program; choose "
                            f"another with PORT=<port>.\n")


@pytest.mark.slow
def test_the_registered_champion_serves_over_http(lab: Path, tmp_path: Path) -> None:
    """What the README's serving section does: register the champion, serve it with
    ``mlflow models serve`` (the venv's bin on PATH, as ``make serve`` sets it) and POST
    raw text to /invocations; the answer is the logged model's own."""
    import os
    import socket
    import time
    import urllib.request

    from rnnlab.report.compare import main as compare_main

    csv = write_sentiment_csv(lab / "reviews_http.csv", n=120)
    _, _, r = _train(lab, "sentiment_http", "model=gru", f"task.data.train={csv}",
                     "task.datamodule.min_freq=1", "trainer=debug", *SMALL)
    store = f"sqlite:///{lab}/mlflow.db"
    assert compare_main(["--tracking-uri", store, "--no-log", "--out", str(tmp_path / "report"),
                         "--register", "--force", "--tasks", "sentiment"]) == 0
    client = MlflowClient(store)
    (name,) = [m.name for m in client.search_registered_models()
               if m.name.startswith("rnnlab-sentiment")]
    uri = f"models:/{name}@champion"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bin_dir = Path(sys.executable).parent
    server = subprocess.Popen(
        [str(bin_dir / "mlflow"), "models", "serve", "-m", uri, "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)], cwd=tmp_path,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
             "MLFLOW_TRACKING_URI": store})
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.time() < deadline, "the model server did not come up in 180 s"
                time.sleep(1)
        texts = ["a great and moving film", "dull, boring plot"]
        body = json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as answer:
            rows = json.loads(answer.read())["predictions"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    expected = _model(lab, r).predict(pd.DataFrame({"text": texts}))
    assert [row["label"] for row in rows] == expected["label"].tolist()
    assert not (tmp_path / "mlflow.db").exists()  # the store named, none made where it ran
