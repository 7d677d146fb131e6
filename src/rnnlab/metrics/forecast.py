"""Point-forecast errors on the original scale, shared by networks and baselines.

Inputs are (H,) or (H, n_targets) arrays. MAPE and sMAPE are in percent (the way
forecasting papers quote them: ETS on airline "5.1%"). MASE divides the MAE by the
in-sample MAE of the seasonal naive forecast (lag ``season``) on the history before the
period, per target, so 1.0 means "as good as repeating last season".
"""

from __future__ import annotations

import numpy as np

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
