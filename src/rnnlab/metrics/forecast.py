"""Point-forecast errors on the original scale, shared by networks and baselines.

Inputs are (H,) or (H, n_targets) arrays. MAPE and sMAPE are in percent (the way
forecasting papers quote them: ETS on airline "5.1%"). MASE divides the MAE by the
in-sample MAE of the seasonal naive forecast (lag ``season``) on the history before the
period, per target, so 1.0 means "as good as repeating last season".
"""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

METRICS = ("mae", "rmse", "mape", "smape", "mase")


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=np.float64)
    p = np.asarray(y_pred, dtype=np.float64)
    t, p = (t[:, None], p[:, None]) if t.ndim == 1 else (t, p)
    if t.shape != p.shape:
        raise ValueError(f"truth {t.shape} and forecast {p.shape} differ in shape")
    return t, p


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.mean(np.abs(t - p)))


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    t, p = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean |error| / |truth| in percent; points where the truth is 0 are skipped."""
    t, p = _pair(y_true, y_pred)
    keep = t != 0
    return float(100.0 * np.mean(np.abs(t - p)[keep] / np.abs(t[keep]))) if keep.any() else float("nan")


def smape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Symmetric MAPE in percent, 200 |e| / (|y| + |yhat|) (0 where both are 0; NaN when any
    forecast is not finite: a diverged model must never read as a perfect one)."""
    t, p = _pair(y_true, y_pred)
    if not np.isfinite(p).all():
        return float("nan")
    denom = np.abs(t) + np.abs(p)
    ratio = np.divide(2.0 * np.abs(t - p), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * np.mean(ratio))


def mase(y_true: np.ndarray, y_pred: np.ndarray, history: np.ndarray, season: int = 1) -> float:
    """MAE over the in-sample MAE of the lag-``season`` naive forecast, averaged over targets."""
    t, p = _pair(y_true, y_pred)
    h = np.asarray(history, dtype=np.float64)
    h = h[:, None] if h.ndim == 1 else h
    m = season if len(h) > season else 1
    scale = np.mean(np.abs(h[m:] - h[:-m]), axis=0)
    scale = np.where(scale > 0, scale, np.nan)
    return float(np.nanmean(np.mean(np.abs(t - p), axis=0) / scale))


def forecast_metrics(y_true: np.ndarray, y_pred: np.ndarray, history: np.ndarray, season: int,
                     prefix: str = "") -> dict[str, float]:
    """All of :data:`METRICS` under ``prefix`` (e.g. ``test/``); all NaN for a forecast
    with a non-finite value (no metric may average it away)."""
    if not np.isfinite(np.asarray(y_pred, dtype=np.float64)).all():
        return {f"{prefix}{name}": float("nan") for name in METRICS}
    return {f"{prefix}mae": mae(y_true, y_pred), f"{prefix}rmse": rmse(y_true, y_pred),
            f"{prefix}mape": mape(y_true, y_pred), f"{prefix}smape": smape(y_true, y_pred),
            f"{prefix}mase": mase(y_true, y_pred, history, season)}


def forecast_figure(dates: list[str] | None, history: np.ndarray, truth: np.ndarray,
                    forecast: np.ndarray, names: list[str], title: str) -> Figure:
    """History, truth and forecast of each target (one panel per target, at most four)."""
    # pyplot only when a figure is asked for
    import matplotlib.pyplot as plt

    shown = min(len(names), 4)
    fig, axes = plt.subplots(shown, 1, figsize=(9, 2.8 * shown), squeeze=False)
    n_hist, n_out = len(history), len(truth)
    x = np.arange(n_hist + n_out)
    for j, ax in enumerate(axes[:, 0]):
        ax.plot(x[:n_hist], history[:, j], color="0.35", lw=1.2, label="history")
        ax.plot(x[n_hist:], truth[:, j], color="tab:blue", lw=1.5, label="truth")
        ax.plot(x[n_hist:], forecast[:, j], color="tab:orange", lw=1.5, ls="--", label="forecast")
        ax.axvline(n_hist - 0.5, color="0.6", lw=0.8, ls=":")
        ax.set_ylabel(names[j])
        if dates is not None and len(dates) >= len(x):
            ticks = np.linspace(0, len(x) - 1, 8).astype(int)
            ax.set_xticks(ticks, [str(dates[i]) for i in ticks], fontsize=8)
    axes[0, 0].legend(loc="upper left", fontsize=8)
    axes[0, 0].set_title(title)
    fig.tight_layout()
    return fig


def score_period(dm: Any, split: str, forecast: np.ndarray, title: str, plot: bool = True
                 ) -> tuple[dict[str, float], Figure | None]:
    """Metrics of an original-scale forecast of ``split``'s period (a forecast datamodule's
    history and truth), and its plot when ``plot``: networks and baselines score alike."""
    history, truth = dm.history(split)[:, dm.series.targets], dm.truth(split)
    metrics = forecast_metrics(truth, forecast, history, dm.spec.season, f"{split}/")
    if not plot:
        return metrics, None
    text = f"{title}: {split} MAPE {metrics[f'{split}/mape']:.2f}%, RMSE {metrics[f'{split}/rmse']:.2f}"
    return metrics, forecast_figure(dm.dates(), history, truth, forecast,
                                    dm.spec.target_names, text)
