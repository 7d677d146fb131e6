"""What a run's page in the MLflow UI shows: settings as params and folders as tags, exact
metric values, a predictions table the UI previews, datasets with schema and profile, a
model named after its task and model, descriptions on sweep parents and report runs,
honest plot titles, and one stored copy of the best weights."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from helpers import FAST, compose_config, write_sentiment_csv
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from rnnlab.report.compare import main as compare_main
from rnnlab.run.train import run
from rnnlab.tasks.names import NamesTask
from rnnlab.tracking.config_hash import CONFIG_HASH_TAG, config_hash, config_identity
from rnnlab.tracking.mlflow import exact_float
from rnnlab.tracking.predictions import PREVIEW, preview_table
from rnnlab.tracking.run import LOCAL_TAG, TrackedRun, logged_config
from rnnlab.tracking.sweep import sweep_description


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """One tiny sentiment run that logs its servable model, as a user's run does."""
    root = tmp_path_factory.mktemp("page")
    data = write_sentiment_csv(root / "reviews.csv")
    cfg = compose_config(["model=gru", f"task.data.train={data}", *FAST["sentiment"]], root,
                         log_model=True)
    run(cfg)
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("sentiment")
    (found,) = client.search_runs([exp.experiment_id])
    return SimpleNamespace(root=root, client=client, run=found, cfg=cfg)


def _files(client: MlflowClient, run_id: str, path: str | None = None) -> list[str]:
    out = []
    for info in client.list_artifacts(run_id, path):
        out.extend(_files(client, run_id, info.path) if info.is_dir else [info.path])
    return out


# ---- run-local paths ------------------------------------------------------------------------
def test_run_local_paths_are_tags_and_the_config_hash_keeps_its_meaning(page) -> None:
    params, tags = page.run.data.params, page.run.data.tags
    out_dir = tags["rnnlab.output_dir"]
    assert not [k for k, v in params.items() if out_dir in v], "a run folder logged as a param"
    for key in ("paths.output_dir", "paths.log_dir", "trainer.default_root_dir",
                "callbacks.model_checkpoint.dirpath", "callbacks.last_checkpoint.dirpath"):
        assert key not in params and tags[LOCAL_TAG + key], key
    assert tags[LOCAL_TAG + "callbacks.model_checkpoint.dirpath"] == f"{out_dir}/checkpoints"
    assert params["task.monitor"] == "val/acc" and params["paths.data_dir"]  # settings stay
    # params + the path tags are the whole config; its hash is the one the tag holds
    fingerprint = tags["data_fingerprint"]
    whole = logged_config(params, tags)
    assert config_hash(config_identity(whole, fingerprint)) == tags[CONFIG_HASH_TAG]
    full = {k: str(v) for k, v in _flat(page.cfg).items()}
    assert config_hash(config_identity(full, fingerprint)) == tags[CONFIG_HASH_TAG]


def _flat(cfg) -> dict:
    from rnnlab.tracking.mlflow import flatten

    return flatten(OmegaConf.to_container(cfg, resolve=True))


# ---- exact metrics --------------------------------------------------------------------------
def test_float32_noise_becomes_the_number_it_stands_for() -> None:
    assert exact_float(np.float32(0.575)) == 0.575          # not 0.574999988079071
    assert exact_float(float(np.float32(101 / 160))) == 0.63125
    assert exact_float(0.1 + 0.2) == 0.1 + 0.2               # a float64 value is kept
    assert exact_float(16_777_217) == 16_777_217.0           # a count beyond float32
    assert math.isnan(exact_float(float("nan"))) and exact_float(3) == 3.0


def test_logged_accuracies_are_exact_fractions(page) -> None:
    metrics, params = page.run.data.metrics, page.run.data.params
    for split in ("val", "test"):
        n = int(params[f"data.n_{split}"])
        value = metrics[f"{split}/acc"]
        assert value == round(value * n) / n, (split, value)  # k / n, no float32 digits
    assert metrics["best/val/acc"] == metrics["val/acc"]
    for key, value in metrics.items():
        assert len(repr(value)) < 17 or key.startswith(("train/", "val/loss", "test/loss")), (
            key, value)


