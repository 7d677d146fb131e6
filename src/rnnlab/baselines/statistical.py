"""Statistical forecasting baselines: the yardsticks a recurrent forecaster must clear.

Each one answers exactly the networks' question: fitted on everything before a period,
forecast the whole period from its start, scored on the original scale with the same
metrics and plotted the same way. The validation period is forecast from a fit on the
training part, the test period from a fit on training + validation (as the networks'
forecasts of the test period also read the validation points). Several targets are
forecast one at a time.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from rnnlab.baselines.base import Baseline
from rnnlab.core.errors import ConfigError
from rnnlab.metrics.forecast import score_period
from rnnlab.tracking.artifacts import log_figure


class ForecastBaseline(Baseline):
    families = ("forecast",)
    label = "baseline"

    def predict(self, history: np.ndarray, steps: int, season: int) -> np.ndarray:
        """Forecast ``steps`` values after a 1-D ``history``."""
        raise NotImplementedError

    def fit_evaluate(self, datamodule: Any, run: Any) -> dict[str, float]:
        dm = datamodule
        metrics: dict[str, float] = {}
        for split in ("val", "test"):
            history = dm.history(split)[:, dm.series.targets]
            steps = dm.periods[split].steps
            with warnings.catch_warnings():  # statsmodels' convergence chatter
                warnings.simplefilter("ignore")
                forecast = np.stack([self.predict(history[:, j], steps, dm.spec.season)
                                     for j in range(history.shape[1])], axis=1)
            scores, figure = score_period(dm, split, forecast, self.label, plot=split == "test")
            metrics.update(scores)
            if figure is not None:
                log_figure(run, figure, f"plots/forecast_{split}.png")
        return metrics


class Naive(ForecastBaseline):
    """Every future value equals the last one seen (a random walk's best guess)."""

    label = "naive"

    def predict(self, history: np.ndarray, steps: int, season: int) -> np.ndarray:
        return np.repeat(history[-1], steps)


class SeasonalNaive(ForecastBaseline):
    """Every future value equals the value one season earlier (last season repeated).

    ``drift=true`` adds the history's mean change over one season for every season
    ahead: the forecast a network makes when it predicts "no news" on seasonally
    differenced data, so it shows what a network adds beyond the transform."""

    label = "seasonal naive"

    def __init__(self, season: int | None = None, drift: bool = False) -> None:
        self.season, self.drift = season, drift

    def predict(self, history: np.ndarray, steps: int, season: int) -> np.ndarray:
        m = self.season or season
        m = m if len(history) > m else 1
        out = np.resize(history[-m:], steps)  # tiles the last season over the horizon
        if self.drift:
            seasons_ahead = np.arange(steps) // m + 1
            out = out + seasons_ahead * np.mean(history[m:] - history[:-m])
        return out


class ETS(ForecastBaseline):
    """Holt-Winters exponential smoothing (statsmodels), settings from the config (which the
    config schema checks)."""

    label = "ETS"

    def __init__(self, trend: str | None = "add", seasonal: str | None = "mul",
                 damped_trend: bool = False, use_boxcox: bool = False) -> None:
        self.trend, self.seasonal = trend, seasonal
        self.damped_trend, self.use_boxcox = damped_trend, use_boxcox

    def predict(self, history: np.ndarray, steps: int, season: int) -> np.ndarray:
        # statsmodels: about a second to import, for these models only
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        seasonal = self.seasonal if season > 1 and len(history) >= 2 * season else None
        positive = bool((history > 0).all())
        if not positive and "mul" in (seasonal, self.trend):
            raise ConfigError("model=ets with multiplicative trend/seasonal needs positive "
                              "values; set model.seasonal=add and model.trend=add.")
        model = ExponentialSmoothing(history, trend=self.trend, seasonal=seasonal,
                                     damped_trend=self.damped_trend,
                                     seasonal_periods=season if seasonal else None,
                                     use_boxcox=self.use_boxcox and positive,
                                     initialization_method="estimated")
        return np.asarray(model.fit().forecast(steps))


class ARIMA(ForecastBaseline):
    """(Seasonal) ARIMA from statsmodels; ``order`` and ``seasonal_order`` (P, D, Q) from
    the config, the seasonal period from the dataset; ``log`` fits on log values."""

    label = "ARIMA"

    def __init__(self, order: tuple = (1, 1, 1), seasonal_order: tuple | None = (0, 1, 1),
                 log: bool = False, trend: str | None = None) -> None:
        self.order, self.seasonal_order = order, seasonal_order
        self.log, self.trend = log, trend

    def predict(self, history: np.ndarray, steps: int, season: int) -> np.ndarray:
        # statsmodels: about a second to import, for these models only
        from statsmodels.tsa.arima.model import ARIMA as _ARIMA

        if self.log and not (history > 0).all():
            raise ConfigError("model.log=true needs positive values; set model.log=false.")
        y = np.log(history) if self.log else history
        seasonal = (*(int(v) for v in self.seasonal_order), season) \
            if self.seasonal_order and season > 1 \
            else (0, 0, 0, 0)
        order = tuple(int(v) for v in self.order)
        fitted = _ARIMA(y, order=order, seasonal_order=seasonal, trend=self.trend).fit()
        out = np.asarray(fitted.forecast(steps))
        return np.exp(out) if self.log else out
