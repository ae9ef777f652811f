"""The synthetic Kaggle "Stock Market Dataset": layout, realism, junk and the idempotent ensure."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from market_assets import simulator as stock_market
from market_assets.schema import CSV_HEADER, FOLDERS, META_COLUMNS, META_FILE
from market_assets.simulator import (
    BAD_DATE,
    KAGGLE,
    MARKER_FILE,
    SMALL,
    StockDatasetManifest,
    StockDatasetSpec,
    ensure_stock_dataset,
    main,
    trading_days,
    write_stock_dataset,
)

HEADER = ",".join(CSV_HEADER)
PRICES = ["Open", "High", "Low", "Close", "Adj Close"]
TINY = StockDatasetSpec(symbols=12, mean_years=1.0, seed=5)


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> StockDatasetManifest:
    return write_stock_dataset(tmp_path_factory.mktemp("small") / "market", SMALL)


@pytest.fixture(scope="module")
def clean(small) -> dict[str, pl.DataFrame]:
    """Every non-empty file's clean rows, typed, by relative path."""
    root = small.root
    frames = {}
    for path in sorted(root.glob("*/*.csv")):
        if path.stat().st_size:
            frames[path.relative_to(root).as_posix()] = _clean_rows(path)
    return frames


def _typed(path: Path) -> pl.DataFrame:
    """All rows, every field cast leniently: a malformed field becomes null."""
    raw = pl.read_csv(path, infer_schema=False)
    return raw.select(
        pl.col("Date").str.to_date("%Y-%m-%d", strict=False),
        *(pl.col(c).cast(pl.Float64, strict=False) for c in [*PRICES, "Volume"]),
    )


def _clean_rows(path: Path) -> pl.DataFrame:
    return _typed(path).drop_nulls()


def _parses(line: str) -> bool:
    fields = line.split(",")
    if len(fields) != len(CSV_HEADER):
        return False
    try:
        date.fromisoformat(fields[0])
        [float(f) for f in fields[1:]]
    except ValueError:
        return False
    return True


def _malformed_lines(path: Path) -> list[str]:
    lines = path.read_text().splitlines()[1:]
    return [line for line in lines if not _parses(line)]


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_headers(small):
    manifest = small
    root = manifest.root
    assert {p.name for p in root.iterdir()} == {*FOLDERS, META_FILE, MARKER_FILE}
    csvs = sorted(root.glob("*/*.csv"))
    assert len(csvs) == manifest.files == len(list(root.glob("*/*")))
    empty = [p.relative_to(root).as_posix() for p in csvs if p.stat().st_size == 0]
    assert empty == sorted(manifest.empty_files) and len(empty) == SMALL.empty_files
    for path in csvs:
        if path.stat().st_size:
            with path.open() as f:
                assert f.readline() == HEADER + "\n"
    assert (root / META_FILE).read_text().splitlines()[0] == ",".join(META_COLUMNS)


def test_metadata_matches_the_files(small):
    manifest = small
    root = manifest.root
    meta = pl.read_csv(root / META_FILE, infer_schema=False)
    assert meta.columns == list(META_COLUMNS) and len(meta) == SMALL.symbols
    symbols = meta["Symbol"].to_list()
    assert len(set(symbols)) == len(symbols) == SMALL.symbols
    assert all(re.fullmatch(r"[A-Z]{1,5}(-[A-Z])?", s) for s in symbols)
    on_disk = {p.stem: p.parent.name for p in root.glob("*/*.csv")}
    assert set(on_disk) <= set(symbols)
    assert tuple(s for s in symbols if s not in on_disk) == manifest.missing_files
    assert len(manifest.missing_files) == SMALL.missing_files
    for row in meta.iter_rows(named=True):
        symbol, exchange = row["Symbol"], row["Listing Exchange"]
        if symbol in on_disk:
            assert (on_disk[symbol] == "etfs") == (row["ETF"] == "Y"), symbol
        assert row["ETF"] in ("Y", "N") and exchange in tuple("QNPZAV")
        assert row["Security Name"].endswith("ETF") == (row["ETF"] == "Y")
        nasdaq = exchange == "Q"
        assert (
            (row["Market Category"] in ("Q", "G", "S"))
            if nasdaq
            else row["Market Category"] is None
        )
        assert (
            (row["Financial Status"] in ("N", "D")) if nasdaq else row["Financial Status"] is None
        )
        assert row["CQS Symbol"] == (None if nasdaq else symbol)
        assert row["NASDAQ Symbol"] == symbol and row["Round Lot Size"] == "100.0"
    etfs = (meta["ETF"] == "Y").sum()
    assert etfs == round(SMALL.symbols * SMALL.etf_share)


