"""task=forecast end to end: every backbone and baseline on a toy CSV, tracked in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import FAST, compose_config, seasonal_values, slow_except, write_series_csv
from mlflow.tracking import MlflowClient

from rnnlab.core.errors import UserError
from rnnlab.models import CELLS
from rnnlab.run.train import run

FORECAST = FAST["forecast"]
SMALL = {"transformer": ["model.d_model=16", "model.nhead=2", "model.dim_feedforward=32"]}
METRICS = ("mae", "rmse", "mape", "smape", "mase")


@pytest.fixture(scope="module")
def shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One project root (one MLflow store) for the module: creating a store costs seconds."""
    return tmp_path_factory.mktemp("forecast_lab")


@pytest.fixture(scope="module")
def series_csv(shared_root: Path) -> Path:
    return write_series_csv(shared_root / "sales.csv", {"sales": list(seasonal_values(96))})


def _user(path: Path) -> list[str]:
    return [f"task.data.path={path}", "task.data.target=sales", "task.data.date_column=month"]


def _config(root: Path, *overrides: str):
    return compose_config(["task=forecast", *overrides], root)


def _latest_run(root: Path, model: str):
    client = MlflowClient(f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("forecast")
    runs = client.search_runs([exp.experiment_id], filter_string=f"tags.model = '{model}'",
                              order_by=["attributes.start_time DESC"])
    return client, runs[0]


def _assert_tracked(client: MlflowClient, r, model: str) -> None:
    assert r.info.status == "FINISHED" and r.data.tags["model"] == model
    for name in METRICS:
        assert f"test/{name}" in r.data.metrics and f"val/{name}" in r.data.metrics
    plots = [a.path for a in client.list_artifacts(r.info.run_id, "plots")]
    assert "plots/forecast_test.png" in plots


# every cell trains sentiment in the default suite; here one recurrent model and the Transformer
@pytest.mark.parametrize("model", slow_except([*CELLS, "transformer"], "lstm", "transformer"))
def test_each_backbone_trains_and_logs_a_forecast(model: str, series_csv: Path,
                                                  shared_root: Path) -> None:
    small = SMALL.get(model, ["model.hidden_size=16"])
    metrics = run(_config(shared_root, f"model={model}", *_user(series_csv), *FORECAST, *small))
    client, r = _latest_run(shared_root, model)
    history = [m.value for m in sorted(client.get_metric_history(r.info.run_id, "train/loss_epoch"),
                                       key=lambda m: m.step)]
    assert len(history) == 4 and history[-1] < history[0]
    _assert_tracked(client, r, model)
    assert metrics["test/mape"] == pytest.approx(r.data.metrics["test/mape"])
    assert r.data.params["data.season"] == "12" and r.data.params["data.targets"] == "sales"


def test_recursive_strategy_and_log_transform(series_csv: Path, shared_root: Path) -> None:
    metrics = run(_config(shared_root, "model=gru", *_user(series_csv), *FORECAST,
                              "model.hidden_size=16", "task.strategy=recursive",
                              "task.transform.log=true"))
    assert metrics["test/mape"] < 20  # 12 recursive steps on a smooth series stay close


@pytest.mark.parametrize("model", ["naive", "seasonal_naive", "ets", "arima"])
def test_baselines_are_logged_like_runs(model: str, series_csv: Path, shared_root: Path) -> None:
    metrics = run(_config(shared_root, f"model={model}", *_user(series_csv), *FORECAST))
    client, r = _latest_run(shared_root, model)
    _assert_tracked(client, r, model)
    assert metrics["test/mape"] == pytest.approx(r.data.metrics["test/mape"])


def test_baseline_on_another_task_is_refused(make_config) -> None:
    with pytest.raises(UserError, match="model=ets is a baseline for forecast tasks"):
        run(make_config("model=ets"))


def test_missing_target_setting_is_one_sentence(make_config, tmp_path: Path) -> None:
    series_csv = write_series_csv(tmp_path / "s.csv", {"sales": list(seasonal_values(60))})
    with pytest.raises(UserError, match="task.data.path is set but task.data.target is not"):
        run(make_config("model=gru", "task=forecast", f"task.data.path={series_csv}"))


@pytest.mark.slow
# ETS is fitted by a numerical optimiser, so its MAPE moves with the installed numeric stack:
# 5.64 with statsmodels 0.15 / pandas 3.1 / numpy 2.4 / scipy 1.17, below 5.6 in earlier runs.
# The band checks the baseline is the published kind of ETS (about 5.1); the bar itself
# (recurrent < ETS < seasonal naive) is the next test.
@pytest.mark.parametrize(("model", "low", "high"), [("seasonal_naive", 13.0, 13.4),
                                                     ("ets", 4.5, 6.0)])
def test_airline_baselines_match_published_figures(model: str, low: float, high: float,
                                                   make_config) -> None:
    metrics = run(make_config(f"model={model}", "task=forecast"))  # downloads the sktime wheel
    assert low < metrics["test/mape"] < high


@pytest.mark.slow
def test_recurrent_model_beats_ets_and_seasonal_naive_on_airline(make_config) -> None:
    """The bar in targets.md, measured side by side on the same test period."""
    scores = {m: run(make_config(f"model={m}", "task=forecast"))["test/mape"]
              for m in ("lstm", "ets", "seasonal_naive")}
    assert scores["lstm"] < scores["ets"] < scores["seasonal_naive"], scores
