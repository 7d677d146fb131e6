"""Forecasting over sliding windows: built-in series or the user's CSV, split by time.

A series is a (T, F) table of numbers (F input columns, some of them targets). The last
``test_size`` points are the test period and the ``val_size`` points before them the
validation period; training windows only ever have targets before the validation period,
so no validation or test point is ever a training target. Transforms (log of the targets,
seasonal differencing, scaling fitted on the training part only) make the series
stationary enough for a small network to learn from ~100 points; they are undone before
any metric is computed. Each period is scored by one forecast from its start (the
*origin*), as the statistical baselines are, so every model answers the same question.

Built-in series: ``airline`` (monthly passengers 1949-1960, from the pinned sktime
wheel, never installed), and statsmodels' bundled ``co2`` (weekly, with gaps),
``sunspots`` (yearly) and ``macrodata`` (quarterly, 12 columns).
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from rnnlab.core.errors import ConfigError, DataError, require
from rnnlab.data.base import ListDataset, RnnlabDataModule
from rnnlab.data.sources import PinnedDistribution, fetch, read_member
from rnnlab.data.spec import ForecastSpec
from rnnlab.data.splits import fingerprint
from rnnlab.data.tables import read_text_file

SKTIME = PinnedDistribution(
    "sktime", "1.2.0", "dbffc6731d2d683b668dceb5e2bbc5804bebc8446b4c580803a281684d90e4ae")
AIRLINE_MEMBER = "sktime/datasets/data/Airline/Airline.csv"
# name -> (default targets, seasonal period from the sampling frequency)
DATASETS: dict[str, tuple[list[str], int]] = {
    "airline": (["Passengers"], 12),
    "co2": (["co2"], 52),
    "sunspots": (["SUNACTIVITY"], 1),
    "macrodata": (["realgdp"], 4),
}
STRATEGIES = ("direct", "recursive")
SCALERS = ("standard", "minmax", "none")
# pandas frequency prefix -> seasonal period, for user files with a date column
FREQ_PERIODS = {"M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4, "W": 52, "D": 7,
                "B": 5, "H": 24, "h": 24, "A": 1, "Y": 1, "YS": 1, "YE": 1, "AS": 1}


@dataclass
class Series:
    """A numeric table in time order, with what reading it had to repair."""

    values: np.ndarray            # (T, F) float64, no NaN left
    columns: list[str]            # F input column names
    targets: list[int]            # indices of the target columns within ``columns``
    period: int                   # seasonal period (1: none)
    dates: list[str] | None = None
    source: str = ""
    interpolated: dict[str, int] = field(default_factory=dict)


# ---- reading --------------------------------------------------------------------------
def _statsmodels_csv(name: str) -> tuple[pd.DataFrame, str]:
    # statsmodels: about a second to import, for its datasets only
    import statsmodels

    path = Path(statsmodels.__file__).parent / "datasets" / name / f"{name}.csv"
    if not path.is_file():
        raise DataError(f"{path} is missing from the installed statsmodels; reinstall statsmodels "
                        f"or give the series as a CSV with task.data.path=FILE.")
    return pd.read_csv(path), str(path)


def read_builtin(name: str, cache_dir: Path) -> tuple[pd.DataFrame, list[str] | None, str]:
    """(numeric frame, date labels, source) of a built-in series; NaNs left in place."""
    if name == "airline":
        raw = read_member(fetch(SKTIME, cache_dir), AIRLINE_MEMBER)
        frame = pd.read_csv(io.BytesIO(raw))
        return frame[["Passengers"]].astype(float), list(frame["Date"].astype(str)), \
            f"{SKTIME.requirement}:{AIRLINE_MEMBER}"
    frame, source = _statsmodels_csv(name)
    if name == "co2":
        dates = list(pd.to_datetime(frame["date"].astype(str), format="%Y%m%d").dt.strftime("%Y-%m-%d"))
        return frame[["co2"]].astype(float), dates, source
    if name == "sunspots":
        return frame[["SUNACTIVITY"]].astype(float), [str(int(y)) for y in frame["YEAR"]], source
    dates = [f"{int(y)}Q{int(q)}" for y, q in zip(frame["year"], frame["quarter"], strict=True)]
    return frame.drop(columns=["year", "quarter"]).astype(float), dates, source


def _numeric_column(frame: pd.DataFrame, column: str, path: str) -> pd.Series:
    """The column as floats; a value that is not a number names its line. An infinite value
    (``inf``, ``-inf``) is a missing value, interpolated and counted like an empty cell:
    left in, it would reach training as a non-finite loss and read as divergence."""
    text = frame[column].astype("string").str.strip()
    numbers = pd.to_numeric(text.replace("", pd.NA), errors="coerce")
    bad = numbers.isna() & text.notna() & (text != "") & ~text.str.lower().isin(["nan", "na"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(f"{path}, line {row + 2}: column {column!r} holds the non-numeric value "
                        f"{frame[column].iloc[row]!r}; forecast columns must be numbers "
                        f"(leave a cell empty for a missing value).")
    numbers = numbers.astype(float)
    return numbers.where(np.isfinite(numbers))


def read_user_csv(path: str, target: list[str], date_column: str | None,
                  input_columns: list[str] | None) -> tuple[pd.DataFrame, list[str] | None]:
    """Target and input columns of the user's CSV/TSV as floats, in file order."""
    # a blank line is a row whose cells are all empty (in a one-column file, a missing
    # value): it is kept and interpolated like any other gap; only trailing ones are dropped
    text = read_text_file(path).rstrip("\r\n") + "\n"
    sep = "\t" if Path(path).suffix.lower() in (".tsv", ".tab") else ","
    try:
        frame = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                            skip_blank_lines=False)
    except Exception as err:  # pandas' own parser errors name the line
        raise DataError(f"{path}: malformed CSV ({err}).") from err
    if frame.empty:
        raise DataError(f"{path} has a header but no rows; give it some data.")
    wanted = list(dict.fromkeys([*(input_columns or []), *target]))
    missing = [c for c in [*wanted, *([date_column] if date_column else [])] if c not in frame]
    if missing:
        raise DataError(f"{path}, line 1: missing column(s) {', '.join(missing)}; the header has "
                        f"{', '.join(frame.columns)} (set task.data.target / task.data.input_columns "
                        f"/ task.data.date_column to existing names).")
    out = pd.DataFrame({c: _numeric_column(frame, c, path) for c in wanted})
    dates = None
    if date_column:
        parsed = pd.to_datetime(frame[date_column], errors="coerce")
        if parsed.isna().any():
            row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
            raise DataError(f"{path}, line {row + 2}: {date_column!r} value "
                            f"{frame[date_column].iloc[row]!r} is not a date; fix it or drop "
                            f"task.data.date_column.")
        if not parsed.is_monotonic_increasing:
            row = int(np.flatnonzero(np.diff(parsed.to_numpy()) < np.timedelta64(0))[0]) + 1
            raise DataError(f"{path}, line {row + 2}: dates go back in time; sort the file by "
                            f"{date_column!r}.")
        repeated = parsed.duplicated()
        if repeated.any():  # sorted, so the first copy is the row just before
            row = int(np.flatnonzero(repeated.to_numpy())[0])
            first = int(np.flatnonzero((parsed == parsed.iloc[row]).to_numpy())[0])
            raise DataError(f"{path}, lines {first + 2} and {row + 2}: the date "
                            f"{frame[date_column].iloc[row]!r} appears twice; keep one row per "
                            f"date (or combine them) and run again.")
        dates = list(frame[date_column])
        try:
            out.attrs["freq"] = pd.infer_freq(parsed) if len(parsed) >= 3 else None
        except (TypeError, ValueError):  # irregular dates: no frequency, no season
            out.attrs["freq"] = None
    return out, dates


