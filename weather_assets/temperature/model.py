"""Next-hour temperature: our model, the brief's reference model and persistence (pure functions).

Our model predicts the *change* to the next hour, not the level, with a strongly regularised
linear model on a few robust features of the last 24 hours:

* ``tendency_1h`` (t - t-1) and ``tendency_2h`` (t-1 - t-2): the momentum of the change;
* ``anomaly_24h`` (t - mean of the last 24 h): the pull back towards the daily mean;
* ``hour_sin``/``hour_cos``, ``hour_sin2``/``hour_cos2``: the UTC hour being predicted, so the
  mean diurnal tendency of this place and season is learnt from the training window.

Features are scaled but not centred and there is no intercept, so "nothing is happening"
predicts no change; the ridge penalty is chosen by leave-one-day-out cross-validation and
its largest candidate is practically persistence. Why: with ~5 days of history (~96
examples) a flexible learner fits noise and loses to persistence on held-out hours, and a
model of the level (like the reference) cannot forecast beyond the range it was trained on,
which is what every front and warm spell brings. Shrinking a model of the change degrades
towards persistence when nothing is predictable instead of below it.

Hourly frames have columns ``timestamp`` (UTC; naive means UTC; the start of the hour) and
``temperature_c``. Training tolerates gaps and unsorted rows; prediction needs the 24
consecutive hours ending at the last row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_squared_error
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

MODEL_CODE_VERSION = "delta-ridge-1"
HISTORY_HOURS = 24
MIN_TRAIN_EXAMPLES = 24  # complete 24-h windows with a known next hour
RIDGE_ALPHAS = tuple(np.logspace(-1, 4, 21))
FEATURE_NAMES = (
    "tendency_1h",
    "tendency_2h",
    "anomaly_24h",
    "hour_sin",
    "hour_cos",
    "hour_sin2",
    "hour_cos2",
)

REFERENCE_ALPHAS = (0.3, 0.1)
REFERENCE_LAGS = (0, 1, 2, 23, 24)
REFERENCE_FEATURES = (
    *(f"smoothed_{a}" for a in REFERENCE_ALPHAS),
    *(f"lag_{lag}" for lag in REFERENCE_LAGS),
)
REFERENCE_HISTORY_HOURS = max(REFERENCE_LAGS) + 1

_HOUR_US = 3_600_000_000


@dataclass(frozen=True)
class TemperatureModel:
    """A fitted next-hour model; small and picklable (the estimator is a few coefficients).

    ``trained_on`` holds ``first``/``last`` (UTC datetimes of the training rows), ``rows``
    (hourly rows received) and ``examples`` (complete windows actually fitted).
    """

    estimator: Pipeline
    feature_names: tuple[str, ...]
    version: str
    trained_on: dict[str, Any]
    train_mse: float
    history_hours: int = HISTORY_HOURS
    alpha: float = float("nan")


# ---------------------------------------------------------------------------------------------
# Input handling


def _hourly(frame: pl.DataFrame, what: str, *, drop_nulls: bool) -> pl.DataFrame:
    """Validated copy: UTC microsecond timestamps on whole hours, sorted, unique, finite."""
    if not isinstance(frame, pl.DataFrame):
        raise TypeError(f"{what} must be a polars DataFrame, got {type(frame).__name__}")
    missing = [c for c in ("timestamp", "temperature_c") if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s) {', '.join(missing)}; "
            f"expected timestamp and temperature_c, got {', '.join(frame.columns) or 'none'}"
        )
    ts_type = frame.schema["timestamp"]
    if not isinstance(ts_type, pl.Datetime):
        raise ValueError(f"{what}.timestamp must be a Datetime column, got {ts_type}")
    if not frame.schema["temperature_c"].is_numeric():
        raise ValueError(
            f"{what}.temperature_c must be numeric, got {frame.schema['temperature_c']}"
        )
    ts = pl.col("timestamp")
    ts = (
        ts.dt.replace_time_zone("UTC")
        if ts_type.time_zone is None
        else ts.dt.convert_time_zone("UTC")
    )
    out = frame.select(
        ts.dt.cast_time_unit("us").alias("timestamp"),
        pl.col("temperature_c").cast(pl.Float64),
    )
    if out["timestamp"].null_count():
        raise ValueError(f"{what} has {out['timestamp'].null_count()} null timestamp(s)")
    if drop_nulls:
        out = out.drop_nulls("temperature_c")
    elif out["temperature_c"].null_count():
        bad = out.filter(pl.col("temperature_c").is_null())["timestamp"]
        raise ValueError(f"{what} has null temperature_c at {_hours_text(bad)}")
    bad = out.filter(~pl.col("temperature_c").is_finite())["timestamp"]
    if bad.len():
        raise ValueError(f"{what} has non-finite temperature_c at {_hours_text(bad)}")
    off_hour = out.filter(pl.col("timestamp").dt.epoch("us") % _HOUR_US != 0)["timestamp"]
    if off_hour.len():
        raise ValueError(
            f"{what} timestamps must be whole hours (start of the hour); got {_hours_text(off_hour)}"
        )
    duplicated = out.filter(pl.col("timestamp").is_duplicated())["timestamp"].unique()
    if duplicated.len():
        raise ValueError(f"{what} has duplicate timestamps: {_hours_text(duplicated)}")
    return out.sort("timestamp")


def _hours_text(stamps: pl.Series, limit: int = 3) -> str:
    shown = ", ".join(f"{s:%Y-%m-%d %H:%M}" for s in stamps.head(limit).to_list())
    more = f" and {stamps.len() - limit} more" if stamps.len() > limit else ""
    return shown + more


def _grid(hourly: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(unix hours, temperatures) on the complete hourly grid; NaN where an hour is missing."""
    hours = hourly["timestamp"].dt.epoch("us").to_numpy() // _HOUR_US
    if hours.size == 0:
        return hours, np.empty(0)
    grid = np.arange(hours[0], hours[-1] + 1, dtype=np.int64)
    temps = np.full(grid.size, np.nan)
    temps[hours - hours[0]] = hourly["temperature_c"].to_numpy()
    return grid, temps


