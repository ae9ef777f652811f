"""PySpark ingestion of a hand-made Kaggle-layout folder: what is kept, quarantined and listed."""

from __future__ import annotations

import datetime as dt

import pytest

from market_assets.ingest import (
    DatasetError,
    header_verdict,
    list_source_files,
    read_prices_and_quarantine,
)
from market_assets.schema import PRICES_COLUMNS


@pytest.fixture
def ingested(spark, kaggle_dir):
    result = read_prices_and_quarantine(spark, str(kaggle_dir))
    yield result
    result.release()


def test_report_counts_kept_rows_and_every_kind_of_junk(ingested):
    report = ingested.report
    assert report.files == 6
    assert report.accepted_files == 4  # AAA, BBB, ORPHAN, SPYX
    assert report.rows == 40 + 35 + 2 + 31
    assert report.quarantined_lines == {
        "bad_header": 4,  # HDR.csv: its header and 3 lines
        "malformed": 1,
        "bad_date": 1,
        "missing_value": 0,
        "bad_price": 1,
        "bad_volume": 0,
    }
    assert report.empty_files == ["stocks/EEE.csv"]
    assert report.bad_header_files == ["stocks/HDR.csv"]
    assert report.missing_files == ["GONE"]
    assert report.symbols_without_metadata == ["ORPHAN"]
    assert report.unreadable_files == []


def test_prices_are_typed_and_joined_with_the_metadata(ingested):
    prices = ingested.prices
    assert tuple(prices.columns) == PRICES_COLUMNS
    types = dict(prices.dtypes)
    assert types["Date"] == "date"
    assert types["Volume"] == "bigint"
    assert all(types[c] == "double" for c in ("Open", "High", "Low", "Close", "Adj Close"))
    rows = {(r["Symbol"], r["Date"]): r for r in prices.collect()}
    first_bbb = rows[("BBB", dt.date(2020, 1, 1))]
    assert first_bbb["Volume"] == 2_000_000  # written as "2000000.0"
    assert first_bbb["Security Name"] == "BBB Inc. - Common Stock"
    assert first_bbb["Adj Close"] == pytest.approx(90.0)
    assert rows[("ORPHAN", dt.date(2020, 1, 1))]["Security Name"] is None
    assert not any(symbol == "HDR" for symbol, _ in rows)


def test_quarantine_keeps_each_rejected_line_with_its_reason(ingested):
    lines = {(r["file"], r["reason"], r["line"]) for r in ingested.quarantine.collect()}
    assert ("stocks/AAA.csv", "bad_date", "2020-02-30,1,2,0.5,1.5,1.4,100") in lines
    assert ("stocks/AAA.csv", "bad_price", "2020-03-01,abc,2,0.5,1.5,1.4,100") in lines
    assert ("stocks/AAA.csv", "malformed", "2020-03-02,1,2,0.5") in lines
    assert (
        "stocks/HDR.csv",
        "bad_header",
        "Date,Open,High,Low,Close,Volume,Adj Close",
    ) in lines
    assert len(lines) == 7


def test_bad_values_are_quarantined_not_fatal(spark, kaggle_dir):
    header = "Date,Open,High,Low,Close,Adj Close,Volume\n"
    (kaggle_dir / "stocks" / "AAA.csv").write_text(
        header
        + "2020-01-01,1,2,0.5,1.5,1.4,\n"  # empty volume
        + "2020-01-02,-1,2,0.5,1.5,1.4,10\n"  # negative price
        + "2020-01-03,1,2,0.5,1.5,1.4,10.5\n"  # fractional volume
        + "2020-01-04,NaN,2,0.5,1.5,1.4,10\n"  # not finite
        + "2020-01-05,1,2,0.5,1.5,1.4,-3\n"  # negative volume
        + "20200106,1,2,0.5,1.5,1.4,3\n"  # not YYYY-MM-DD
        + "2020-01-07,0,2,0.5,1.5,1.4,0\n"  # zero open and volume: kept
    )
    result = read_prices_and_quarantine(spark, str(kaggle_dir))
    try:
        got = dict(result.report.quarantined_lines)
        kept = result.prices.where("Symbol = 'AAA'").collect()
    finally:
        result.release()
    assert got["missing_value"] == 1
    assert got["bad_price"] == 2
    assert got["bad_volume"] == 2
    assert got["bad_date"] == 1
    assert [(r["Date"], r["Open"], r["Volume"]) for r in kept] == [(dt.date(2020, 1, 7), 0.0, 0)]


def test_a_lower_case_header_makes_the_file_untrusted(spark, kaggle_dir):
    (kaggle_dir / "etfs" / "SPYX.csv").write_text(
        "date,open,high,low,close,adj close,volume\n2020-01-01,1,2,0.5,1.5,1.4,10\n"
    )
    result = read_prices_and_quarantine(spark, str(kaggle_dir))
    result.release()
    assert "etfs/SPYX.csv" in result.report.bad_header_files


def test_header_verdict():
    assert header_verdict(1, 1)
    assert not header_verdict(0, 0)  # no header at all
    assert not header_verdict(2, 1)  # a second, different header-like line


def test_listing_sees_both_folders_and_sizes(spark, kaggle_dir):
    files = {f.relative_path: f.size for f in list_source_files(spark, str(kaggle_dir))}
    assert set(files) == {
        "etfs/SPYX.csv",
        "stocks/AAA.csv",
        "stocks/BBB.csv",
        "stocks/EEE.csv",
        "stocks/HDR.csv",
        "stocks/ORPHAN.csv",
    }
    assert files["stocks/EEE.csv"] == 0


def test_a_folder_without_the_layout_is_a_clear_error(spark, tmp_path):
    with pytest.raises(DatasetError, match=r"symbols_valid_meta\.csv does not exist"):
        read_prices_and_quarantine(spark, str(tmp_path))
    (tmp_path / "symbols_valid_meta.csv").write_text("Symbol,Security Name\nA,A Inc.\n")
    with pytest.raises(DatasetError, match="no CSV files"):
        read_prices_and_quarantine(spark, str(tmp_path))