# ---- predictions preview --------------------------------------------------------------------
def test_predictions_are_also_a_csv_the_ui_previews(page, tmp_path: Path) -> None:
    client, run_id = page.client, page.run.info.run_id
    files = set(_files(client, run_id, "predictions"))
    assert {"predictions/test.parquet", PREVIEW, "predictions/test.json"} <= files
    table = pd.read_csv(client.download_artifacts(run_id, PREVIEW, str(tmp_path)))
    full = pd.read_parquet(client.download_artifacts(run_id, "predictions/test.parquet",
                                                     str(tmp_path)))
    assert len(table) == len(full) == int(page.run.data.params["data.n_test"])
    assert list(table.columns[:5]) == ["example", "input", "gold", "prediction", "score"]
    assert table["example"].is_monotonic_increasing


def test_the_preview_is_capped_and_keeps_scalar_columns() -> None:
    rows = pd.DataFrame({"example": range(10, 0, -1), "input": ["x" * 500] * 10,
                         "score": [1.0] * 10, "ngrams": [[1, 2]] * 10})
    preview = preview_table(rows, max_rows=4)
    assert len(preview) == 4 and list(preview.columns) == ["example", "input", "score"]
    assert preview["example"].is_monotonic_increasing and preview["input"].str.len().max() == 200


# ---- datasets -------------------------------------------------------------------------------
def test_datasets_carry_schema_and_profile(page) -> None:
    params = page.run.data.params
    for dataset_input in page.run.inputs.dataset_inputs:
        split = next(t.value for t in dataset_input.tags if t.key == "mlflow.data.context")
        dataset = dataset_input.dataset
        columns = {c.pop("name"): c for c in json.loads(dataset.schema)["mlflow_colspec"]}
        assert columns["y"]["type"] == columns["lengths"]["type"] == "long", columns
        assert columns["x"]["type"] == "array" and columns["x"]["items"] == {"type": "long"}
        profile = json.loads(dataset.profile)
        assert profile["num_rows"] == int(params[f"data.n_{split}"])
        assert 0 < profile["length_min"] <= profile["length_mean"] <= profile["length_max"]
        assert len(dataset.profile) <= 80  # what the drawer shows uncut


# ---- the logged model -----------------------------------------------------------------------
def test_the_logged_model_is_named_after_task_and_model(page) -> None:
    uri = page.run.data.tags["rnnlab.model_uri"]
    assert uri.startswith("models:/m-")
    model = page.client.get_logged_model(uri.removeprefix("models:/"))
    assert model.name == "sentiment-gru"
    out_dir = page.run.data.tags["rnnlab.output_dir"]
    assert model.tags["rnnlab.checkpoint"] == str(Path(out_dir, "checkpoints", "best.ckpt"))


# ---- artifacts once -------------------------------------------------------------------------
def test_a_run_with_its_model_stores_the_best_weights_once(page) -> None:
    run_id = page.run.info.run_id
    assert not [p for p in _files(page.client, run_id) if p.endswith(".ckpt")]
    stored = [p for p in (page.root / "mlartifacts").rglob("*.ckpt")]
    assert [p.name for p in stored] == ["model.ckpt"]  # the logged model's slim checkpoint
    local = Path(page.run.data.tags["rnnlab.output_dir"]) / "checkpoints"
    assert {p.name for p in local.glob("*.ckpt")} == {"best.ckpt", "last.ckpt"}