def test_manifest_counts_match_the_files(small, clean):
    manifest = small
    assert sum(len(f) for f in clean.values()) == manifest.rows
    junk = {
        p.relative_to(manifest.root).as_posix(): _malformed_lines(p)
        for p in manifest.root.glob("*/*.csv")
    }
    junk = {k: v for k, v in junk.items() if v}
    assert sum(map(len, junk.values())) == manifest.malformed_rows == SMALL.malformed_rows
    assert 1 < len(junk) < SMALL.malformed_rows  # a few files
    lines = [line for lines in junk.values() for line in lines]
    assert any(",abc," in line for line in lines)
    assert any(len(line.split(",")) < len(CSV_HEADER) for line in lines)
    assert any(line.startswith(BAD_DATE + ",") for line in lines)
    assert any(line.endswith(",") for line in lines)  # empty Volume
    # Every other row of those files is whole.
    for path in junk:
        rows = len((manifest.root / path).read_text().splitlines()) - 1
        assert len(clean[path]) == rows - len(junk[path])


def test_trading_days_and_series_span(clean):
    ends = []
    for path, frame in clean.items():
        days = frame["Date"]
        assert days.is_sorted() and days.n_unique() == len(days), path
        assert (days.dt.weekday() <= 5).all()
        assert days.min() >= SMALL.min_start and days.max() <= SMALL.end
        if path.startswith("etfs/"):
            assert days.min() >= date(1993, 1, 29)
        ends.append(days.max())
    assert sum(e == SMALL.end for e in ends) >= 0.8 * len(ends)
    assert any(e < SMALL.end for e in ends)  # delisted
    days = trading_days(date(2019, 1, 1), date(2019, 12, 31))
    assert len(days) == 252
    for holiday in ("2019-01-01", "2019-04-19", "2019-07-04", "2019-11-28", "2019-12-25"):
        assert np.datetime64(holiday) not in days
    assert np.datetime64("2019-12-24") in days
    assert np.datetime64("2001-09-11") not in trading_days(date(2001, 9, 1), date(2001, 9, 30))


@pytest.mark.parametrize(
    "good_friday", ["1987-04-17", "2000-04-21", "2017-04-14", "2018-03-30", "2019-04-19"]
)
def test_good_friday_is_closed_and_easter_monday_open(good_friday):
    friday = np.datetime64(good_friday)
    year = int(good_friday[:4])
    days = trading_days(date(year, 1, 1), date(year, 12, 31))
    assert friday not in days
    assert friday - 1 in days  # Thursday before
    assert friday + 3 in days  # Easter Monday: the NYSE trades


def test_prices_are_consistent_and_varied(clean):
    every = pl.concat(clean.values())
    assert (every.select(PRICES).min_horizontal() > 0).all()
    assert (every["Low"] <= every["Open"]).all() and (every["Low"] <= every["Close"]).all()
    assert (every["High"] >= every["Open"]).all() and (every["High"] >= every["Close"]).all()
    assert (every["Adj Close"] <= every["Close"]).all()
    assert every["Close"].min() < 1.0 and every["Close"].max() > 1000.0
    assert (every["Volume"] >= 0).all() and (every["Volume"] == every["Volume"].round()).all()
    # Zero-volume days only for (illiquid) ETFs, and they carry the last close over.
    zero = {p: f.filter(pl.col("Volume") == 0) for p, f in clean.items()}
    zero = {p: f for p, f in zero.items() if len(f)}
    assert zero and all(p.startswith("etfs/") for p in zero)
    for frame in zero.values():
        assert (frame["Open"] == frame["Close"]).all() and (frame["High"] == frame["Low"]).all()
    # Volume levels are heavy-tailed across symbols.
    medians = [f["Volume"].median() for f in clean.values() if len(f) > 20]
    assert max(medians) / max(min(medians), 1) > 1000
    # Adj Close below Close somewhere (dividends), equal on the last row (no later event).
    assert (every["Adj Close"] < every["Close"]).any()
    assert all(f["Adj Close"][-1] == f["Close"][-1] for f in clean.values())


def test_volume_written_as_float_in_some_files_and_integer_in_others(small):
    styles = set()
    for path in small.root.glob("*/*.csv"):
        lines = path.read_text().splitlines()[1:]
        kinds = {line.rsplit(",", 1)[1].endswith(".0") for line in lines if _parses(line)}
        assert len(kinds) <= 1, path  # one style per file
        styles |= kinds
    assert styles == {True, False}


def test_adj_close_is_continuous_across_splits_while_close_jumps(clean):
    split_files = []
    for path, frame in clean.items():
        close, adj, volume = (frame[c].to_numpy() for c in ("Close", "Adj Close", "Volume"))
        if len(close) < 30:
            continue
        c, a = close[1:] / close[:-1], adj[1:] / adj[:-1]
        normal = np.median(np.abs(np.log(a)))  # a typical day's move
        for t in np.flatnonzero(c / a < 0.6):  # Close fell by the split factor, Adj did not
            split_files.append(path)
            k = round(a[t] / c[t])
            assert k in (2, 3, 4), path
            assert c[t] < 0.75  # Close jumps...
            assert abs(math.log(a[t])) < max(0.25, 15 * normal), path  # ...Adj Close does not
            assert abs(c[t] / a[t] * k - 1) < 0.1
            before, after = volume[max(0, t - 9) : t + 1], volume[t + 1 : t + 11]
            assert np.median(after) > 1.2 * np.median(before), path  # more shares trade
    assert split_files and all(p.startswith("stocks/") for p in split_files)


