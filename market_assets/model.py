"""Daily-volume model: candidates, honest evaluation and the choice (pure functions, no Dagster).

The brief predicts a day's ``Volume`` from ``vol_moving_avg`` and ``adj_close_rolling_med``
with ``RandomForestRegressor(n_estimators=100, random_state=42)`` scored on
``train_test_split(test_size=0.2, random_state=42)``. We keep that split for comparability
and add a time split (train on dates before a cutoff, test at/after it) because a random
split lets a model learn a symbol's level from the days around the test day -- look-ahead
that serving never has. The model kept is the candidate with the lowest time-split MAE that
fits ``MAX_MODEL_BYTES`` pickled, refit on all usable rows for serving.

Why the reference forest is trained on a sample: fully grown trees keep ~one leaf per
training row, so 100 of them on 20M rows would not fit in memory (1M rows already pickle to
~9 GB). It is fit on a random ``reference_train_rows`` of its training split (said so in its
score's note); the alternatives train on the whole split. Every candidate is scored on the
same rows: a seeded random subsample of the test split of at most ``eval_rows``, so the
forest's prediction cost stays bounded.

Why ``HistGradientBoostingRegressor``: it trains on all ~25M rows in minutes with a model
of a few hundred KB and its trees are simple enough to compile for single-row serving. Volume
is heavy-tailed (tens to billions of shares), so ``loss="absolute_error"`` (the score we
choose by) is tried beside squared error, which chases the few huge days; and because its
255 feature bins cap what a model of the *level* can resolve at the top, a model of the
*ratio* to ``vol_moving_avg`` is tried too (``MovingAverageRatioRegressor``), with the moving
average itself as the floor to beat. Every knob that changes a fitted model is explicit and
seeded, so two runs on the same rows give the same model.

Estimators are fit on a ``(n, 2)`` float64 numpy array in ``FEATURES`` order, no feature
names; serving passes a plain row the same way.
"""

from __future__ import annotations

import datetime
import io
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.model_selection import train_test_split

from market_assets.schema import DATE, FEATURES, SYMBOL, TARGET, WINDOW_DAYS

RANDOM_STATE = 42
TEST_FRACTION = 0.2
MIN_ROWS = 100
MAX_MODEL_BYTES = 50_000_000  # the budget for the kept model, pickled
REFERENCE = "reference_forest"
# A yardstick, scored like the others but never kept: the asset's job is a learnt model, and
# whether that model beats "same as the last 30 days" is reported (metadata, check) instead.
BASELINE = "moving_average"
SPLITS = ("random", "time")


class MovingAverageRegressor(RegressorMixin, BaseEstimator):
    """The baseline: tomorrow trades like the last 30 days -- predicts ``vol_moving_avg``.

    The floor every learnt model has to beat to be worth serving; kept only if none does.
    """

    def fit(self, X, y):
        self.n_features_in_ = np.asarray(X).shape[1]
        return self

    def predict(self, X):
        return np.array(np.asarray(X, dtype=np.float64)[:, 0], copy=True)


class MovingAverageRatioRegressor(RegressorMixin, BaseEstimator):
    """``volume = max(vol_moving_avg, 1) * regressor_.predict(X)``: a model of the ratio.

    Why: volume spans ~7 orders of magnitude and HistGradientBoosting bins each feature into
    at most 255 quantile bins, so a model of the level is a step function that predicts one
    value for everything above the top bin (the largest, most traded symbols, which dominate
    the absolute error); on the benchmark it loses to the moving average itself. The ratio
    to the moving average is of order 1 everywhere, so the same trees fit it without that
    ceiling. The floor of 1 share only guards series of 30 zero-volume days. Serving: the
    compiled trees of ``regressor_`` give the ratio; multiply by ``max(X[0], 1)``.
    """

    def __init__(self, regressor=None):
        self.regressor = regressor

    @staticmethod
    def scale(X) -> np.ndarray:
        return np.maximum(np.asarray(X, dtype=np.float64)[:, 0], 1.0)

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        base = self.regressor if self.regressor is not None else _hist_gbm("absolute_error")
        self.regressor_ = clone(base).fit(X, np.asarray(y, dtype=np.float64) / self.scale(X))
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X):
        return self.scale(X) * self.regressor_.predict(np.asarray(X, dtype=np.float64))