def test_without_a_model_the_checkpoint_is_stored_and_last_only_on_request(
        make_config, lab_root: Path, sentiment_csv: Path) -> None:
    run(make_config(f"task.data.train={sentiment_csv}", *FAST["sentiment"],
                    "logger.mlflow.upload_last=true"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    (found,) = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    assert sorted(_files(client, found.info.run_id, "checkpoints")) == [
        "checkpoints/best.ckpt", "checkpoints/last.ckpt"]


class _Store:
    def __init__(self) -> None:
        self.uploaded: list[tuple[str, str]] = []

    def log_artifact(self, run_id: str, path: str, folder: str) -> None:
        self.uploaded.append((path, folder))


def test_a_model_that_fails_to_log_leaves_the_checkpoint_in_the_store(tmp_path: Path) -> None:
    best = tmp_path / "checkpoints" / "best.ckpt"
    best.parent.mkdir()
    best.write_bytes(b"weights")
    (best.parent / "last.ckpt").write_bytes(b"newest")
    store = _Store()
    logger = SimpleNamespace(experiment=store, run_id="r", log_metrics=lambda metrics: None)
    cfg = OmegaConf.create({"task": {"monitor": "val/acc"},
                            "logger": {"mlflow": {"log_model": True}}})
    tracked = TrackedRun(cfg, None, None, [], logger, None, True, False)
    tracked.log_checkpoint(str(best), {})
    assert store.uploaded == []  # left to the model, and last.ckpt stays local

    def fails(_logger):
        raise RuntimeError("cannot predict")
    with pytest.raises(RuntimeError):
        tracked.publish(fails)
    assert store.uploaded == [(str(best), "checkpoints")]


# ---- descriptions ---------------------------------------------------------------------------
def test_a_sweep_parent_describes_its_command(tmp_path: Path) -> None:
    OmegaConf.save(OmegaConf.create({"hydra": {"overrides": {"task": ["model=gru,lstm",
                                                                       "seed=1,2"]}}}),
                   tmp_path / "multirun.yaml")
    text = sweep_description("s1", tmp_path)
    assert "python train.py --multirun model=gru,lstm seed=1,2" in text and str(tmp_path) in text


def test_report_runs_are_named_by_time_and_filters_and_described(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    exp = client.create_experiment("sentiment", artifact_location=(tmp_path / "art").as_uri())
    for model, val in (("gru", 0.7), ("lstm", 0.8)):
        rid = client.create_run(exp, tags={"task": "sentiment", "model": model,
                                           "seed": "1"}).info.run_id
        client.log_param(rid, "task.monitor", "val/acc")
        client.log_param(rid, "task.mode", "max")
        client.log_metric(rid, "best/val/acc", val)
        client.log_metric(rid, "test/acc", val)
        client.set_terminated(rid, "FINISHED")
    assert compare_main(["--tracking-uri", uri, "--out", str(tmp_path / "rep"),
                         "--models", "gru,lstm", "--resamples", "0"]) == 0
    reports = client.get_experiment_by_name("reports")
    (report,) = client.search_runs([reports.experiment_id])
    assert report.info.run_name.startswith("report 20")
    assert report.info.run_name.endswith(" models=gru,lstm")
    note = report.data.tags["mlflow.note.content"]
    assert "compare.py" in note and "--models gru,lstm" in note and "2 entries" in note


# ---- plot titles ----------------------------------------------------------------------------
def test_the_names_plot_says_it_reads_generated_names(monkeypatch) -> None:
    import rnnlab.tasks.names as names_task

    figures = []
    monkeypatch.setattr(names_task, "log_figure", lambda trainer, fig, path: figures.append(fig))
    real = {"fr": ["Jean", "Pierre", "Louis", "Marie", "Claire", "Anne"],
            "de": ["Hans", "Karl", "Fritz", "Heidi", "Greta", "Ursula"]}
    examples = [(c, n) for c, names in real.items() for n in names]
    stub = SimpleNamespace(
        trainer=SimpleNamespace(datamodule=SimpleNamespace(examples=lambda split: examples)),
        eval_samples=2, categories=["fr", "de"], classifier_ngrams=(1, 3), classifier_c=1.0,
        eval_temperature=1.0, eval_seed=0, decode=lambda name: name,
        sample_ids=lambda wanted, t, seed: ["Hans", "Karl", "Jean", "Pierre"])
    NamesTask._category_metrics(stub)
    title = figures[0].axes[0].get_title()
    assert not title.startswith("test accuracy")
    assert "generated names" in title and "classifier" in title