def test_same_spec_same_bytes_other_seed_other_data(tmp_path):
    first = write_stock_dataset(tmp_path / "a", TINY)
    second = write_stock_dataset(tmp_path / "b", TINY)
    assert replace(first, root=second.root) == second
    assert _files(first.root) == _files(second.root)
    other = write_stock_dataset(tmp_path / "c", replace(TINY, seed=6))
    assert (other.root / META_FILE).read_bytes() != (first.root / META_FILE).read_bytes()
    assert other.rows != first.rows


def test_write_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        write_stock_dataset(tmp_path, TINY)


def test_ensure_writes_once_and_regenerates_on_a_new_spec(tmp_path, monkeypatch):
    root = tmp_path / "market"
    first = ensure_stock_dataset(root, TINY)
    marker = root / MARKER_FILE
    stamp = marker.stat().st_mtime_ns
    written: list[StockDatasetSpec] = []
    write = stock_market.write_stock_dataset
    monkeypatch.setattr(
        stock_market, "write_stock_dataset", lambda *args: written.append(args[1]) or write(*args)
    )
    assert ensure_stock_dataset(root, TINY) == first
    assert written == [] and marker.stat().st_mtime_ns == stamp  # found, not generated again
    assert json.loads(marker.read_text())["spec"]["seed"] == TINY.seed

    other = replace(TINY, seed=6)
    second = ensure_stock_dataset(root, other)
    assert written == [other]
    assert second.root == root and second != first
    assert json.loads(marker.read_text())["spec"]["seed"] == 6
    assert _files(root) == _files(write_stock_dataset(tmp_path / "fresh", other).root)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "market"]  # no temp left

    # A folder without its marker (say, a crash mid-write) is not trusted: rebuilt.
    marker.unlink()
    (root / "stocks" / "HALF.csv").write_text(HEADER + "\n")
    assert ensure_stock_dataset(root, other) == second
    assert marker.exists() and not (root / "stocks" / "HALF.csv").exists()


def test_ensure_never_replaces_unrelated_data_and_cleans_abandoned_temps(tmp_path):
    root = tmp_path / "market"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        ensure_stock_dataset(root, TINY)
    assert (root / "notes.txt").read_text() == "keep me"

    root = tmp_path / "fresh"
    abandoned = tmp_path / ".fresh.999999999.deadbeef.tmp"  # a pid no process can have
    (abandoned / "stocks").mkdir(parents=True)
    ensure_stock_dataset(root, TINY)
    assert not abandoned.exists()


def test_small_size(small):
    """How long generation takes is measured by benchmarks, not asserted here."""
    manifest = small
    assert manifest.files == SMALL.symbols - SMALL.missing_files
    assert 20_000 < manifest.rows < 150_000


def test_kaggle_spec_plans_the_real_volume():
    plan = stock_market._plan_dataset(KAGGLE)  # the layout only, no series
    written = ~plan.missing & ~plan.empty
    rows = int((plan.stop - plan.start)[written].sum() - plan.junk.sum())
    assert KAGGLE.symbols == 8049
    assert abs(rows - 24.7e6) < 0.1 * 24.7e6
    assert 0.2 < plan.etf.mean() < 0.32 and plan.splitter.sum() > 50


def test_spec_validation():
    with pytest.raises(ValueError):
        StockDatasetSpec(symbols=0)
    with pytest.raises(ValueError):
        StockDatasetSpec(symbols=3, missing_files=2, empty_files=1)
    with pytest.raises(ValueError):
        StockDatasetSpec(symbols=5, min_start=date(2020, 5, 1))


def test_cli_reports_the_manifest(small, capsys):
    manifest = small
    assert main(["--out", str(manifest.root), "--size", "small"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == manifest.rows and report["files"] == manifest.files
    assert report["bytes"] > 1_000_000 and report["seconds"] >= 0


@pytest.mark.parametrize("phi", [0.0, 1e-7, 0.3, 0.9, 0.985])
def test_vectorised_ar1_matches_the_recursion(phi):
    e = np.random.default_rng(0).normal(size=700)
    expected, previous = np.empty_like(e), 0.0
    for t, value in enumerate(e):
        previous = phi * previous + value
        expected[t] = previous
    assert np.allclose(stock_market._ar1(e, phi), expected, rtol=0, atol=1e-9)
