"""task=motion and the sequence-classification baselines: the UEA/UCR readers on tiny
``.ts`` files in the archive's real format (and a wheel in sktime's layout), DTW against a
brute-force DTW, ROCKET's determinism and variable-length reading, short runs of the two
baselines and of ``experiment=motion``, and BM25 against a hand computation."""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

import rnnlab.data.uea as uea
from rnnlab.baselines.dtw import dtw_distances
from rnnlab.baselines.rocket import make_kernels, transform
from rnnlab.baselines.tfidf import BM25Vectorizer
from rnnlab.core.errors import ConfigError
from rnnlab.data.sources import PinnedDistribution, sha256_of
from rnnlab.data.uea import MotionDataModule, read_uea
from rnnlab.run.train import run

CLASSES = ("Walking", "Running")


def ts_text(n: int, seed: int, channels: int = 2, length: int = 30,
            equal: bool = True) -> str:
    """``n`` series in the UEA ``.ts`` format: class ``Walking`` a slow sine on every
    channel, ``Running`` a fast one, plus noise (so a classifier can beat chance)."""
    rng = np.random.default_rng(seed)
    lines = ["# written by tests/test_motion.py", "@problemName Tiny", "@timeStamps false",
             "@missing false", f"@univariate {'true' if channels == 1 else 'false'}",
             f"@dimensions {channels}", f"@equalLength {'true' if equal else 'false'}",
             f"@classLabel true {' '.join(CLASSES)}", "@data"]
    for i in range(n):
        label = CLASSES[i % 2]
        steps = length if equal else int(rng.integers(length // 2, length + 1))
        t = np.arange(steps)
        freq = 0.15 if label == "Walking" else 0.6
        chans = [np.sin(freq * t + rng.uniform(0, 6)) + rng.normal(0, 0.3, steps)
                 for _ in range(channels)]
        lines.append(":".join(",".join(f"{v:.4f}" for v in c) for c in chans) + f":{label}")
    return "\n".join(lines) + "\n"


def write_ts(path: Path, n: int, seed: int, **kwargs: object) -> Path:
    path.write_text(ts_text(n, seed, **kwargs), encoding="utf-8")
    return path


@pytest.fixture
def fake_sktime(lab_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheel in sktime's layout holding a made-up BasicMotions, pinned by its own sha256."""
    cache = lab_root / "data" / "cache"
    cache.mkdir(parents=True)
    wheel = cache / "sktime-1.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for split, n, seed in (("TRAIN", 40, 1), ("TEST", 24, 2)):
            zf.writestr(f"sktime/datasets/data/BasicMotions/BasicMotions_{split}.ts",
                        ts_text(n, seed, channels=6, length=40))
    monkeypatch.setattr(uea, "SKTIME", PinnedDistribution("sktime", "1.2.0", sha256_of(wheel)))
    return wheel


# ---- readers ------------------------------------------------------------------------------
def test_archive_reader_keeps_the_archives_split(fake_sktime: Path) -> None:
    parts = read_uea(fake_sktime, "BasicMotions")
    assert {s: len(parts[s][1]) for s in parts} == {"train": 40, "test": 24}
    assert parts["train"][0][0].shape == (40, 6)  # time x channels
    assert set(parts["test"][1]) == set(CLASSES)


def test_builtin_set_carves_val_off_train_only(fake_sktime: Path, lab_root: Path) -> None:
    dm = MotionDataModule(data_dir=str(lab_root / "data"))
    dm.prepare_data()
    dm.setup()
    sizes = {s: len(dm.datasets[s]) for s in ("train", "val", "test")}
    assert sizes["test"] == 24 and sizes["train"] + sizes["val"] == 40
    assert sizes["val"] == math.ceil(40 * 0.15 / 0.85)  # stratified: val / (train + val)
    assert dm.spec.input_size == 6 and dm.spec.class_names == sorted(CLASSES)
    again = MotionDataModule(data_dir=str(lab_root / "data"))
    again.setup()
    assert again.fingerprint == dm.fingerprint  # the same prepared split, read back


def test_variable_length_univariate_user_files(tmp_path: Path) -> None:
    train = write_ts(tmp_path / "train.ts", 20, 3, channels=1, equal=False)
    test = write_ts(tmp_path / "test.ts", 10, 4, channels=1, equal=False)
    dm = MotionDataModule(data={"train": str(train), "test": str(test)},
                          data_dir=str(tmp_path))
    dm.setup()
    assert len(dm.datasets["test"]) == 10 and dm.spec.input_size == 1
    assert len({x.shape[0] for x, _ in dm.datasets["train"].items}) > 1


def test_unknown_set_is_one_sentence(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"task\.dataset='GunPoints' is unknown; use one of "
                                          r"BasicMotions, .* \(did you mean task\.dataset="
                                          r"GunPoint\?\)"):
        MotionDataModule(dataset="GunPoints", data_dir=str(tmp_path)).prepare_data()


# ---- DTW ------------------------------------------------------------------------------------
def brute_dtw(a: np.ndarray, b: np.ndarray, band: int | None = None) -> float:
    """DTW by its definition: every cell of the cost table, one at a time. The band lets
    step i of ``a`` meet steps i - band + 1 .. i + band - 1 of ``b``, widened on the side
    of the longer series by the length difference (so the last cell stays reachable)."""
    table = np.full((len(a) + 1, len(b) + 1), np.inf)
    table[0, 0] = 0.0
    below, above = max(0, len(a) - len(b)), max(0, len(b) - len(a))
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            if band is not None and not i - below - band < j < i + above + band:
                continue
            cost = float(((a[i - 1] - b[j - 1]) ** 2).sum())
            table[i, j] = cost + min(table[i - 1, j - 1], table[i - 1, j], table[i, j - 1])
    return math.sqrt(table[-1, -1])


@pytest.mark.parametrize("window", [None, 0.3])
def test_dtw_equals_brute_force(window: float | None) -> None:
    rng = np.random.default_rng(0)
    series = [rng.normal(size=(int(rng.integers(4, 12)), 3)) for _ in range(9)]
    got = dtw_distances(series[:4], series[4:], window)
    band = None if window is None else math.ceil(window * max(len(s) for s in series))
    want = np.array([[brute_dtw(a, b, band) for b in series[4:]] for a in series[:4]])
    np.testing.assert_allclose(got, want, rtol=1e-9)


# ---- ROCKET ----------------------------------------------------------------------------------
def test_rocket_kernels_and_features_are_fixed_by_the_seed() -> None:
    rng = np.random.default_rng(1)
    series = [rng.normal(size=(50, 3)) for _ in range(4)]
    one, two = (transform(series, make_kernels(300, 50, 3, seed=7)) for _ in range(2))
    np.testing.assert_array_equal(one, two)
    other = transform(series, make_kernels(300, 50, 3, seed=8))
    assert one.shape == (4, 600) and not np.allclose(one, other)
    kernels = make_kernels(300, 50, 3, seed=7)
    assert set(kernels.lengths) <= {7, 9, 11} and kernels.biases.min() >= -1
    assert kernels.dilations.min() >= 1 and (kernels.lengths - 1) @ np.ones(300) > 0
    for k in range(300):  # mean-centred weights on each chosen channel
        w = kernels.weights[k, :kernels.channels[k].size, :kernels.lengths[k]]
        np.testing.assert_allclose(w.mean(axis=1), 0, atol=1e-12)
    assert one[:, 0::2].min() >= 0 and one[:, 0::2].max() <= 1  # ppv is a proportion


def test_rocket_reads_each_series_at_its_own_length() -> None:
    """Padding a short series beside long ones changes none of its features."""
    rng = np.random.default_rng(2)
    short, long = rng.normal(size=(20, 2)), rng.normal(size=(45, 2))
    kernels = make_kernels(200, 45, 2, seed=3)
    together = transform([short, long], kernels)
    np.testing.assert_allclose(together[0], transform([short], kernels)[0])


# ---- runs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["rocket", "dtw_1nn"])
def test_baseline_runs_beat_chance(model: str, make_config, tmp_path: Path,
                                   lab_root: Path) -> None:
    train = write_ts(tmp_path / "train.ts", 30, 5, equal=False)
    test = write_ts(tmp_path / "test.ts", 20, 6, equal=False)
    extra = ["model.num_kernels=200"] if model == "rocket" else ["model.window_grid=[0.2,null]"]
    metrics = run(make_config("task=motion", f"model={model}", f"task.data.train={train}",
                              f"task.data.test={test}", *extra))
    assert metrics["test/acc"] >= 0.8 and "val/acc" in metrics
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    (latest,) = client.search_runs([client.get_experiment_by_name("motion").experiment_id])
    assert latest.data.tags["model"] == model
    artifacts = {a.path for a in client.list_artifacts(latest.info.run_id, "predictions")}
    assert "predictions/test.parquet" in artifacts


def test_experiment_motion_trains(make_config, fake_sktime: Path, lab_root: Path) -> None:
    metrics = run(make_config("experiment=motion", "model.hidden_size=16",
                              "trainer.max_epochs=4", "callbacks=none"))
    assert "test/acc" in metrics
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    (latest,) = client.search_runs([client.get_experiment_by_name("motion").experiment_id])
    assert latest.data.params["task.dataset"] == "BasicMotions"
    losses = [m.value for m in client.get_metric_history(latest.info.run_id, "train/loss_epoch")]
    assert len(losses) == 4 and losses[-1] < losses[0]


# ---- BM25 ------------------------------------------------------------------------------------
def test_bm25_weights_match_a_hand_computation() -> None:
    docs = ["a b a", "b c", "a c c d"]
    vec = BM25Vectorizer(tokenizer=str.split, k1=1.2, b=0.75, norm=None).fit(docs)
    weights = vec.transform(docs).toarray()
    names = list(vec.get_feature_names_out())
    avgdl = (3 + 2 + 4) / 3

    def bm25(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (3 - df + 0.5) / (df + 0.5))
        return idf * tf * 2.2 / (tf + 1.2 * (1 - 0.75 + 0.75 * dl / avgdl))

    assert names == ["a", "b", "c", "d"]
    want = np.array([[bm25(2, 2, 3), bm25(1, 2, 3), 0, 0],
                     [0, bm25(1, 2, 2), bm25(1, 2, 2), 0],
                     [bm25(1, 2, 4), 0, bm25(2, 2, 4), bm25(1, 1, 4)]])
    np.testing.assert_allclose(weights, want, rtol=1e-12)
    unit = BM25Vectorizer(tokenizer=str.split).fit_transform(docs).toarray()
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0)


def test_bm25_and_tfidf_share_the_split(make_config, sentiment_csv: Path) -> None:
    tfidf = run(make_config("model=tfidf_logreg", f"task.data.train={sentiment_csv}"))
    bm25 = run(make_config("model=bm25_logreg", f"task.data.train={sentiment_csv}"))
    assert {"test/acc", "baseline/C"} <= set(bm25) and bm25.keys() == tfidf.keys()


@pytest.mark.servable_model
@pytest.mark.parametrize("model", ["rocket", "dtw_1nn"])
def test_served_baseline_answers_like_the_run(model: str, make_config, tmp_path: Path,
                                              lab_root: Path) -> None:
    """The logged pyfunc model reads raw frames and gives the run's test predictions."""
    import mlflow.pyfunc
    import pandas as pd

    train = write_ts(tmp_path / "train.ts", 24, 7)
    test = write_ts(tmp_path / "test.ts", 6, 8)
    extra = ["model.num_kernels=100"] if model == "rocket" else []
    metrics = run(make_config("task=motion", f"model={model}", f"task.data.train={train}",
                              f"task.data.test={test}", *extra))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    (latest,) = client.search_runs([client.get_experiment_by_name("motion").experiment_id])
    mlflow.set_tracking_uri(f"sqlite:///{lab_root}/mlflow.db")
    served = mlflow.pyfunc.load_model(latest.data.tags["rnnlab.model_uri"])
    frames, labels = uea.parse_ts(test.read_text(), "test.ts")
    out = served.predict(pd.DataFrame({"frames": [f.tolist() for f in frames]}))
    assert list(out.columns) == ["label", "probability"]
    accuracy = float(np.mean([a == b for a, b in zip(out["label"], labels, strict=True)]))
    assert accuracy == pytest.approx(metrics["test/acc"])
