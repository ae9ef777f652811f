"""Single-row predictions in tens of microseconds instead of scikit-learn's milliseconds.

``estimator.predict`` on one row spends its time on input validation and on starting OpenMP
threads, not on the trees. For a ``HistGradientBoostingRegressor`` this module copies the fitted
trees into a few flat numpy arrays once, then answers a row with a handful of vectorised steps:

1. every split node's decision for this row (one comparison per feature over its nodes),
2. all trees walked together, one level per step (``idx = next_node[idx]``; leaves point to
   themselves, so trees that end early just stay put),
3. the leaf values added in tree order, starting from the baseline, exactly as scikit-learn
   does (``np.cumsum`` adds sequentially), then the loss's inverse link.

The result is bit-for-bit ``estimator.predict`` (see tests/serving/test_predictor.py). The
volume model's own wrappers (``market_assets.model``: the moving average, and the HGB of the
ratio to it) are evaluated the same way; any other estimator (a RandomForest, a categorical
HGB) falls back to ``estimator.predict``.
Node fields and rules follow scikit-learn 1.9's ``_hist_gradient_boosting/_predictor.pyx``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Predictor(Protocol):
    kind: str

    def predict_one(self, row: Sequence[float]) -> float:
        """The model's prediction for one row of features, in the training column order."""
        ...


def to_volume(prediction: float) -> int:
    """The API's answer: a share count, rounded, never negative."""
    return max(0, round(prediction))


class SklearnPredictor:
    """Any fitted regressor, through its own ``predict`` (slow per row, always correct)."""

    kind = "sklearn"

    def __init__(self, estimator: Any):
        if "n_jobs" in getattr(estimator, "get_params", dict)():
            # A forest fitted with n_jobs=-1 would start a thread pool for every single row
            # (~3x slower than one thread). A shallow copy leaves the caller's estimator alone.
            estimator = copy.copy(estimator)
            estimator.n_jobs = 1
        self.estimator = estimator

    def predict_one(self, row: Sequence[float]) -> float:
        return float(self.estimator.predict(np.asarray([row], dtype=np.float64))[0])


class CompiledHGB:
    """A fitted ``HistGradientBoostingRegressor`` (numeric features) as flat numpy arrays.

    Node layout: split nodes first, grouped by feature (``self._splits[f]`` is the slice of
    feature ``f``'s nodes), then the leaves. That makes step 1 one contiguous comparison per
    feature, with no gather.
    """

    kind = "compiled-hgb"

    def __init__(self, estimator: Any):
        trees = [predictors[0] for predictors in estimator._predictors]
        nodes = np.concatenate([tree.nodes for tree in trees])
        starts = np.cumsum([0] + [len(tree.nodes) for tree in trees])[:-1]
        tree_of = np.repeat(np.arange(len(trees)), [len(tree.nodes) for tree in trees])
        split = nodes["is_leaf"] == 0
        feature = nodes["feature_idx"].astype(np.intp)
        # New order: split nodes sorted by feature (stable), then leaves.
        order = np.concatenate(
            [
                np.flatnonzero(split)[np.argsort(feature[split], kind="stable")],
                np.flatnonzero(~split),
            ]
        )
        new_index = np.empty(len(nodes), dtype=np.intp)
        new_index[order] = np.arange(len(nodes))
        offset = starts[tree_of]
        left = new_index[nodes["left"].astype(np.intp) + offset][order]
        right = new_index[nodes["right"].astype(np.intp) + offset][order]
        n_splits = int(split.sum())
        self._leaf_next = np.arange(n_splits, len(nodes), dtype=np.intp)
        self._left = left[:n_splits]
        self._right = right[:n_splits]
        self._threshold = nodes["num_threshold"][order][:n_splits].astype(np.float64)
        self._missing_right = nodes["missing_go_to_left"][order][:n_splits] == 0
        sorted_features = feature[order][:n_splits]
        n_features = int(estimator.n_features_in_)
        bounds = np.searchsorted(sorted_features, np.arange(n_features + 1))
        spans = [(f, slice(int(bounds[f]), int(bounds[f + 1]))) for f in range(n_features)]
        self._splits = [
            (f, span, self._threshold[span], self._missing_right[span])
            for f, span in spans
            if span.stop > span.start
        ]
        self._n_features = n_features
        self._n_splits = n_splits
        self._roots = new_index[starts]
        self._steps = int(nodes["depth"][~split].max())
        # scikit-learn starts from the baseline and adds tree 0's leaf first: folding the
        # baseline into tree 0's leaves is the very same floating-point addition.
        value = nodes["value"].astype(np.float64)
        value[(tree_of == 0) & ~split] += float(np.ravel(estimator._baseline_prediction)[0])
        self._value = value[order]
        link = estimator._loss.link
        self._inverse = None if type(link).__name__ == "IdentityLink" else link.inverse

    def predict_one(self, row: Sequence[float]) -> float:
        if len(row) != self._n_features:
            raise ValueError(f"expected {self._n_features} features, got {len(row)}")
        go_right = np.empty(self._n_splits, dtype=bool)
        for f, nodes, threshold, missing_right in self._splits:
            x = row[f]
            if math.isnan(x):
                go_right[nodes] = missing_right
            else:
                np.greater(x, threshold, out=go_right[nodes])
        next_node = np.concatenate((np.where(go_right, self._right, self._left), self._leaf_next))
        idx = self._roots
        for _ in range(self._steps):
            idx = next_node[idx]
        raw = np.cumsum(self._value[idx])[-1]
        if self._inverse is not None:
            return float(self._inverse(np.array([raw]))[0])
        return float(raw)


def can_compile(estimator: Any) -> bool:
    """A fitted HGB regressor with one tree per iteration and only numeric features."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    categorical = getattr(estimator, "is_categorical_", None)
    return (
        isinstance(estimator, HistGradientBoostingRegressor)
        and len(getattr(estimator, "_predictors", ())) > 0
        and getattr(estimator, "n_trees_per_iteration_", None) == 1
        and getattr(estimator, "_preprocessor", None) is None
        and (categorical is None or not np.any(categorical))
    )


class MovingAverage:
    """``market_assets.model.MovingAverageRegressor``: the first feature, as is."""

    kind = "moving-average"

    def predict_one(self, row: Sequence[float]) -> float:
        return float(row[0])


class ScaledByMovingAverage:
    """``market_assets.model.MovingAverageRatioRegressor``: ``max(row[0], 1) * ratio(row)``,
    with the ratio model itself made fast by ``make_predictor``."""

    def __init__(self, ratio: Predictor):
        self._ratio = ratio
        self.kind = f"ratio({ratio.kind})"

    def predict_one(self, row: Sequence[float]) -> float:
        return max(float(row[0]), 1.0) * self._ratio.predict_one(row)


def make_predictor(estimator: Any) -> Predictor:
    """The fastest exact predictor for ``estimator``; ``estimator.predict`` if none is known."""
    # Imported here: the model module pulls in scikit-learn, which can_compile needs anyway.
    from market_assets.model import MovingAverageRatioRegressor, MovingAverageRegressor

    if type(estimator) is MovingAverageRegressor:
        return MovingAverage()
    if type(estimator) is MovingAverageRatioRegressor:
        return ScaledByMovingAverage(make_predictor(estimator.regressor_))
    return CompiledHGB(estimator) if can_compile(estimator) else SklearnPredictor(estimator)
