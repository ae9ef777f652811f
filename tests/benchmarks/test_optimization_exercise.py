"""The brief's optimization exercise: vectorized == row loop, and lossless memory reduction."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import polars as pl
import pytest
from polars.testing import assert_frame_equal as pl_assert_frame_equal

from benchmarks.optimization_exercise import (
    FLOAT32_RTOL,
    MemoryReport,
    apply_polars,
    apply_row_loop,
    apply_vectorized,
    float32_is_lossless,
    function_expr,
    function_numpy,
    function_to_apply,
    main,
    reduce_memory_pandas,
    reduce_memory_polars,
    smallest_int_dtype,
)

# --------------------------------------------------------------------------------------------
# (a) loop vs vectorized
# --------------------------------------------------------------------------------------------

HAND = [
    ((0.0, 0.0), 0.0),  # sin(0)^2 + 1*1*sin(0)^2
    ((math.pi, 0.0), 1.0),  # sin(pi/2)^2 = 1, the second term has sin(0) = 0
    ((0.0, math.pi), -1.0),  # 0 + cos(0)*cos(pi)*sin(pi/2)^2 = -1
]


def _random_frame(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"lat": rng.uniform(-math.pi / 2, math.pi / 2, n), "lon": rng.uniform(-math.pi, math.pi, n)}
    )


@pytest.mark.parametrize(("point", "expected"), HAND)
def test_hand_values_are_exact_in_every_version(point, expected):
    lat, lon = point
    frame = pd.DataFrame({"lat": [lat], "lon": [lon]})
    assert function_to_apply(lat, lon) == expected
    assert apply_row_loop(frame).iloc[0] == expected
    assert apply_vectorized(frame).iloc[0] == expected
    assert apply_polars(pl.DataFrame({"lat": [lat], "lon": [lon]}))[0] == expected


def test_known_value_matches_the_formula_as_written():
    lat, lon = 0.5, 1.0
    expected = math.sin(0.25) ** 2 + math.cos(0.5) * math.cos(1.0) * math.sin(0.5) ** 2
    assert function_to_apply(lat, lon) == expected
    assert math.isclose(expected, 0.1701938212, rel_tol=1e-9)  # worked by hand
    assert function_numpy(np.array([lat]), np.array([lon]))[0] == pytest.approx(expected, rel=1e-15)


def test_vectorized_and_polars_equal_the_row_loop():
    frame = _random_frame(2_000)
    loop = apply_row_loop(frame)
    vec = apply_vectorized(frame)
    pol = apply_polars(pl.from_pandas(frame))
    assert loop.index.equals(vec.index)
    assert np.allclose(vec.to_numpy(), loop.to_numpy(), rtol=1e-13, atol=1e-15)
    assert np.allclose(pol.to_numpy(), loop.to_numpy(), rtol=1e-13, atol=1e-15)


def test_nan_handling_is_the_same():
    frame = pd.DataFrame(
        {"lat": [np.nan, 0.3, np.nan, 0.2], "lon": [0.1, np.nan, np.nan, 0.4]}, index=[5, 6, 7, 8]
    )
    loop = apply_row_loop(frame)
    vec = apply_vectorized(frame)
    pol = apply_polars(pl.from_pandas(frame, nan_to_null=False)).to_numpy()
    assert np.isnan(loop.to_numpy()[:3]).all()
    assert not np.isnan(loop.iloc[3])
    np.testing.assert_array_equal(np.isnan(vec.to_numpy()), np.isnan(loop.to_numpy()))
    np.testing.assert_array_equal(np.isnan(pol), np.isnan(loop.to_numpy()))
    assert list(vec.index) == [5, 6, 7, 8]
    # polars nulls (missing, not NaN) give null, never a number
    nulls = pl.DataFrame(
        {"lat": [None, 0.2], "lon": [0.1, 0.4]}, schema={"lat": pl.Float64, "lon": pl.Float64}
    )
    out = apply_polars(nulls)
    assert out[0] is None and out[1] == pytest.approx(loop.iloc[3], rel=1e-15)


def test_function_expr_works_lazily_with_other_names():
    lf = pl.LazyFrame({"a": [0.0, math.pi], "b": [0.0, 0.0]})
    assert lf.select(function_expr("a", "b")).collect()["result"].to_list() == [0.0, 1.0]


# --------------------------------------------------------------------------------------------
# (b) memory reduction
# --------------------------------------------------------------------------------------------


def _mixed_pandas(n: int = 1_000, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    regions = np.array(["Andalucía", "Cataluña", "Madrid", "Galicia", "País Vasco"])
    hours = pd.date_range("2024-01-01", periods=n, freq="h")
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) + 100_000,  # -> int32
            "hour": (np.arange(n) % 24).astype(np.int64),  # -> int8
            "big": np.full(n, 2**40, dtype=np.int64),  # stays int64
            "region": regions[rng.integers(0, len(regions), n)],  # repetitive -> category
            "name": [f"station {i}" for i in range(n)],  # unique -> stays string
            "day": hours.strftime("%Y-%m-%d"),  # -> datetime
            "datetime": hours.strftime("%Y-%m-%dT%H:%M:%S.000+01:00"),  # -> UTC datetime
            "not_a_date": ["2024-13-45"] * n,  # matches the date shape, does not parse -> category
            "demand_mw": np.round(rng.uniform(18_000, 42_000, n), 1),  # 1 decimal -> float32
            "raw": rng.normal(size=n),  # full precision -> stays float64
        }
    )


def _assert_values_preserved(original: pd.DataFrame, reduced: pd.DataFrame) -> None:
    """Upcast the reduced frame back and compare with the original within FLOAT32_RTOL."""
    for col in original.columns:
        before, after = original[col], reduced[col]
        if pd.api.types.is_datetime64_any_dtype(after):
            assert not pd.api.types.is_datetime64_any_dtype(before)
            expected = pd.to_datetime(before, format="ISO8601", utc=after.dt.tz is not None)
            pd.testing.assert_series_equal(after, expected)
        elif pd.api.types.is_float_dtype(before):
            pd.testing.assert_series_equal(
                after.astype(before.dtype), before, rtol=FLOAT32_RTOL, atol=0
            )
        elif isinstance(after.dtype, pd.CategoricalDtype):  # missing comes back as NaN
            assert after.isna().equals(before.isna())
            present = before.notna()
            assert (after.astype(object)[present] == before[present]).all()
        else:
            pd.testing.assert_series_equal(after.astype(before.dtype), before)


def test_pandas_reducer_preserves_values_and_converts_as_expected():
    original = _mixed_pandas()
    snapshot = original.copy()
    reduced, report = reduce_memory_pandas(original)

    pd.testing.assert_frame_equal(original, snapshot)  # input untouched
    _assert_values_preserved(original, reduced)
    dtypes = reduced.dtypes.astype(str).to_dict()
    assert dtypes["id"] == "int32"
    assert dtypes["hour"] == "int8"
    assert dtypes["big"] == "int64"
    assert dtypes["region"] == "category"
    assert dtypes["not_a_date"] == "category"
    assert reduced["name"].dtype == original["name"].dtype  # unique strings stay strings
    assert dtypes["day"].startswith("datetime64")
    assert dtypes["datetime"].startswith("datetime64") and str(reduced["datetime"].dt.tz) == "UTC"
    assert dtypes["demand_mw"] == "float32"
    # 2024-01-01T00:00+01:00 is the instant 2023-12-31 23:00 UTC
    assert reduced["datetime"].iloc[0] == pd.Timestamp("2023-12-31 23:00", tz="UTC")
    assert dtypes["raw"] == "float64"
    # the 1-decimal demand still prints as the same decimal
    assert (reduced["demand_mw"].astype(str) == original["demand_mw"].astype(str)).all()
    assert set(report.changes) == {
        "id",
        "hour",
        "region",
        "not_a_date",
        "day",
        "datetime",
        "demand_mw",
    }


def test_pandas_report_counts_bytes():
    original = _mixed_pandas()
    reduced, report = reduce_memory_pandas(original)
    assert isinstance(report, MemoryReport)
    assert report.before_bytes == original.memory_usage(deep=True).sum()
    assert report.after_bytes == reduced.memory_usage(deep=True).sum()
    assert report.after_bytes < report.before_bytes
    assert report.reduction_pct == pytest.approx(
        100 * (1 - report.after_bytes / report.before_bytes)
    )
    assert "% less" in str(report) and "region" in str(report)


def test_pandas_nulls_nullable_ints_object_strings_and_no_op():
    frame = pd.DataFrame(
        {
            "n": pd.array([1, None, 300, None], dtype="Int64"),  # -> Int16, nulls kept
            "f": [0.5, np.nan, 1.25, np.nan],  # exact in float32 -> float32, NaN kept
            "s": pd.Series(["x", None, "x", "x"], dtype=object),  # object strings -> category
            "mixed": pd.Series(["a", 1, "a", 2], dtype=object),  # not all strings -> untouched
            "flag": [True, False, True, True],
            "d": ["2024-01-01", None, "2024-01-03", None],  # nulls allowed in dates
        }
    )
    reduced, report = reduce_memory_pandas(frame)
    assert str(reduced["n"].dtype) == "Int16"
    assert reduced["n"].isna().tolist() == [False, True, False, True]
    assert reduced["f"].dtype == np.float32 and reduced["f"].isna().sum() == 2
    assert isinstance(reduced["s"].dtype, pd.CategoricalDtype) and reduced["s"].isna().sum() == 1
    assert reduced["mixed"].dtype == object and reduced["flag"].dtype == bool
    assert pd.api.types.is_datetime64_any_dtype(reduced["d"]) and reduced["d"].isna().sum() == 2
    _assert_values_preserved(frame, reduced)
    assert "mixed" not in report.changes and "flag" not in report.changes

    # already small: nothing to do, nothing reported
    small = pd.DataFrame({"a": np.array([1, 2], dtype=np.int8), "b": ["u", "v"]})
    again, report = reduce_memory_pandas(small)
    assert report.changes == {}
    pd.testing.assert_frame_equal(again, small)


def test_mixed_naive_and_offset_datetimes_are_left_as_text():
    frame = pd.DataFrame({"t": ["2024-01-01T00:00:00", "2024-01-01T01:00:00+01:00"] * 3})
    reduced, _ = reduce_memory_pandas(frame, max_cardinality_ratio=0.0)
    assert not pd.api.types.is_datetime64_any_dtype(reduced["t"])
    polars_reduced, _ = reduce_memory_polars(pl.from_pandas(frame), max_cardinality_ratio=0.0)
    assert polars_reduced["t"].dtype == pl.String


def test_float32_rule():
    assert float32_is_lossless(np.array([23.4, 0.1, 40.4168, -3.75, 0.0, np.nan, np.inf]))
    assert not float32_is_lossless(np.array([1 / 3]))  # needs float64's digits
    assert not float32_is_lossless(np.array([1e39]))  # overflows float32
    assert not float32_is_lossless(np.array([1e-40]))  # float32 subnormal: precision lost
    assert not float32_is_lossless(np.r_[np.full(5_000, 0.5), 1 / 3])  # caught by the full pass
    # the documented tolerance holds for every downcast value
    values = np.round(np.random.default_rng(1).uniform(-1e4, 1e4, 10_000), 2)
    assert float32_is_lossless(values)
    back = values.astype(np.float32).astype(np.float64)
    assert np.all(np.abs(back - values) <= FLOAT32_RTOL * np.abs(values))


def test_smallest_int_dtype():
    assert smallest_int_dtype(-128, 127) == np.int8
    assert smallest_int_dtype(-129, 0) == np.int16
    assert smallest_int_dtype(0, 255, unsigned=True) == np.uint8
    assert smallest_int_dtype(0, 2**31) == np.int64
    with pytest.raises(OverflowError):
        smallest_int_dtype(0, 2**64)


def test_polars_reducer_preserves_values_and_converts_as_expected():
    original = pl.from_pandas(_mixed_pandas())
    reduced, report = reduce_memory_polars(original)
    schema = reduced.schema
    assert schema["id"] == pl.Int32
    assert schema["hour"] == pl.Int8
    assert schema["big"] == pl.Int64
    assert schema["region"] == pl.Enum(sorted(set(original["region"])))
    assert schema["not_a_date"] == pl.Enum(["2024-13-45"])
    assert schema["name"] == pl.String
    assert schema["day"] == pl.Date
    assert schema["datetime"] == pl.Datetime("us", "UTC")
    assert schema["demand_mw"] == pl.Float32
    assert reduced["datetime"][0] == datetime(2023, 12, 31, 23, tzinfo=UTC)
    assert schema["raw"] == pl.Float64

    # upcast back and compare
    expected = original.with_columns(
        pl.col("day").str.to_date("%Y-%m-%d"),
        pl.col("datetime").str.to_datetime(time_unit="us", time_zone="UTC"),
    )
    back = reduced.with_columns(
        pl.col(pl.Int8, pl.Int16, pl.Int32).cast(pl.Int64),
        pl.col(pl.Float32).cast(pl.Float64),
        pl.col(pl.Enum).cast(pl.String),
    )
    pl_assert_frame_equal(back, expected, rel_tol=FLOAT32_RTOL, abs_tol=0)

    assert report.before_bytes == original.estimated_size()
    assert report.after_bytes == reduced.estimated_size() < report.before_bytes
    assert set(report.changes) == {
        "id",
        "hour",
        "region",
        "not_a_date",
        "day",
        "datetime",
        "demand_mw",
    }


def test_polars_nulls_and_no_op():
    frame = pl.DataFrame(
        {
            "n": [1, None, 300, None],
            "f": [0.5, None, 1.25, float("nan")],
            "s": ["x", None, "x", "x"],
            "d": ["2024-01-01", None, "2024-01-03", None],
            "u": pl.Series([1, 2, 3, 4], dtype=pl.UInt64),
        }
    )
    reduced, _ = reduce_memory_polars(frame)
    assert dict(reduced.schema) == {
        "n": pl.Int16,
        "f": pl.Float32,
        "s": pl.Enum(["x"]),
        "d": pl.Date,
        "u": pl.UInt8,
    }
    assert reduced["n"].null_count() == 2 and reduced["f"].null_count() == 1
    assert reduced["f"].is_nan().sum() == 1 and reduced["d"].null_count() == 2

    all_null = pl.DataFrame({"s": pl.Series([None] * 4, dtype=pl.String)})
    assert reduce_memory_polars(all_null)[0].schema["s"] == pl.String  # nothing to encode

    small = pl.DataFrame({"a": pl.Series([1, 2], dtype=pl.Int8), "b": ["u", "v"]})
    again, report = reduce_memory_polars(small)
    assert report.changes == {}
    pl_assert_frame_equal(again, small)


# --------------------------------------------------------------------------------------------
# the command, on the brief's own terms (latitude/longitude in, distance out)
# --------------------------------------------------------------------------------------------


def _briefs_loop(df: pd.DataFrame) -> pd.DataFrame:
    """The brief's snippet exactly as written (numpy's functions, ``df.iloc[i][...]``)."""

    def function_to_apply(lat, lon):
        a = np.sin(lat / 2) ** 2 + np.cos(lat) * np.cos(lon) * np.sin(lon / 2) ** 2
        return a

    list_results = []
    for i in range(0, len(df)):
        r = function_to_apply(df.iloc[i]["latitude"], df.iloc[i]["longitude"])
        list_results.append(r)
    df["distance"] = list_results
    return df


def test_speed_command_writes_the_briefs_distance_column(tmp_path, monkeypatch, capsys):
    """``speed`` on a CSV with the brief's columns (and others, and a missing value) in the
    working directory's default file: the brief's loop's ``distance``, every other column kept."""
    rng = np.random.default_rng(11)
    n = 3_000
    frame = pd.DataFrame(
        {
            "id": np.arange(n),
            "latitude": rng.uniform(-90, 90, n),  # degrees, as a dataset has them: used as is
            "longitude": rng.uniform(-180, 180, n),
            "city": rng.choice(["Madrid", "Sevilla", "Bilbao"], n),
        }
    )
    frame.loc[5, "latitude"] = np.nan
    monkeypatch.chdir(tmp_path)
    frame.to_csv("dataset_speed_optimization.csv", index=False)

    assert main(["speed"]) == 0
    out = capsys.readouterr().out
    assert "dataset_speed_optimization_distance.csv" in out and f"{n:,} rows" in out

    written = pd.read_csv(tmp_path / "dataset_speed_optimization_distance.csv")
    expected = _briefs_loop(pd.read_csv(tmp_path / "dataset_speed_optimization.csv"))
    assert list(written.columns) == ["id", "latitude", "longitude", "city", "distance"]
    pd.testing.assert_frame_equal(
        written.drop(columns="distance"), expected.drop(columns="distance")
    )
    np.testing.assert_allclose(written["distance"], expected["distance"], rtol=1e-12, atol=1e-15)
    assert np.isnan(written["distance"][5]) and written["distance"].isna().sum() == 1


