"""task=sentiment end to end on user files in the real CSV/TSV format, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import FAST, write_sentiment_csv
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.base import majority_share
from rnnlab.data.batching import BucketBatchSampler
from rnnlab.data.sentiment import SentimentDataModule, TextEncoder
from rnnlab.models.cells import cell_names
from rnnlab.models.presets import recurrent_presets
from rnnlab.run.train import run

SENTIMENT = [*FAST["sentiment"], "trainer.max_epochs=3", "task.backbone.input_dropout=0.1"]
# every registered cell, and the bidirectional presets of conf/model
CELLS = [*cell_names(), *recurrent_presets(bidirectional=True)]


def _mlflow_run(root: Path, experiment: str = "sentiment"):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    return client, runs


def test_datamodule_splits_user_file(sentiment_csv: Path, tmp_path: Path) -> None:
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path / "data"))
    dm.setup()
    sizes = {s: len(dm.datasets[s]) for s in ("train", "val", "test")}
    assert sizes == {"train": 128, "val": 16, "test": 16}
    assert dm.spec.num_classes == 2 and dm.spec.class_names == ["negative", "positive"]
    train_texts = set(dm.raw["train"][0])
    assert not train_texts & set(dm.raw["test"][0])  # no leakage between splits
    batch = dm.collate([dm.datasets["train"][i] for i in range(4)])
    assert batch["x"].shape[0] == 4 and batch["lengths"].max() == batch["x"].shape[1]
    again = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path / "data"))
    again.setup()
    assert again.fingerprint == dm.fingerprint and again.raw["test"] == dm.raw["test"]


def test_the_checkpoint_state_encodes_texts_as_the_datamodule(sentiment_csv: Path,
                                                              tmp_path: Path) -> None:
    dm = SentimentDataModule(data={"train": str(sentiment_csv)}, data_dir=str(tmp_path / "data"),
                             max_len=5)
    dm.setup()
    state = dm.checkpoint_state()
    assert set(state) == {"vocab", "class_names", "lowercase", "max_len"}  # as always written
    served = TextEncoder.from_state(state)
    texts, _ = dm.raw["test"]
    for text, (ids, _) in zip(texts, dm.datasets["test"], strict=True):
        assert torch.equal(served.encode(text), ids)
    old = {k: v for k, v in state.items() if k != "lowercase"}  # before lowercase was saved
    assert TextEncoder.from_state(old).encode("GREAT Film").tolist() == served.encode(
        "great film").tolist()
    assert served.encode("").tolist() == [served.vocab.unk_id]


def test_user_tsv_with_given_splits_and_custom_columns(tmp_path: Path) -> None:
    lines = ["review\tstars"] + [f"{w} film\t{s}" for w, s in
                                 [("great", "5"), ("bad", "1"), ("fine", "3")] * 4]
    for split in ("train", "val", "test"):
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    data = {s: str(tmp_path / f"{s}.tsv") for s in ("train", "val", "test")}
    dm = SentimentDataModule(data={**data, "text_column": "review", "label_column": "stars"},
                             data_dir=str(tmp_path), min_freq=1)
    dm.setup()
    assert dm.spec.num_classes == 3 and len(dm.datasets["val"]) == 12


@pytest.mark.parametrize(("content", "message"), [
    ("text,label\n\"fine\",pos\n\"\",neg\n", r"reviews\.csv, line 3: the 'text' field is empty"),
    ("words,label\nfine,pos\n", r"reviews\.csv, line 1: missing column\(s\) text"),
    ("text,label\n", r"reviews\.csv has a header but no rows"),
])
def test_bad_user_files_name_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        SentimentDataModule(data={"train": str(path)}, data_dir=str(tmp_path)).setup()


def test_non_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(b"text,label\ngood,pos\nbad\xff\xfe,neg\n")
    with pytest.raises(DataError, match=r"reviews\.csv, line 3: the file is not valid UTF-8"):
        SentimentDataModule(data={"train": str(path)}, data_dir=str(tmp_path)).setup()
    with pytest.raises(DataError, match=r"nothere\.csv does not exist"):
        SentimentDataModule(data={"train": str(tmp_path / "nothere.csv")}).setup()
    with pytest.raises(ConfigError, match="task.datamodule.dataset='imdb' is unknown"):
        SentimentDataModule(dataset="imdb")


def test_bucket_sampler_covers_every_example_with_little_padding() -> None:
    lengths = [int(x) for x in torch.randint(1, 60, (2000,))]
    sampler = BucketBatchSampler(lengths, batch_size=32, shuffle=True, seed=1)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(2000))
    assert len(batches) == len(sampler)
    assert sampler.padding_efficiency() > 0.95
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new order each epoch


@pytest.mark.parametrize("model", [*CELLS, "transformer"])
def test_training_reduces_loss_and_is_tracked(model: str, make_config, sentiment_csv: Path,
                                              lab_root: Path) -> None:
    overrides = [f"model={model}", f"task.data.train={sentiment_csv}", *SENTIMENT]
    if model == "transformer":
        overrides = [o for o in overrides if not o.startswith("model.")] + ["model.d_model=16",
                                                                             "model.nhead=2"]
    metrics = run(make_config(*overrides))
    client, runs = _mlflow_run(lab_root)
    assert len(runs) == 1
    r = runs[0]
    history = [m.value for m in sorted(client.get_metric_history(r.info.run_id, "train/loss_epoch"),
                                       key=lambda m: m.step)]
    assert len(history) == 3 and history[-1] < history[0]
    assert r.data.tags["task"] == "sentiment" and r.data.tags["model"] == model
    assert r.data.tags["data_fingerprint"] and r.data.tags["git_commit"]
    assert r.data.params["task.datamodule.batch_size"] == "16"
    assert "test/acc" in r.data.metrics and "val/f1" in r.data.metrics
    assert metrics["test/acc"] == pytest.approx(r.data.metrics["test/acc"])
    artifacts = {a.path for a in client.list_artifacts(r.info.run_id, "checkpoints")}
    assert "checkpoints/best.ckpt" in artifacts
    assert client.list_artifacts(r.info.run_id, "plots")[0].path.endswith("confusion_matrix_test.png")
    assert r.info.status == "FINISHED"


def test_lstm_learns_the_toy_corpus(make_config, tmp_path: Path) -> None:
    data = write_sentiment_csv(tmp_path / "big.csv", n=400)
    metrics = run(make_config("model=lstm", f"task.data.train={data}", "trainer.max_epochs=6",
                              "task.datamodule.min_freq=1", "model.hidden_size=32"))
    assert metrics["test/acc"] >= 0.9


def test_tfidf_baseline_logs_like_a_run(make_config, sentiment_csv: Path, lab_root: Path) -> None:
    metrics = run(make_config("model=tfidf_logreg", f"task.data.train={sentiment_csv}"))
    assert metrics["test/acc"] >= 0.9  # the toy corpus is separable by its words
    client, runs = _mlflow_run(lab_root)
    assert runs[0].data.tags["model"] == "tfidf_logreg"
    assert {"test/acc", "test/f1", "val/acc"} <= set(runs[0].data.metrics)


def test_baseline_on_wrong_task_is_refused(make_config) -> None:
    cfg = make_config("model=tfidf_logreg")
    cfg.task.family = "tagging"
    cfg.task.name = "ner"
    with pytest.raises(ConfigError, match="model=tfidf_logreg is a baseline for text_classification"):
        run(cfg)


def test_resume_continues_the_same_mlflow_run(make_config, sentiment_csv: Path,
                                              lab_root: Path) -> None:
    first = run(make_config("model=gru", f"task.data.train={sentiment_csv}", *SENTIMENT,
                            "trainer.max_epochs=1", "callbacks.early_stopping=null"))
    ckpt = Path(first["ckpt_path"]).with_name("last.ckpt")
    run(make_config("model=gru", f"task.data.train={sentiment_csv}", *SENTIMENT,
                    "trainer.max_epochs=2", f"ckpt_path={ckpt}",
                    "paths.output_dir=" + str(lab_root / "outputs" / "resumed")))
    client, runs = _mlflow_run(lab_root)
    assert len(runs) == 1
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss_epoch")]
    assert len(steps) == 2 and runs[0].info.status == "FINISHED"


def test_last_checkpoint_is_the_newest_state_not_the_best(sentiment_csv: Path, make_config,
                                                          lab_root: Path) -> None:
    """With a learning rate of 0 the validation loss never improves after epoch 0, so
    best.ckpt stays there; last.ckpt must still hold the final step, or a resume after a
    crash would repeat every epoch since the last improvement."""
    metrics = run(make_config("model=gru", f"task.data.train={sentiment_csv}", *SENTIMENT,
                              "task.optimizer.lr=0.0", "callbacks.early_stopping=null"))
    best = torch.load(metrics["ckpt_path"], map_location="cpu", weights_only=True)
    last = torch.load(Path(metrics["ckpt_path"]).with_name("last.ckpt"), map_location="cpu",
                      weights_only=True)
    assert best["epoch"] == 0 and last["epoch"] == 2
    assert last["global_step"] == 3 * best["global_step"] > 0
    # beside them only their sha256 files and the resumers' lock
    assert sorted(p.name for p in Path(metrics["ckpt_path"]).parent.glob("*.ckpt")) == \
        ["best.ckpt", "last.ckpt"]


def test_eval_batches_are_a_fair_sample_in_any_prefix() -> None:
    """limit_val_batches takes a prefix of the eval batches: it must not be the shortest."""
    lengths = [1 + (i * 37) % 60 for i in range(3200)]
    sampler = BucketBatchSampler(lengths, batch_size=32, shuffle=False, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(3200))
    assert sampler.padding_efficiency() > 0.95  # still cut from one global sort
    mean = sum(lengths) / len(lengths)
    prefix = [lengths[i] for b in batches[:20] for i in b]  # a fifth of the batches
    assert abs(sum(prefix) / len(prefix) - mean) < 0.05 * mean  # sorted order: 0.79 * mean
    small = [lengths[i] for b in batches[:5] for i in b]
    assert min(small) < 15 and max(small) > 45  # even 5 batches span the range
    sampler.set_epoch(4)
    assert list(sampler) == batches  # the same order every epoch


def test_the_run_records_the_majority_class_accuracy(sentiment_csv: Path, tmp_path: Path) -> None:
    """``data.majority_val_acc``: what always answering the most frequent training class
    scores on validation, the floor ``compare.py --register`` holds a classifier to."""
    dm = SentimentDataModule(data={"path": str(sentiment_csv)}, data_dir=str(tmp_path))
    dm.setup()
    train, val = dm.raw["train"][1], dm.raw["val"][1]
    top = max(set(train), key=train.count)
    assert dm.describe()["majority_val_acc"] == pytest.approx(val.count(top) / len(val))
    assert majority_share(["a", "a", "b"], ["b", "b", "a", "b"]) == 0.25
