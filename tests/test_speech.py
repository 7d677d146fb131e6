"""task=speech: the digits .npz layout and the sktime .ts format on tiny fixtures written
in those formats, normalisation, errors, and a short training run on user frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import FAST, write_frames_npz
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.spec import ClassifySpec
from rnnlab.data.speech import SpeechDataModule, parse_ts, read_frames_npz
from rnnlab.run.train import run

TS_FILE = """#A tiny file in the sktime .ts format
@problemName Tiny
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true 1 2
@data
1.0,2.0,3.0:4.0,5.0,6.0:1
0.5,0.25:-1.0,-2.0:2
"""


def test_npz_reader_splits_x_by_lengths(tmp_path: Path) -> None:
    x = np.arange(18, dtype=np.float32).reshape(9, 2)
    np.savez(tmp_path / "f.npz", X=x, y=np.array([3, 7]), lengths=np.array([4, 5]))
    seqs, labels = read_frames_npz(tmp_path / "f.npz", "f.npz")
    assert labels == ["3", "7"]
    assert [s.shape for s in seqs] == [(4, 2), (5, 2)]
    np.testing.assert_array_equal(seqs[1][0], [8.0, 9.0])


def test_ts_parser_reads_channels_and_labels() -> None:
    seqs, labels = parse_ts(TS_FILE, "tiny.ts")
    assert labels == ["1", "2"]
    assert seqs[0].shape == (3, 2) and seqs[1].shape == (2, 2)
    np.testing.assert_allclose(seqs[0][:, 1], [4.0, 5.0, 6.0])  # frames x channels


@pytest.mark.parametrize(("text", "message"), [
    (TS_FILE.replace("0.5,0.25:-1.0,-2.0:2", "0.5,0.25:2"),
     r"tiny\.ts:11: this series has 1 channels but the file has 2"),
    (TS_FILE.replace("0.5,0.25:-1.0,-2.0:2", "0.5,0.25:-1.0:2"),
     r"tiny\.ts:11: the channels have different lengths \(2, 1\)"),
    (TS_FILE.replace("0.5,0.25", "0.5,?"), r"tiny\.ts:11: a value is not a number"),
    ("@data\n", r"tiny\.ts has no series after @data"),
])
def test_ts_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        parse_ts(text, "tiny.ts")


def test_npz_layout_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", X=np.zeros((5, 2)), y=np.array([1]), lengths=np.array([4]))
    with pytest.raises(DataError, match=r"lengths sum to 4 frames but X has 5 rows"):
        read_frames_npz(tmp_path / "a.npz", "a.npz")
    np.savez(tmp_path / "b.npz", X=np.zeros((2, 2, 2)), y=np.array([1]), lengths=np.array([2]))
    with pytest.raises(DataError, match=r"must be 2-D"):
        read_frames_npz(tmp_path / "b.npz", "b.npz")
    np.savez(tmp_path / "c.npz", X=np.zeros((2, 2)), y=np.array([1]))
    with pytest.raises(DataError, match=r"has no array lengths"):
        read_frames_npz(tmp_path / "c.npz", "c.npz")


def test_datamodule_normalises_with_training_statistics(tmp_path: Path) -> None:
    path = write_frames_npz(tmp_path / "frames.npz")
    dm = SpeechDataModule(data={"train": str(path)}, data_dir=str(tmp_path), batch_size=8)
    dm.prepare_data()
    dm.setup()
    assert {s: len(dm.datasets[s]) for s in ("train", "val", "test")} == \
        {"train": 48, "val": 6, "test": 6}
    train = np.concatenate([x.numpy() for x, _ in dm.datasets["train"].items])
    np.testing.assert_allclose(train.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(train.std(0), 1, atol=1e-3)
    assert dm.spec == ClassifySpec(input_size=13, padding_idx=0, num_classes=3,
                                   class_names=["0", "1", "2"])
    batch = dm.collate(dm.datasets["train"].items[:4])
    assert batch["x"].shape[0] == 4 and batch["x"].shape[2] == 13
    assert int(batch["lengths"].max()) == batch["x"].shape[1]
    assert len(dm.checkpoint_state()["mean"]) == 13


def test_user_ts_files_with_given_test_split(tmp_path: Path) -> None:
    lines = ["@dimensions 2", "@classLabel true a b", "@data"]
    rng = np.random.default_rng(1)
    for i in range(20):
        k = int(rng.integers(3, 6))
        lines.append(":".join(",".join(f"{v:.3f}" for v in rng.normal(i % 2, 1, k))
                              for _ in range(2)) + f":{'ab'[i % 2]}")
    (tmp_path / "train.ts").write_text("\n".join(lines) + "\n")
    (tmp_path / "test.ts").write_text("\n".join(lines[:13]) + "\n")
    dm = SpeechDataModule(data={"train": str(tmp_path / "train.ts"),
                                "test": str(tmp_path / "test.ts")}, data_dir=str(tmp_path))
    dm.setup()
    assert len(dm.datasets["test"]) == 10 and len(dm.datasets["train"]) + len(
        dm.datasets["val"]) == 20
    assert dm.spec.class_names == ["a", "b"]


def test_errors_are_one_sentence(make_config, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task\.data\.train=.*nope\.npz does not exist"):
        run(make_config("task=speech", f"task.data.train={tmp_path / 'nope.npz'}"))
    train = write_frames_npz(tmp_path / "train.npz", dim=13)
    test = write_frames_npz(tmp_path / "test.npz", dim=12)
    with pytest.raises(DataError, match=r"inconsistent frame dimensions \(train 13, val 13, "
                                        r"test 12 features per frame\)"):
        run(make_config("task=speech", f"task.data.train={train}", f"task.data.test={test}"))
    with pytest.raises(ConfigError, match=r"task\.dataset='timit' is unknown"):
        run(make_config("task=speech", "task.dataset=timit"))


def test_short_training_run_on_user_frames(make_config, lab_root: Path, tmp_path: Path) -> None:
    path = write_frames_npz(tmp_path / "frames.npz", n=90)
    metrics = run(make_config("task=speech", f"task.data.train={path}", "model=gru",
                              *FAST["speech"], "trainer.log_every_n_steps=2"))
    assert {"test/acc", "test/f1"} <= set(metrics)
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    exp = client.get_experiment_by_name("speech")
    (latest,) = client.search_runs([exp.experiment_id], max_results=1)
    losses = [m.value for m in client.get_metric_history(latest.info.run_id, "train/loss_epoch")]
    assert len(losses) == 3 and losses[-1] < losses[0]
    artifacts = [a.path for a in client.list_artifacts(latest.info.run_id, "plots")]
    assert "plots/confusion_matrix_test.png" in artifacts


@pytest.mark.slow
@pytest.mark.parametrize(("dataset", "sizes", "dim", "classes"), [
    ("fsdd", 3000, 13, 10), ("japanese_vowels", 640, 12, 9)])
def test_real_corpora(tmp_path: Path, dataset: str, sizes: int, dim: int, classes: int) -> None:
    dm = SpeechDataModule(dataset=dataset, data_dir=str(tmp_path))
    dm.prepare_data()
    dm.setup()
    assert sum(len(dm.datasets[s]) for s in ("train", "val", "test")) == sizes
    assert dm.spec.input_size == dim and dm.spec.num_classes == classes
    if dataset == "japanese_vowels":
        assert len(dm.datasets["test"]) == 370  # the corpus's own test split
