"""task=forecast data side: windows, transforms, metrics, baselines, bad input.

Every fixture is a CSV written here in the user-file format (date column, value columns);
nothing is downloaded in the default suite.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from helpers import seasonal_values, write_series_csv

from rnnlab.baselines.statistical import ARIMA, ETS, Naive, SeasonalNaive
from rnnlab.core.errors import ConfigError, DataError
from rnnlab.data.forecast import ForecastDataModule, SeriesTransform, window_starts
from rnnlab.metrics.forecast import forecast_metrics, mae, mape, mase, rmse, smape


def make_dm(path: Path, tmp_path: Path, **kwargs) -> ForecastDataModule:
    data = {"path": str(path), "target": kwargs.pop("target", "y"), "date_column": "month",
            **kwargs.pop("data", {})}
    defaults = {"window": 12, "horizon": 6, "test_size": 12, "val_size": 12,
                "transform": {"log": False, "seasonal_diff": False, "scale": "none"}}
    dm = ForecastDataModule(data=data, data_dir=str(tmp_path / "data"), **{**defaults, **kwargs})
    dm.setup()
    return dm


# ---- windows --------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["direct", "recursive"])
def test_no_test_or_val_point_is_a_training_target(tmp_path: Path, strategy: str) -> None:
    n = 80  # the value of each point is its index, so a target reveals where it came from
    path = write_series_csv(tmp_path / "idx.csv", {"y": list(range(n))})
    dm = make_dm(path, tmp_path, strategy=strategy)
    val_start, test_start = n - 24, n - 12
    assert dm.periods["val"].origin == val_start and dm.periods["test"].origin == test_start
    # the task learns which periods to forecast whole from the spec, not from the datamodule
    assert dm.spec.periods == {"val": 12, "test": 12}
    train_targets = np.concatenate([y.numpy().ravel() for _, y in dm.datasets["train"].items])
    assert train_targets.max() < val_start
    for x, y in dm.datasets["train"].items:  # windows are contiguous: input then target
        assert y.numpy()[0, 0] == x.numpy()[-1, 0] + 1
    val_targets = np.concatenate([y.numpy().ravel() for _, y in dm.datasets["val"].items])
    assert val_targets.max() < test_start and val_targets.max() >= val_start
    test_last = [y.numpy()[-1, 0] for _, y in dm.datasets["test"].items]
    assert min(test_last) >= test_start and max(test_last) == n - 1
    steps = 6 if strategy == "direct" else 1
    assert len(dm.datasets["train"]) == val_start - 12 - steps + 1
    batch = dm.collate(dm.datasets["train"].items[:3])
    assert batch["x"].shape == (3, 12, 1) and batch["y"].shape == (3, steps, 1)
    assert dm.truth("test")[:, 0].tolist() == list(range(test_start, n))
    assert len(dm.history("test")) == test_start


def test_window_starts_respects_bounds() -> None:
    assert window_starts(0, 10, 3, 2) == [0, 1, 2, 3, 4, 5]
    assert window_starts(2, 10, 3, 2, last_target_from=8) == [4, 5]  # last target >= 8
    assert window_starts(0, 4, 3, 2) == []


def test_scaling_is_fitted_on_training_points_only(tmp_path: Path) -> None:
    values = [1.0] * 56 + [1000.0] * 24  # a jump only in val/test must not move the scaler
    path = write_series_csv(tmp_path / "jump.csv", {"y": values})
    dm = make_dm(path, tmp_path, transform={"scale": "minmax"})
    assert dm.transform.shift.tolist() == [1.0] and dm.transform.spread.tolist() == [1.0]


# ---- transforms -------------------------------------------------------------------------
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("seasonal_diff", [False, True])
@pytest.mark.parametrize("scale", ["standard", "minmax", "none"])
def test_inverse_transform_round_trips(log: bool, seasonal_diff: bool, scale: str) -> None:
    x = np.stack([seasonal_values(72), seasonal_values(72, seed=1) * 3], axis=1)
    t = SeriesTransform(log, seasonal_diff, scale, period=12, log_columns=[0, 1])
    t.fit(x, train_end=48, source="toy", names=["a", "b"])
    z = t.forward(x)
    for origin in (36, 48, 60):  # undoing the difference reads the history before the origin
        back = t.inverse(z[origin:], x[:origin])
        np.testing.assert_allclose(back, x[origin:], rtol=1e-9)
    served = SeriesTransform.from_state(t.state())  # as the checkpoint carries it
    np.testing.assert_array_equal(served.forward(x), z)
    np.testing.assert_array_equal(served.inverse(z[48:], x[:48]), t.inverse(z[48:], x[:48]))


def test_log_refuses_non_positive_values(tmp_path: Path) -> None:
    path = write_series_csv(tmp_path / "neg.csv", {"y": list(seasonal_values(60) - 150)})
    with pytest.raises(DataError, match=r"column 'y' has values <= 0, so task.transform.log"):
        make_dm(path, tmp_path, transform={"log": True})


# ---- metrics ----------------------------------------------------------------------------
def test_metrics_match_hand_computed_values() -> None:
    y, p = np.array([100.0, 200.0, 400.0]), np.array([110.0, 180.0, 400.0])
    assert mae(y, p) == pytest.approx(10.0)  # (10 + 20 + 0) / 3
    assert rmse(y, p) == pytest.approx(math.sqrt((100 + 400) / 3))
    assert mape(y, p) == pytest.approx(100 * (0.1 + 0.1 + 0) / 3)
    assert smape(y, p) == pytest.approx(100 * (20 / 210 + 40 / 380 + 0) / 3)
    history = np.array([1.0, 2.0, 4.0, 3.0, 5.0])  # lag-2 naive errors: 3, 1, 1 -> scale 5/3
    assert mase(y, p, history, season=2) == pytest.approx(10.0 / (5 / 3))
    assert mase(y, p, history, season=1) == pytest.approx(10.0 / 1.5)  # errors 1, 2, 1, 2
    out = forecast_metrics(np.stack([y, y], 1), np.stack([p, y], 1), np.stack([history] * 2, 1),
                           2, "test/")
    assert out["test/mae"] == pytest.approx(5.0) and set(out) == {
        "test/mae", "test/rmse", "test/mape", "test/smape", "test/mase"}
    assert mape(np.array([0.0, 10.0]), np.array([1.0, 11.0])) == pytest.approx(10.0)  # 0 skipped
    assert smape(np.zeros(2), np.zeros(2)) == 0.0


# ---- baselines --------------------------------------------------------------------------
def test_baselines_on_a_toy_seasonal_series() -> None:
    periodic = np.tile([5.0, 7.0, 9.0, 6.0], 10)
    np.testing.assert_allclose(SeasonalNaive().predict(periodic[:30], 10, 4), periodic[30:])
    assert Naive().predict(periodic[:30], 3, 4).tolist() == [periodic[29]] * 3
    ramp = np.tile([0.0, 5.0, 2.0], 6) + np.repeat(np.arange(6) * 10.0, 3)  # +10 a season
    np.testing.assert_allclose(SeasonalNaive(drift=True).predict(ramp[:12], 6, 3), ramp[12:])
    x = seasonal_values(120, noise=0.5)  # additive season
    t = np.arange(120)
    x_mul = (100 + 1.5 * t) * (1 + 0.15 * np.sin(2 * math.pi * t / 12))  # season grows with level
    for model, series in ((ETS(trend="add", seasonal="add"), x), (ARIMA(order=(0, 1, 1)), x),
                          (ETS(), x_mul)):
        forecast = model.predict(series[:96], 24, 12)
        assert mape(series[96:], forecast) < 2.0, type(model).__name__
    snaive = mape(x[96:], SeasonalNaive().predict(x[:96], 24, 12))
    assert snaive > 5 * mape(x[96:], ETS(seasonal="add").predict(x[:96], 24, 12))  # trend matters


# ---- bad input ----------------------------------------------------------------------------
def test_short_series_is_refused_with_the_needed_length(tmp_path: Path) -> None:
    path = write_series_csv(tmp_path / "short.csv", {"y": list(seasonal_values(40))})
    with pytest.raises(DataError, match=r"short\.csv has 40 points, fewer than the 54 needed for "
                                        r"seasonal lag \(12\) \+ task.window \(12\)"):
        make_dm(path, tmp_path, horizon=6, transform={"seasonal_diff": True})


def test_missing_non_numeric_and_empty_columns(tmp_path: Path) -> None:
    values = list(seasonal_values(60))
    path = write_series_csv(tmp_path / "s.csv", {"y": values})
    with pytest.raises(DataError, match=r"s\.csv, line 1: missing column\(s\) sales"):
        make_dm(path, tmp_path, target="sales")
    bad = write_series_csv(tmp_path / "bad.csv", {"y": values[:5] + ["n/a?"] + values[6:]})
    with pytest.raises(DataError, match=r"bad\.csv, line 7: column 'y' holds the non-numeric "
                                        r"value 'n/a\?'"):
        make_dm(bad, tmp_path)
    empty = write_series_csv(tmp_path / "empty.csv", {"y": values, "x": [None] * 60})
    with pytest.raises(DataError, match=r"empty\.csv: column 'x' has no values at all"):
        make_dm(empty, tmp_path, data={"input_columns": ["x"]})
    with pytest.raises(ConfigError, match="task.dataset='airplanes' is unknown; use one of airline"):
        ForecastDataModule(dataset="airplanes").prepare_data()
    # task.strategy, task.window and the other settings: test_schema.py


def test_gaps_are_interpolated_and_counted(tmp_path: Path) -> None:
    values: list = list(range(60))
    values[10] = values[11] = values[30] = None
    values[0] = None  # an edge gap takes the nearest value
    path = write_series_csv(tmp_path / "gaps.csv", {"y": values})
    dm = make_dm(path, tmp_path)
    assert dm.describe()["n_interpolated"] == 4
    assert dm.series.values[10:12, 0].tolist() == [10.0, 11.0] and dm.series.values[0, 0] == 1.0


def test_multivariate_inputs_and_several_targets(tmp_path: Path) -> None:
    a, b = seasonal_values(72), seasonal_values(72, seed=2) * 2
    path = write_series_csv(tmp_path / "multi.csv", {"a": list(a), "b": list(b), "c": list(a + b)})
    dm = make_dm(path, tmp_path, target=["a", "c"], data={"input_columns": ["b"]},
                 transform={"seasonal_diff": True})
    assert dm.series.columns == ["b", "a", "c"] and dm.spec.targets == [1, 2]
    assert dm.spec.input_size == 3 and dm.spec.season == 12  # monthly dates -> 12
    assert dm.truth("test").shape == (12, 2)


@pytest.mark.parametrize(("dataset", "columns", "season"), [("co2", 1, 52), ("sunspots", 1, 1),
                                                           ("macrodata", 12, 4)])
def test_statsmodels_series(dataset: str, columns: int, season: int, tmp_path: Path) -> None:
    import pandas as pd
    import statsmodels

    dm = ForecastDataModule(dataset=dataset, data_dir=str(tmp_path), window=8, horizon=4,
                            test_size=20, val_size=20)
    dm.setup()
    assert dm.spec.input_size == columns and dm.spec.season == season
    raw = pd.read_csv(Path(statsmodels.__file__).parent / "datasets" / dataset / f"{dataset}.csv")
    assert len(dm.series.values) == len(raw)
    if dataset == "co2":  # weekly readings with gaps, filled and counted
        assert dm.describe()["n_interpolated"] == int(raw["co2"].isna().sum()) > 0