def fill_gaps(frame: pd.DataFrame, source: str) -> tuple[np.ndarray, dict[str, int]]:
    """Linear interpolation of missing values (edges: nearest value); counts per column."""
    for column in frame:
        if frame[column].isna().all():
            raise DataError(f"{source}: column {column!r} has no values at all (every row is "
                            f"missing); drop it from the inputs or fill it.")
    counts = {c: int(n) for c, n in frame.isna().sum().items() if n}
    if counts:  # a changed series is said once on the console, and logged as data.n_interpolated
        said = ", ".join(f"{n} in {c!r}" for c, n in counts.items())
        print(f"{source}: {sum(counts.values())} missing value(s) ({said}) filled by linear "
              f"interpolation (the ends by the nearest value).", file=sys.stderr)
    filled = frame.interpolate(method="linear", limit_direction="both")
    return filled.to_numpy(dtype=np.float64), counts


def season_of(freq: str | None) -> int:
    if not freq:
        return 1
    base = freq.split("-")[0].lstrip("0123456789")
    return FREQ_PERIODS.get(base, 1)


def load_series(dataset: str, data: dict[str, Any], cache_dir: Path,
                season: int | None = None) -> Series:
    """The series the config asks for: the user's file when ``data.path`` is set."""
    target = data.get("target")
    targets = [target] if isinstance(target, str) else list(target or [])
    inputs = data.get("input_columns")
    inputs = [inputs] if isinstance(inputs, str) else (list(inputs) if inputs else None)
    if data.get("path"):
        require(bool(targets), "task.data.path is set but task.data.target is not; name the "
                "column(s) to forecast, e.g. task.data.target=sales.")
        frame, dates = read_user_csv(str(data["path"]), targets, data.get("date_column"), inputs)
        period = season or season_of(frame.attrs.get("freq"))
        source = str(data["path"])
    else:
        if dataset not in DATASETS:
            raise ConfigError(f"task.dataset={dataset!r} is unknown; use one of "
                              f"{', '.join(DATASETS)} or your own file with task.data.path=FILE.")
        default_targets, default_period = DATASETS[dataset]
        frame, dates, source = read_builtin(dataset, cache_dir)
        targets = targets or default_targets
        unknown = [t for t in targets + (inputs or []) if t not in frame]
        require(not unknown, f"task.data.target / input_columns name {', '.join(unknown)}, which "
                f"task.dataset={dataset} does not have; it has {', '.join(frame.columns)}.")
        if inputs is not None:
            frame = frame[list(dict.fromkeys([*inputs, *targets]))]
        period = season or default_period
    values, counts = fill_gaps(frame, source)
    columns = list(frame.columns)
    return Series(values, columns, [columns.index(t) for t in targets], int(period), dates,
                  source, counts)