# ---------------------------------------------------------------------------------------------
# Our model


def _design(hours: np.ndarray, temps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Features and target for every 24-hour window of the hourly grid.

    Row i describes the window ending at grid position i + 23: X holds FEATURE_NAMES (NaN if
    the window has a gap), y the change to the following hour (NaN if unknown). Training,
    prediction and evaluation all go through here, so they cannot drift apart.
    """
    if temps.size < HISTORY_HOURS:
        return np.empty((0, len(FEATURE_NAMES))), np.empty(0)
    window = np.lib.stride_tricks.sliding_window_view(temps, HISTORY_HOURS)
    now = window[:, -1]
    target_hour = (hours[HISTORY_HOURS - 1 :] + 1) % 24
    angle = 2.0 * np.pi * target_hour / 24.0
    x = np.column_stack(
        [
            now - window[:, -2],
            window[:, -2] - window[:, -3],
            now - window.mean(axis=1),
            np.sin(angle),
            np.cos(angle),
            np.sin(2.0 * angle),
            np.cos(2.0 * angle),
        ]
    )
    following = np.append(temps[HISTORY_HOURS:], np.nan)
    return x, following - now


def _estimator(alpha: float) -> Pipeline:
    """Scaled, uncentred ridge without intercept: all-zero tendencies predict no change."""
    return Pipeline(
        [
            ("scale", StandardScaler(with_mean=False)),
            ("ridge", Ridge(alpha=alpha, fit_intercept=False)),
        ]
    )


def _choose_alpha(x: np.ndarray, y: np.ndarray) -> float:
    """Ridge penalty with the lowest error when holding out one day (24 examples) at a time.

    Neighbouring hours are strongly correlated, so they are held out together: plain
    leave-one-out would let an hour's neighbour vouch for an overfit. The largest penalty is
    practically persistence, so persistence is always among the candidates.
    """
    alphas = np.asarray(RIDGE_ALPHAS)
    blocks = np.arange(y.size) // HISTORY_HOURS
    if blocks[-1] < 1:
        return float(alphas[-1])
    errors = np.empty((y.size, alphas.size))
    for block in range(blocks[-1] + 1):
        test = blocks == block
        x_fit, y_fit = x[~test], y[~test]
        scale = x_fit.std(axis=0)
        scale[scale == 0] = 1.0
        u, sv, vt = np.linalg.svd(x_fit / scale, full_matrices=False)
        coef = vt.T @ ((sv / (sv**2 + alphas[:, None])) * (u.T @ y_fit)).T  # features x alphas
        errors[test] = ((x[test] / scale) @ coef - y[test, None]) ** 2
    return float(alphas[int(np.argmin(errors.mean(axis=0)))])


def train_temperature_model(hourly: pl.DataFrame) -> TemperatureModel:
    """Fit the next-hour model on an hourly frame (unsorted and gappy input is fine).

    Every complete 24-hour window with a known next hour is one example; hours with a null
    temperature count as gaps. Raises ValueError for missing columns, non-finite values,
    duplicate or off-the-hour timestamps, or fewer than MIN_TRAIN_EXAMPLES examples.
    """
    frame = _hourly(hourly, "hourly", drop_nulls=True)
    x, y = _design(*_grid(frame))
    usable = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if usable.sum() < MIN_TRAIN_EXAMPLES:
        raise ValueError(
            f"need at least {MIN_TRAIN_EXAMPLES} complete training examples (each 25 "
            f"consecutive hours: 24 of history and the next), got {int(usable.sum())} from "
            f"{frame.height} hourly rows"
        )
    x, y = x[usable], y[usable]
    alpha = _choose_alpha(x, y)
    estimator = _estimator(alpha).fit(x, y)
    train_mse = float(mean_squared_error(y, estimator.predict(x)))
    return TemperatureModel(
        estimator=estimator,
        feature_names=FEATURE_NAMES,
        version=_version(frame),
        trained_on={
            "first": frame["timestamp"][0],
            "last": frame["timestamp"][-1],
            "rows": frame.height,
            "examples": int(y.size),
        },
        train_mse=train_mse,
        alpha=alpha,
    )


def _version(frame: pl.DataFrame) -> str:
    """Stable across processes: code version + training range + a digest of the values."""
    digest = hashlib.blake2b(digest_size=6)
    digest.update(MODEL_CODE_VERSION.encode())
    digest.update(frame["timestamp"].dt.epoch("us").to_numpy().tobytes())
    digest.update(np.round(frame["temperature_c"].to_numpy(), 6).tobytes())
    return f"{MODEL_CODE_VERSION}+{digest.hexdigest()}"


def predict_next_hour(model: TemperatureModel, last_24h: pl.DataFrame) -> float:
    """The temperature (°C) of the hour after the last row of ``last_24h``.

    Uses the 24 most recent rows, which must be 24 consecutive whole hours with finite
    temperatures; older rows are ignored. Raises ValueError otherwise, naming the problem.
    """
    if not isinstance(model, TemperatureModel):
        raise TypeError(f"model must be a TemperatureModel, got {type(model).__name__}")
    frame = _hourly(last_24h, "last_24h", drop_nulls=False)
    need = model.history_hours
    if frame.height < need:
        raise ValueError(f"last_24h needs at least {need} hourly rows, got {frame.height}")
    frame = frame.tail(need)
    hours, temps = _grid(frame)
    if hours.size != need:
        present = set((frame["timestamp"].dt.epoch("us") // _HOUR_US).to_list())
        wanted = range(int(hours[-1]) - need + 1, int(hours[-1]) + 1)
        gaps = pl.Series([h * _HOUR_US for h in wanted if h not in present]).cast(
            pl.Datetime("us", "UTC")
        )
        raise ValueError(
            f"last_24h must hold the {need} consecutive hours ending at its last row; "
            f"missing {_hours_text(gaps)}"
        )
    x, _ = _design(hours, temps)
    return float(temps[-1] + model.estimator.predict(x[-1:])[0])


# ---------------------------------------------------------------------------------------------
# The brief's reference model and persistence


def reference_pipeline() -> Pipeline:
    """The brief's model, unchanged: gradient boosting on the level of the next hour.

    Its features (``REFERENCE_FEATURES``: exponentially smoothed temperature with alpha 0.3
    and 0.1, and lags 0, 1, 2, 23, 24 h) are built by :func:`reference_features`, which also
    drops the rows with NaNs, as the brief did; this pipeline is what is fitted on them.
    """
    return Pipeline([("model", GradientBoostingRegressor(random_state=42))])


def reference_features(hourly: pl.DataFrame) -> pl.DataFrame:
    """The reference's design: timestamp, REFERENCE_FEATURES and ``target`` (next hour).

    Computed on the complete hourly grid (missing hours are nulls, so a lag never jumps a
    gap); rows with a null feature are dropped; ``target`` is null for the last hour.
    """
    frame = _hourly(hourly, "hourly", drop_nulls=True)
    if frame.height == 0:
        return pl.DataFrame(
            schema={
                "timestamp": pl.Datetime("us", "UTC"),
                **dict.fromkeys(REFERENCE_FEATURES, pl.Float64),
                "target": pl.Float64,
            }
        )
    grid = frame.upsample("timestamp", every="1h")
    temp = pl.col("temperature_c")
    return (
        grid.select(
            "timestamp",
            *(temp.ewm_mean(alpha=a, adjust=True).alias(f"smoothed_{a}") for a in REFERENCE_ALPHAS),
            *(temp.shift(lag).alias(f"lag_{lag}") for lag in REFERENCE_LAGS),
            temp.shift(-1).alias("target"),
        )
    ).drop_nulls(list(REFERENCE_FEATURES))


def train_reference(hourly: pl.DataFrame) -> Pipeline:
    """Fit :func:`reference_pipeline` on an hourly frame, the way the brief did."""
    design = reference_features(hourly).drop_nulls("target")
    if design.height < 2:
        raise ValueError(
            f"the reference needs {REFERENCE_HISTORY_HOURS + 1} consecutive hours per example; "
            f"got {design.height} examples"
        )
    pipeline = reference_pipeline()
    pipeline.fit(design.select(REFERENCE_FEATURES).to_numpy(), design["target"].to_numpy())
    return pipeline


def predict_reference(pipeline: Pipeline, history: pl.DataFrame) -> float:
    """The reference's prediction for the hour after ``history``'s last row.

    Its smoothed features depend on how much history is given (they start at the first row),
    so pass all there is; it needs at least the 25 consecutive hours of its longest lag.
    """
    frame = _hourly(history, "history", drop_nulls=False)
    design = reference_features(frame)
    if design.height == 0 or design["timestamp"][-1] != frame["timestamp"][-1]:
        raise ValueError(
            f"the reference needs the {REFERENCE_HISTORY_HOURS} consecutive hours ending at "
            "the last row of history"
        )
    return float(pipeline.predict(design.select(REFERENCE_FEATURES).tail(1).to_numpy())[0])


def persistence_predict(last_24h: pl.DataFrame) -> float:
    """Next hour = the last observed hour: the baseline every model has to beat."""
    frame = _hourly(last_24h, "last_24h", drop_nulls=False)
    if frame.height == 0:
        raise ValueError("last_24h is empty")
    return float(frame["temperature_c"][-1])


# ---------------------------------------------------------------------------------------------
# Evaluation


def evaluate(
    hourly: pl.DataFrame,
    *,
    train_hours: int = 120,
    test_hours: int = 24,
    step_hours: int = 24,
) -> dict[str, float]:
    """Rolling-origin, one-step-ahead comparison of model, reference and persistence.

    For each origin (every ``step_hours`` from ``train_hours`` after the first hour) both
    models are trained on the ``train_hours`` hours before it, then each of the next
    ``test_hours`` hours is predicted from the true history up to the hour before. Only hours
    that all three can predict and whose actual is known are scored, so the three MSEs
    (``sklearn.metrics.mean_squared_error``) are over exactly the same ``n_hours`` hours.
    """
    if min(train_hours, test_hours, step_hours) < 1:
        raise ValueError("train_hours, test_hours and step_hours must be positive")
    frame = _hourly(hourly, "hourly", drop_nulls=True)
    hours, temps = _grid(frame)
    actual: list[np.ndarray] = []
    predictions: dict[str, list[np.ndarray]] = {"model": [], "reference": [], "persistence": []}
    for origin in range(train_hours, temps.size - test_hours + 1, step_hours):
        scored = _evaluate_origin(hours, temps, origin, train_hours, test_hours)
        if scored is None:
            continue
        actual.append(scored.pop("actual"))
        for name, values in scored.items():
            predictions[name].append(values)
    if not actual:
        raise ValueError(
            f"no hour could be scored: need {train_hours + test_hours} hours with enough "
            f"complete history, got {frame.height} rows spanning {temps.size} hours"
        )
    truth = np.concatenate(actual)
    result = {
        name: float(mean_squared_error(truth, np.concatenate(values)))
        for name, values in predictions.items()
    }
    result["n_hours"] = int(truth.size)
    return result


def _frame(hours: np.ndarray, temps: np.ndarray) -> pl.DataFrame:
    keep = np.isfinite(temps)
    return pl.DataFrame(
        {
            "timestamp": pl.Series(hours[keep] * _HOUR_US).cast(pl.Datetime("us", "UTC")),
            "temperature_c": temps[keep],
        }
    )


def _evaluate_origin(
    hours: np.ndarray, temps: np.ndarray, origin: int, train_hours: int, test_hours: int
) -> dict[str, np.ndarray] | None:
    """Predictions for hours origin..origin+test_hours-1 (batch, same maths as one by one)."""
    train = _frame(hours[origin - train_hours : origin], temps[origin - train_hours : origin])
    try:
        model = train_temperature_model(train)
        reference = train_reference(train)
    except ValueError:
        return None
    # Window from the training start to the last test hour: features at hour h only use
    # hours <= h, so row h-1 is exactly what one-step-ahead prediction of h would see.
    lo, hi = origin - train_hours, origin + test_hours
    x, _ = _design(hours[lo:hi], temps[lo:hi])
    offset = HISTORY_HOURS - 1  # _design row i ends at grid position lo + offset + i
    rows = np.arange(origin - 1, hi - 1) - lo - offset
    target = temps[origin:hi]
    last = temps[origin - 1 : hi - 1]
    ref_design = reference_features(_frame(hours[lo:hi], temps[lo:hi]))
    ref_hours = ref_design["timestamp"].dt.epoch("us").to_numpy() // _HOUR_US
    ref_pos = {int(h): i for i, h in enumerate(ref_hours)}
    ref_rows = np.array([ref_pos.get(int(h), -1) for h in hours[origin - 1 : hi - 1]])
    ok = (rows >= 0) & np.isfinite(target) & np.isfinite(last) & (ref_rows >= 0)
    ok[ok] &= np.isfinite(x[rows[ok]]).all(axis=1)
    if not ok.any():
        return None
    model_pred = last[ok] + model.estimator.predict(x[rows[ok]])
    ref_x = ref_design.select(REFERENCE_FEATURES).to_numpy()[ref_rows[ok]]
    return {
        "actual": target[ok],
        "model": model_pred,
        "reference": reference.predict(ref_x),
        "persistence": last[ok],
    }


__all__ = [
    "FEATURE_NAMES",
    "REFERENCE_FEATURES",
    "TemperatureModel",
    "evaluate",
    "persistence_predict",
    "predict_next_hour",
    "predict_reference",
    "reference_features",
    "reference_pipeline",
    "train_reference",
    "train_temperature_model",
]