def _hist_gbm(loss: str) -> HistGradientBoostingRegressor:
    """sklearn's default size (100 trees of at most 31 leaves, ~360 KB pickled), spelt out.

    No early stopping: it would hold out 10 % of the rows and make the tree count depend on
    the data, and the refit on all rows should be the model that was scored. ``random_state``
    still matters: it seeds the row sample the 255 bin edges are computed from.
    """
    return HistGradientBoostingRegressor(
        loss=loss,
        learning_rate=0.1,
        max_iter=100,
        max_leaf_nodes=31,
        min_samples_leaf=20,
        l2_regularization=0.0,
        max_bins=255,
        early_stopping=False,
        random_state=RANDOM_STATE,
    )


def candidates() -> dict[str, Callable[[], Any]]:
    """Fresh-estimator factories by name, in tie-break order; the first is the brief's reference.

    ``hist_gbm_ratio`` fits the ratio with absolute error unweighted (the median relative
    error); weighting rows by ``vol_moving_avg`` would make it exactly MAE but makes sklearn's
    per-leaf medians several times slower, for well under 1 % of MAE on the benchmark.
    """
    return {
        REFERENCE: lambda: RandomForestRegressor(n_estimators=100, random_state=RANDOM_STATE),
        BASELINE: MovingAverageRegressor,
        "hist_gbm_absolute": lambda: _hist_gbm("absolute_error"),
        "hist_gbm_squared": lambda: _hist_gbm("squared_error"),
        "hist_gbm_ratio": lambda: MovingAverageRatioRegressor(_hist_gbm("absolute_error")),
    }


@dataclass(frozen=True)
class CandidateScore:
    """One candidate on one split; errors in shares (MSE in shares squared)."""

    name: str
    split: str
    mae: float
    mse: float
    r2: float
    train_seconds: float
    model_bytes: int
    train_rows: int
    test_rows: int
    note: str = ""


@dataclass
class TrainingReport:
    """Every score, the candidate kept and its refit on all rows, plus how it was chosen."""

    scores: list[CandidateScore]
    best: str
    estimator: object
    model_bytes: int
    rows: int
    dropped_rows: int
    time_cutoff: datetime.date
    reference_train_rows: int = 0
    eval_rows: int = 0
    refit_seconds: float = 0.0
    refit_note: str = ""
    reason: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def score(self, name: str, split: str) -> CandidateScore:
        for s in self.scores:
            if s.name == name and s.split == split:
                return s
        raise KeyError(f"no score for candidate {name!r} on the {split!r} split")

    def metadata(self) -> dict[str, float | int | str]:
        """Flat numbers for Dagster metadata: ``<split>/<candidate>/<measure>`` plus the choice."""
        out: dict[str, float | int | str] = {
            "best": self.best,
            "model_bytes": self.model_bytes,
            "rows": self.rows,
            "dropped_rows": self.dropped_rows,
            "time_cutoff": self.time_cutoff.isoformat(),
            "reference_train_rows": self.reference_train_rows,
            "eval_rows": self.eval_rows,
            "refit_seconds": round(self.refit_seconds, 3),
        }
        for s in self.scores:
            key = f"{s.split}/{s.name}"
            out[f"{key}/mae"] = s.mae
            out[f"{key}/mse"] = s.mse
            out[f"{key}/r2"] = s.r2
            out[f"{key}/train_seconds"] = round(s.train_seconds, 3)
            out[f"{key}/model_bytes"] = s.model_bytes
            out[f"{key}/train_rows"] = s.train_rows
            out[f"{key}/test_rows"] = s.test_rows
        return out

    def log_text(self) -> str:
        """A human-readable training log: parameters, sampling, every score, the choice and why."""
        lines = [
            f"Volume model from {FEATURES} -> {TARGET}: {self.rows:,} usable rows "
            f"({self.dropped_rows:,} dropped: null features in the first {WINDOW_DAYS - 1} "
            "days of each series, or no volume).",
            f"Splits: random = train_test_split(test_size={TEST_FRACTION}, "
            f"random_state={RANDOM_STATE}) as in the brief; time = train on dates before "
            f"{self.time_cutoff}, test on dates from it (the last ~{TEST_FRACTION:.0%} of rows).",
            f"Every candidate is scored on the same test rows per split (a seeded random "
            f"subsample of at most {self.eval_rows:,}).",
            f"The reference forest is trained on a random sample of at most "
            f"{self.reference_train_rows:,} rows of its training split (grown on all of them its "
            "trees would not fit in memory); the other candidates train on the whole split.",
            "Candidates:",
        ]
        lines += [f"  {name}: {params}" for name, params in self.params.items()]
        lines.append("Scores (MAE/MSE in shares):")
        lines += [f"  {format_score(s)}" for s in self.scores]
        lines.append(f"Kept {self.best}: {self.reason}")
        lines.append(
            f"Refit {self.best} on {self.refit_note} in {self.refit_seconds:.1f} s: "
            f"{self.model_bytes:,} bytes pickled."
        )
        return "\n".join(lines)