# ---- transforms -----------------------------------------------------------------------
class SeriesTransform:
    """log (targets) -> seasonal difference (all columns) -> scaling fitted on training points.

    ``forward`` maps the whole series; ``inverse`` maps a forecast continuing a known
    history back to the original scale (undoing the difference needs that history)."""

    def __init__(self, log: bool, seasonal_diff: bool, scale: str, period: int,
                 log_columns: list[int]) -> None:
        self.log, self.scale = log, scale
        self.lag = period if seasonal_diff and period > 1 else 0
        self.log_columns = log_columns
        self.shift: np.ndarray | None = None
        self.spread: np.ndarray | None = None

    def _pre(self, x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64).copy()
        if self.log:
            x[:, self.log_columns] = np.log(x[:, self.log_columns])
        return x

    def fit(self, x: np.ndarray, train_end: int, source: str, names: list[str]) -> SeriesTransform:
        if self.log:
            low = x[:, self.log_columns].min(0)
            if (low <= 0).any():
                bad = names[self.log_columns[int(np.argmin(low))]]
                raise DataError(f"{source}: column {bad!r} has values <= 0, so task.transform.log="
                                f"true cannot apply; set task.transform.log=false.")
        z = self.difference(self._pre(x))[self.lag:train_end]
        if self.scale == "standard":
            self.shift, self.spread = z.mean(0), z.std(0)
        elif self.scale == "minmax":
            self.shift, self.spread = z.min(0), z.max(0) - z.min(0)
        else:
            self.shift, self.spread = np.zeros(z.shape[1]), np.ones(z.shape[1])
        self.spread = np.where(self.spread > 1e-12, self.spread, 1.0)
        return self

    def difference(self, x: np.ndarray) -> np.ndarray:
        if not self.lag:
            return x
        out = np.full_like(x, np.nan)
        out[self.lag:] = x[self.lag:] - x[: -self.lag]
        return out

    def forward(self, x: np.ndarray) -> np.ndarray:
        """(T, F) original -> (T, F) model space; the first ``lag`` rows are NaN."""
        return (self.difference(self._pre(x)) - self.shift) / self.spread

    def inverse(self, z: np.ndarray, history: np.ndarray) -> np.ndarray:
        """Model-space forecast (H, F) continuing ``history`` (T, F, original) -> (H, F)."""
        d = np.asarray(z, dtype=np.float64) * self.spread + self.shift
        if self.lag:
            level = np.concatenate([self._pre(history)[-self.lag:], np.zeros_like(d)])
            for h in range(len(d)):  # each step adds to the level one season earlier
                level[self.lag + h] = d[h] + level[h]
            d = level[self.lag:]
        if self.log:
            d[:, self.log_columns] = np.exp(d[:, self.log_columns])
        return d

    def state(self) -> dict[str, Any]:
        """The fitted transform as plain values (the checkpoint's ``transform`` entry), so a
        served model maps a history exactly as training did (:meth:`from_state`)."""
        return {"log": self.log, "lag": self.lag, "scale": self.scale,
                "log_columns": self.log_columns, "shift": self.shift.tolist(),
                "spread": self.spread.tolist()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SeriesTransform:
        """The fitted transform :meth:`state` describes (the lag stands for the seasonal
        period it was made from: no lag, no seasonal difference)."""
        lag = int(state["lag"])
        t = cls(bool(state["log"]), lag > 0, str(state["scale"]), max(lag, 1),
                [int(c) for c in state["log_columns"]])
        t.shift = np.asarray(state["shift"], dtype=np.float64)
        t.spread = np.asarray(state["spread"], dtype=np.float64)
        return t


# ---- windows and periods ----------------------------------------------------------------
def window_starts(first: int, end: int, window: int, steps: int, last_target_from: int = 0
                  ) -> list[int]:
    """Starts s of windows x[s:s+window] -> x[s+window:s+window+steps] inside [first, end)
    whose last target index is at least ``last_target_from``."""
    low = max(first, last_target_from - window - steps + 1)
    return list(range(low, end - window - steps + 1))


@dataclass
class Period:
    """One evaluation period: forecast ``steps`` points from ``origin`` (its first index)."""

    origin: int
    steps: int


class ForecastDataModule(RnnlabDataModule):
    """Sliding windows over one series, split by time into train / val / test.

    Args:
        dataset: ``airline``, ``co2``, ``sunspots`` or ``macrodata`` (ignored with data.path).
        data: ``path`` (CSV/TSV), ``target`` (one name or a list), ``date_column``,
            ``input_columns`` (default: all columns of a built-in series, the targets of a file).
        window: input steps per example; horizon: steps one prediction covers.
        strategy: ``direct`` (the network emits ``horizon`` steps at once) or
            ``recursive`` (one step, fed back); periods are forecast by repeating either.
        test_size, val_size: points in the test / validation periods (taken from the end).
        season: seasonal period; null takes it from the dataset's frequency.
        transform: ``log`` (targets), ``seasonal_diff``, ``scale`` (standard/minmax/none).
    """

    CORPORA: ClassVar[dict[str, Any]] = {"airline": SKTIME}

    def data_source(self, split: str) -> tuple[str, str]:
        """The bundled statsmodels series name the installed statsmodels as their source."""
        if self.data.get("path") or self.dataset in self.CORPORA:
            return super().data_source(split)
        # statsmodels: about a second to import, for its datasets only
        import statsmodels

        return self.dataset, (f"https://pypi.org/project/statsmodels/{statsmodels.__version__}/"
                              f"#datasets/{self.dataset}")

    def __init__(self, dataset: str = "airline", data: dict | None = None, data_dir: str = "data",
                 window: int = 24, horizon: int = 12, strategy: str = "direct",
                 test_size: int = 36, val_size: int = 12, season: int | None = None,
                 transform: dict | None = None, batch_size: int = 16, num_workers: int = 0,
                 seed: int = 0) -> None:
        super().__init__(batch_size, num_workers, seed)
        self.dataset, self.data = dataset, dict(data or {})
        self.data_dir = Path(data_dir)
        self.window, self.horizon, self.strategy = window, horizon, strategy
        self.steps = horizon if strategy == "direct" else 1
        self.transform_cfg = {"log": False, "seasonal_diff": False, "scale": "standard",
                              **(transform or {})}
        self.test_size, self.val_size, self.season = test_size, val_size, season
        self.series: Series | None = None
        self.transform: SeriesTransform | None = None
        self.z: np.ndarray | None = None
        self.periods: dict[str, Period] = {}

    def validate(self) -> None:
        """Check the dataset name (run from prepare/setup, not the constructor, so the one-line
        error reaches the user instead of Hydra's instantiation wrapper; the config schema
        checks the other settings)."""
        if not self.data.get("path") and self.dataset not in DATASETS:
            raise ConfigError(f"task.dataset={self.dataset!r} is unknown; use one of "
                              f"{', '.join(DATASETS)} or your own file with task.data.path=FILE.")

    def prepare_data(self) -> None:
        self.validate()
        if not self.data.get("path") and self.dataset == "airline":
            fetch(SKTIME, self.data_dir / "cache")

    def _setup(self) -> None:
        self.validate()
        s = self.series = load_series(self.dataset, self.data, self.data_dir / "cache", self.season)
        n = len(s.values)
        t = self.transform = SeriesTransform(bool(self.transform_cfg["log"]),
                                             bool(self.transform_cfg["seasonal_diff"]),
                                             str(self.transform_cfg["scale"]), s.period, s.targets)
        need = t.lag + self.window + self.steps + self.val_size + self.test_size
        if n < need:
            raise DataError(
                f"{s.source} has {n} points, fewer than the {need} needed for seasonal lag "
                f"({t.lag}) + task.window ({self.window}) + steps per prediction ({self.steps}) + "
                f"task.val_size ({self.val_size}) + task.test_size ({self.test_size}); shorten "
                f"them or use a longer series.")
        val_start, test_start = n - self.test_size - self.val_size, n - self.test_size
        t.fit(s.values, val_start, s.source, s.columns)
        self.z = t.forward(s.values).astype(np.float32)
        self.periods = {"val": Period(val_start, self.val_size),
                        "test": Period(test_start, self.test_size)}
        bounds = {"train": (t.lag, val_start, 0), "val": (t.lag, test_start, val_start),
                  "test": (t.lag, n, test_start)}
        w, k = self.window, self.steps
        for split, (first, end, from_) in bounds.items():
            starts = window_starts(first, end, w, k, from_)
            self.datasets[split] = ListDataset([
                (torch.from_numpy(self.z[i:i + w]), torch.from_numpy(self.z[i + w:i + w + k]))
                for i in starts])
        self.fingerprint = fingerprint("forecast", s.source, s.values.round(8).tolist(),
                                       s.columns, s.targets, self.test_size, self.val_size)
        self.spec = ForecastSpec(input_size=len(s.columns), padding_idx=0,
                                 num_features=len(s.columns), targets=s.targets,
                                 target_names=[s.columns[i] for i in s.targets], window=w,
                                 steps=k, strategy=self.strategy, season=s.period,
                                 periods={split: p.steps for split, p in self.periods.items()})

    def collate(self, items: list) -> dict:
        x = torch.stack([a for a, _ in items])
        return {"x": x, "lengths": torch.full((len(items),), x.shape[1], dtype=torch.long),
                "y": torch.stack([b for _, b in items])}

    # ---- what models and baselines forecast from -----------------------------------
    def history(self, split: str) -> np.ndarray:
        """Original-scale series (T, F) up to the start of ``split``'s period."""
        return self.series.values[: self.periods[split].origin]

    def truth(self, split: str) -> np.ndarray:
        """Original-scale target values (H, n_targets) of ``split``'s period."""
        p = self.periods[split]
        return self.series.values[p.origin:p.origin + p.steps][:, self.series.targets]

    def model_history(self, split: str) -> torch.Tensor:
        """The model-space series before ``split``'s period (first ``lag`` rows dropped)."""
        return torch.from_numpy(self.z[self.transform.lag:self.periods[split].origin])

    def to_original(self, split: str, forecast: np.ndarray) -> np.ndarray:
        """Model-space forecast (H, F) of ``split``'s period -> original-scale targets."""
        return self.transform.inverse(forecast, self.history(split))[:, self.series.targets]

    def dates(self) -> list[str] | None:
        return self.series.dates

    def describe(self) -> dict[str, Any]:
        s = self.series
        return {**super().describe(), "n_points": len(s.values), "columns": ",".join(s.columns),
                "targets": ",".join(s.columns[i] for i in s.targets), "season": s.period,
                "n_interpolated": sum(s.interpolated.values()),
                **{f"n_interpolated.{c}": n for c, n in s.interpolated.items()}}

    def checkpoint_state(self) -> dict[str, Any]:
        s = self.series
        return {"columns": s.columns, "targets": s.targets, "season": s.period,
                "window": self.window, "steps": self.steps, "strategy": self.strategy,
                "transform": self.transform.state()}