def test_speed_command_names_missing_columns_and_files(tmp_path, capsys):
    path = tmp_path / "coords.csv"
    path.write_text("lat,lon\n0.1,0.2\n")
    with pytest.raises(SystemExit) as caught:
        main(["speed", str(path)])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "coords.csv has no column latitude, longitude" in err and "lat, lon" in err
    with pytest.raises(SystemExit):
        main(["speed", str(tmp_path / "absent.csv")])
    assert "absent.csv" in capsys.readouterr().err


@pytest.mark.parametrize(
    "text",
    [
        # no brief columns at all: strings, dates, ints, floats, empties, unicode, booleans
        "when,site,count,share,flag,note\n"
        + "".join(
            f"2024-01-{d:02d},{'Cádiz' if d % 2 else 'Zürich'},{d * 7},{d / 4},{d % 3 == 0},"
            f"{'' if d % 5 else 'x'}\n"
            for d in range(1, 29)
        ),
        "a,b\n",  # a header and no rows
        "only\n1\n2\n3\n",
    ],
)
def test_memory_command_reports_bytes_on_any_csv(tmp_path, capsys, text):
    path = tmp_path / "anything.csv"
    path.write_text(text, encoding="utf-8")
    assert main(["memory", str(path)]) == 0
    out = capsys.readouterr().out
    frame = pd.read_csv(path)
    before = int(frame.memory_usage(deep=True).sum())
    _, report = reduce_memory_pandas(frame)
    assert f"memory {before:,} B -> {report.after_bytes:,} B" in out
    assert report.after_bytes <= before


def test_memory_command_default_file_and_a_clear_error_for_an_empty_file(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dataset_memory_optimization.csv").write_text("x,y\n1,a\n2,a\n3,a\n4,b\n5,a\n6,b\n")
    assert main(["memory"]) == 0
    out = capsys.readouterr().out
    assert "dataset_memory_optimization.csv: 6 rows, 2 columns" in out
    assert "y: object -> category" in out or "y: str -> category" in out
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SystemExit) as caught:
        main(["memory", "empty.csv"])
    assert caught.value.code == 2
    assert "empty.csv is empty" in capsys.readouterr().err
