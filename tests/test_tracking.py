"""MLflow as its users use it: the training view, system metrics, dataset inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FAST
from mlflow.tracking import MlflowClient

from rnnlab.run.train import run

SENTIMENT = FAST["sentiment"]


def _only_run(root: Path):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("sentiment")
    (found,) = client.search_runs([exp.experiment_id])
    return client, exp, found


def test_experiments_open_in_the_training_view_and_system_metrics_are_opt_in(
        make_config, lab_root: Path, sentiment_csv: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT))
    client, exp, first = _only_run(lab_root)
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert not [k for k in first.data.metrics if k.startswith("system/")]  # off by default
    client.delete_run(first.info.run_id)
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.2")
    run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT,
                    "logger.mlflow.log_system_metrics=true", "trainer.max_epochs=3"))
    _, _, second = _only_run(lab_root)
    assert second.info.status == "FINISHED"
    assert "system/cpu_utilization_percentage" in second.data.metrics
    assert "system/system_memory_usage_megabytes" in second.data.metrics


def test_every_split_is_a_dataset_input_with_fingerprint_and_source(make_config, lab_root: Path,
                                                                     sentiment_csv: Path) -> None:
    run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT))
    _, _, found = _only_run(lab_root)
    inputs = {next(t.value for t in d.tags if t.key == "mlflow.data.context"): d.dataset
              for d in found.inputs.dataset_inputs}
    assert set(inputs) == {"train", "val", "test"}
    fingerprint = found.data.tags["data_fingerprint"]
    for split, dataset in inputs.items():
        assert dataset.name == f"sentiment/{sentiment_csv.name}"
        assert dataset.digest == f"{fingerprint}:{split}"
        assert sentiment_csv.resolve().as_uri() in dataset.source  # carved from the one file


def test_corpora_name_their_pinned_distribution(tmp_path: Path) -> None:
    from rnnlab.data.g2p import CMUDICT, G2PDataModule
    from rnnlab.data.synthetic import AddingDataModule

    name, uri = G2PDataModule(data_dir=str(tmp_path)).data_source("test")
    assert name == "cmudict"
    assert uri == f"https://pypi.org/project/cmudict/1.1.3/#sha256={CMUDICT.sha256}"
    assert AddingDataModule().data_source("train")[1] == "generated"


@pytest.mark.servable_model
def test_model_logging_can_be_switched_off(make_config, lab_root: Path,
                                           sentiment_csv: Path) -> None:
    run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT, "logger.mlflow.log_model=false"))
    _, _, found = _only_run(lab_root)
    assert found.info.status == "FINISHED" and "rnnlab.model_uri" not in found.data.tags
    run(make_config(f"task.data.train={sentiment_csv}", *SENTIMENT,
                    f"paths.output_dir={lab_root}/outputs/run2"))
    client = MlflowClient(f"sqlite:///{lab_root}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentiment").experiment_id])
    assert sum("rnnlab.model_uri" in r.data.tags for r in runs) == 1