def format_score(s: CandidateScore) -> str:
    line = (
        f"{s.split:<6} {s.name:<18} MAE {s.mae:,.0f}  MSE {s.mse:.4g}  R2 {s.r2:.4f}  "
        f"train {s.train_seconds:.1f} s  {s.model_bytes:,} bytes  "
        f"{s.train_rows:,} train / {s.test_rows:,} test rows"
    )
    return f"{line}  ({s.note})" if s.note else line


class _ByteCounter(io.RawIOBase):
    """A write-only sink that only counts, so sizing a 1 GB forest doesn't allocate 1 GB."""

    def __init__(self) -> None:
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        n = memoryview(b).nbytes
        self.size += n
        return n


def pickled_bytes(obj: object) -> int:
    """``len(pickle.dumps(obj, protocol=5))`` without holding the bytes."""
    sink = _ByteCounter()
    pickle.dump(obj, sink, protocol=5)
    return sink.size


def training_arrays(features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``X`` (n, 2) float64 in ``FEATURES`` order, ``y`` float64 and ``dates`` (datetime64[D]).

    Drops rows with a null or non-finite feature (the first 29 days of every series) or a null
    volume. Rows are ordered by symbol then date first, so the random split -- which picks
    positions -- does not depend on the order the frame happened to arrive in.
    """
    missing = [c for c in (SYMBOL, DATE, TARGET, *FEATURES) if c not in features.columns]
    if missing:
        raise ValueError(f"the features frame has no column(s) {missing}")
    usable = (
        pl.all_horizontal(pl.col(c).cast(pl.Float64).is_finite() for c in FEATURES)
        & pl.col(TARGET).is_not_null()
    )
    rows = (
        features.lazy()
        .select(SYMBOL, DATE, *FEATURES, TARGET)
        .filter(usable)
        .sort(SYMBOL, DATE)
        .collect()
    )
    x = rows.select(pl.col(c).cast(pl.Float64) for c in FEATURES).to_numpy(order="c")
    y = rows[TARGET].cast(pl.Float64).to_numpy()
    dates = rows[DATE].cast(pl.Date).to_numpy().astype("datetime64[D]")
    return np.ascontiguousarray(x, dtype=np.float64), y, dates


def random_split(
    n: int, test_size: float = TEST_FRACTION, random_state: int = RANDOM_STATE
) -> tuple[np.ndarray, np.ndarray]:
    """Train/test positions exactly as ``train_test_split`` picks the rows of an n-row frame."""
    train, test = train_test_split(np.arange(n), test_size=test_size, random_state=random_state)
    return train, test


def time_split(
    dates: np.ndarray, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray, datetime.date]:
    """Train positions with dates before the cutoff, test positions at/after it, the cutoff.

    The cutoff is the date at the (1 - test_fraction) quantile of rows, so roughly that share
    of rows is tested (more when many rows share the cutoff date). No look-ahead: every train
    date is earlier than every test date.
    """
    days = np.asarray(dates, dtype="datetime64[D]")
    if len(days) < 2:
        raise ValueError(f"a time split needs at least 2 rows, got {len(days)}")
    k = min(max(int((1.0 - test_fraction) * len(days)), 1), len(days) - 1)
    cutoff = np.partition(days, k)[k]
    train, test = np.flatnonzero(days < cutoff), np.flatnonzero(days >= cutoff)
    if len(train) == 0:
        raise ValueError(f"no rows before the time-split cutoff {cutoff}: all rows share dates")
    return train, test, cutoff.item()


def _subsample(idx: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of ``idx``, seeded and sorted; ``idx`` itself when it is small enough."""
    if len(idx) <= cap:
        return idx
    rng = np.random.default_rng(seed)
    return np.sort(idx[rng.choice(len(idx), size=cap, replace=False)])


_SHOWN_PARAMS = (
    *("loss", "learning_rate", "max_iter", "max_leaf_nodes", "min_samples_leaf"),
    *("l2_regularization", "max_bins", "early_stopping", "n_estimators", "max_depth"),
    *("max_features", "bootstrap", "random_state", "n_jobs"),
)


def _describe(estimator: Any) -> str:
    """The constructor call with every parameter that shapes the model, nested ones included."""
    parts = []
    for key, value in estimator.get_params(deep=False).items():
        if hasattr(value, "get_params"):
            parts.append(f"{key}={_describe(value)}")
        elif key in _SHOWN_PARAMS:
            parts.append(f"{key}={value!r}")
    return f"{type(estimator).__name__}({', '.join(parts)})"


def train_volume_model(
    features: pl.DataFrame,
    *,
    reference_train_rows: int = 100_000,
    eval_rows: int = 1_000_000,
    log: Callable[[str], None] | None = None,
) -> TrainingReport:
    """Score every candidate on both splits, keep the best by time-split MAE, refit it on all rows.

    ``log`` receives progress lines as they happen (e.g. ``context.log.info``); the report's
    ``log_text()`` is the full summary. Raises ValueError with fewer than ``MIN_ROWS`` usable
    rows.
    """
    emit = log or (lambda _line: None)
    total = features.height
    x, y, dates = _usable_arrays(features)
    n = len(y)
    if reference_train_rows < 1 or eval_rows < 1:
        raise ValueError("reference_train_rows and eval_rows must be positive")
    factories = candidates()
    emit(f"{n:,} usable rows of {total:,} ({total - n:,} dropped for null features/volume)")

    splits, cutoff = _evaluation_splits(dates, emit)
    scores: list[CandidateScore] = []
    for split, (train, test) in splits.items():
        scores += _score_candidates_on_split(
            factories, split, train, test, x, y, reference_train_rows, eval_rows, emit
        )
    best, reason = _choose(scores, list(factories))
    emit(f"kept {best}: {reason}")

    # Rebinding x, y here (not inside a helper) lets the full arrays go before a sampled refit.
    x, y, refit_note = _refit_rows(best, x, y, reference_train_rows)
    estimator, refit_seconds, size = _refit(best, factories[best], x, y, refit_note, emit)
    return TrainingReport(
        scores=scores,
        best=best,
        estimator=estimator,
        model_bytes=size,
        rows=n,
        dropped_rows=total - n,
        time_cutoff=cutoff,
        reference_train_rows=reference_train_rows,
        eval_rows=eval_rows,
        refit_seconds=refit_seconds,
        refit_note=refit_note,
        reason=reason,
        params={name: _describe(make()) for name, make in factories.items()},
    )


def _usable_arrays(features: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``training_arrays`` of the frame; ValueError when fewer than ``MIN_ROWS`` are usable."""
    total = features.height
    x, y, dates = training_arrays(features)
    n = len(y)
    if n < MIN_ROWS:
        raise ValueError(
            f"only {n:,} of {total:,} rows are usable to train the volume model (need at least "
            f"{MIN_ROWS}): {total - n:,} have null features or volume -- the first "
            f"{WINDOW_DAYS - 1} trading days of each symbol have no {WINDOW_DAYS}-day window"
        )
    return x, y, dates


def _evaluation_splits(
    dates: np.ndarray, emit: Callable[[str], None]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], datetime.date]:
    """Train/test positions by split name (``SPLITS`` order) and the time split's cutoff."""
    train_r, test_r = random_split(len(dates))
    train_t, test_t, cutoff = time_split(dates)
    emit(
        f"time split: {len(train_t):,} train rows dated before {cutoff}, "
        f"{len(test_t):,} test rows from it"
    )
    return {"random": (train_r, test_r), "time": (train_t, test_t)}, cutoff


def _score_candidates_on_split(
    factories: dict[str, Callable[[], Any]],
    split: str,
    train: np.ndarray,
    test: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    reference_train_rows: int,
    eval_rows: int,
    emit: Callable[[str], None],
) -> list[CandidateScore]:
    """Every candidate fit on ``train`` (the reference on a sample) and scored on the same
    seeded subsample of ``test``, in ``factories`` order."""
    eval_idx = _subsample(test, eval_rows, seed=RANDOM_STATE)
    x_test, y_test = x[eval_idx], y[eval_idx]
    eval_note = (
        f"scored on a {len(eval_idx):,}-row sample of {len(test):,} test rows"
        if len(eval_idx) < len(test)
        else ""
    )
    scores = []
    for name, make in factories.items():
        fit_idx = train
        notes = [eval_note] if eval_note else []
        if name == REFERENCE and len(train) > reference_train_rows:
            fit_idx = _subsample(train, reference_train_rows, seed=RANDOM_STATE)
            notes.insert(0, f"trained on a {len(fit_idx):,}-row sample of {len(train):,}")
        emit(f"{split} split: fitting {name} on {len(fit_idx):,} rows")
        score = _fit_and_score(
            name, make(), split, x, y, fit_idx, x_test, y_test, note="; ".join(notes)
        )
        scores.append(score)
        emit(format_score(score))
    return scores


def _fit_and_score(
    name: str,
    estimator: Any,
    split: str,
    x: np.ndarray,
    y: np.ndarray,
    fit_idx: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    note: str,
) -> CandidateScore:
    """Fit a fresh ``estimator`` on the ``fit_idx`` rows, time it, and score it on the test rows.

    The copied training rows are released before predicting, and the estimator when this
    returns, so a large forest is never held twice.
    """
    x_fit, y_fit = x[fit_idx], y[fit_idx]
    started = time.perf_counter()
    estimator.fit(x_fit, y_fit)
    seconds = time.perf_counter() - started
    del x_fit, y_fit
    pred = estimator.predict(x_test)
    return CandidateScore(
        name=name,
        split=split,
        mae=float(mean_absolute_error(y_test, pred)),
        mse=float(mean_squared_error(y_test, pred)),
        r2=float(r2_score(y_test, pred)),
        train_seconds=seconds,
        model_bytes=pickled_bytes(estimator),
        train_rows=len(fit_idx),
        test_rows=len(y_test),
        note=note,
    )


def _refit_rows(
    best: str, x: np.ndarray, y: np.ndarray, reference_train_rows: int
) -> tuple[np.ndarray, np.ndarray, str]:
    """The rows the kept candidate is refit on and how to say so: all usable rows, or for the
    reference forest a seeded sample of at most ``reference_train_rows``."""
    n = len(y)
    if best == REFERENCE and n > reference_train_rows:
        sample = _subsample(np.arange(n), reference_train_rows, seed=RANDOM_STATE)
        return x[sample], y[sample], f"a {len(sample):,}-row random sample of the {n:,} usable rows"
    return x, y, f"all {n:,} usable rows"


def _refit(
    best: str,
    make: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    refit_note: str,
    emit: Callable[[str], None],
) -> tuple[Any, float, int]:
    """The kept candidate fit afresh on ``x``/``y``: the estimator, seconds taken, pickled bytes."""
    estimator = make()
    emit(f"refitting {best} on {refit_note}")
    started = time.perf_counter()
    estimator.fit(x, y)
    refit_seconds = time.perf_counter() - started
    size = pickled_bytes(estimator)
    emit(f"refit in {refit_seconds:.1f} s, {size:,} bytes pickled")
    return estimator, refit_seconds, size


def _choose(scores: list[CandidateScore], names: list[str]) -> tuple[str, str]:
    """The lowest time-split MAE among learnt candidates within ``MAX_MODEL_BYTES`` (else among
    all learnt ones); the moving-average yardstick is compared against, never kept.

    The size counts because the kept model is loaded by the web service; the time split
    because it is the one without look-ahead. Ties go to the earlier candidate in
    ``candidates()`` order, so the choice is deterministic.
    """
    by = {(s.name, s.split): s for s in scores}
    baseline = by.get((BASELINE, "time"))
    names = [n for n in names if n != BASELINE]
    size = {n: max(by[n, sp].model_bytes for sp in SPLITS) for n in names}
    fits = [n for n in names if size[n] <= MAX_MODEL_BYTES]
    best = min(fits or names, key=lambda n: (by[n, "time"].mae, names.index(n)))
    reason = f"lowest time-split MAE ({by[best, 'time'].mae:,.0f})"
    if not fits:
        reason += f" -- no candidate fits {MAX_MODEL_BYTES:,} bytes, so the size target is missed"
    elif len(fits) < len(names):
        too_big = ", ".join(f"{n} at {size[n]:,}" for n in names if n not in fits)
        reason += f" among the candidates within {MAX_MODEL_BYTES:,} bytes (not {too_big})"
    if baseline is not None:
        kept = by[best, "time"].mae
        verdict = "beats" if kept < baseline.mae else "does NOT beat"
        reason += (
            f"; it {verdict} the moving-average yardstick on the time split "
            f"({baseline.mae:,.0f}, {100 * (kept / baseline.mae - 1):+.1f} %)"
        )
    if best == REFERENCE:
        return best, reason + "; it is the reference forest itself"
    for split in SPLITS:
        k, r = by[best, split], by[REFERENCE, split]
        verdict = "no worse than" if k.mae <= r.mae else "WORSE than"
        reason += (
            f"; {split}-split MAE {k.mae:,.0f} is {verdict} the reference forest's "
            f"{r.mae:,.0f} ({100 * (k.mae / r.mae - 1):+.1f} %)"
        )
    return best, reason


def predict_volume(estimator: Any, vol_moving_avg: float, adj_close_rolling_med: float) -> int:
    """One day's predicted volume in shares, rounded and clipped at 0.

    Non-finite inputs raise ValueError: the model never saw a row without a full 30-day
    window, so any number it returned for one would be a guess dressed up as a prediction.
    """
    row = np.array([[vol_moving_avg, adj_close_rolling_med]], dtype=np.float64)
    if not np.isfinite(row).all():
        raise ValueError(
            f"features must be finite numbers, got vol_moving_avg={vol_moving_avg!r}, "
            f"adj_close_rolling_med={adj_close_rolling_med!r}"
        )
    value = float(estimator.predict(row)[0])
    return max(0, round(value))
