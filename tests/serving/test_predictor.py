"""The compiled HGB predictor answers exactly what ``estimator.predict`` answers."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingRegressor, RandomForestRegressor
from threadpoolctl import threadpool_limits

from serving.predictor import CompiledHGB, SklearnPredictor, make_predictor, to_volume


@pytest.fixture(autouse=True, scope="module")
def one_openmp_thread():
    """Fit and predict on one OpenMP thread: on a busy shared machine, OpenMP's spinning
    threads make tiny fits 10x slower."""
    with threadpool_limits(limits=1, user_api="openmp"):
        yield


def training_rows(n: int = 600, seed: int = 0, with_nan: bool = False):
    rng = np.random.default_rng(seed)
    vol = rng.pareto(1.3, n) * 5_000 + rng.lognormal(8, 1, n)
    price = rng.lognormal(3, 1, n)
    y = vol * (1 + 0.3 * np.tanh(np.log(price / 20))) * rng.lognormal(0, 0.4, n)
    X = np.column_stack([vol, price])
    if with_nan:
        X[rng.random(n) < 0.05, 0] = np.nan
        X[rng.random(n) < 0.05, 1] = np.nan
    return X, y


def probe_rows(model: HistGradientBoostingRegressor, n_random: int = 3000) -> np.ndarray:
    """Random rows over and beyond the training range, plus zero, huge, and every threshold."""
    rng = np.random.default_rng(1)
    random = np.column_stack(
        [
            rng.lognormal(9, 3, n_random) * rng.integers(0, 2, n_random),
            rng.lognormal(3, 2, n_random),
        ]
    )
    edges = [0.0, 1e-300, 1.0, 1e12, 1e300, np.finfo(np.float64).max, np.inf, np.nan]
    rows = [random, np.array([[a, b] for a in edges for b in edges])]
    for predictors in model._predictors:
        nodes = predictors[0].nodes
        for node in nodes[nodes["is_leaf"] == 0]:
            t = node["num_threshold"]
            for x in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
                row = rng.lognormal(5, 2, 2)
                row[node["feature_idx"]] = x
                rows.append(row[None, :])
    return np.concatenate(rows)


def assert_same(predictor, model, X: np.ndarray) -> None:
    got = np.array([predictor.predict_one(row) for row in X.tolist()])
    np.testing.assert_allclose(got, model.predict(X), rtol=1e-9, atol=0)


@pytest.mark.parametrize("loss", ["absolute_error", "squared_error", "poisson"])
@pytest.mark.parametrize("with_nan", [False, True], ids=["numeric", "with-missing"])
def test_compiled_hgb_equals_predict(loss, with_nan):
    X, y = training_rows(with_nan=with_nan)
    model = HistGradientBoostingRegressor(loss=loss, max_iter=40, random_state=0).fit(X, y)
    predictor = make_predictor(model)
    assert isinstance(predictor, CompiledHGB)
    rows = probe_rows(model)
    assert len(rows) > 3000
    assert_same(predictor, model, rows)


def test_deep_trees_and_single_leaf_trees():
    X, y = training_rows(n=400)
    deep = HistGradientBoostingRegressor(
        max_iter=10, max_leaf_nodes=None, max_depth=12, min_samples_leaf=2
    ).fit(X, y)
    assert_same(make_predictor(deep), deep, probe_rows(deep, 500))
    flat = HistGradientBoostingRegressor(max_iter=5).fit(X, np.full(len(y), 7.0))
    assert all(p[0].nodes["is_leaf"][0] for p in flat._predictors)
    assert_same(make_predictor(flat), flat, X[:50])


def test_other_estimators_fall_back_to_predict():
    X, y = training_rows(n=300)
    forest = RandomForestRegressor(n_estimators=10, random_state=0, n_jobs=-1).fit(X, y)
    predictor = make_predictor(forest)
    assert isinstance(predictor, SklearnPredictor)
    assert predictor.kind == "sklearn"
    assert predictor.estimator.n_jobs == 1 and forest.n_jobs == -1
    assert_same(predictor, forest, X[:200])

    codes = np.column_stack([np.arange(300) % 4, X[:, 1]])
    categorical = HistGradientBoostingRegressor(max_iter=5, categorical_features=[0]).fit(codes, y)
    assert isinstance(make_predictor(categorical), SklearnPredictor)


def test_compiled_predictor_checks_the_row_length():
    X, y = training_rows(n=200)
    predictor = make_predictor(HistGradientBoostingRegressor(max_iter=3).fit(X, y))
    with pytest.raises(ValueError, match="expected 2 features, got 3"):
        predictor.predict_one([1.0, 2.0, 3.0])


def test_to_volume_rounds_and_clips():
    assert to_volume(10349.6) == 10350
    assert to_volume(-3.2) == 0
    assert isinstance(to_volume(1.0), int)


def test_the_volume_models_own_wrappers_are_compiled_too():
    from market_assets.model import MovingAverageRatioRegressor, MovingAverageRegressor

    X, y = training_rows()
    ratio = MovingAverageRatioRegressor(
        HistGradientBoostingRegressor(loss="absolute_error", max_iter=30, random_state=0)
    ).fit(X, y)
    predictor = make_predictor(ratio)
    assert predictor.kind == "ratio(compiled-hgb)"
    rows = probe_rows(ratio.regressor_)
    rows = rows[np.isfinite(rows).all(axis=1) & (rows < 1e200).all(axis=1)]
    rows = np.concatenate([rows, [[0.0, 5.0], [0.5, 5.0]]])  # below the floor of 1 share
    assert_same(predictor, ratio, rows)

    average = MovingAverageRegressor().fit(X, y)
    assert make_predictor(average).kind == "moving-average"
    assert_same(make_predictor(average), average, X)
