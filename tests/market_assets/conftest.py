"""A tiny Kaggle-layout folder, written by hand so every quirk in it is known."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.weather_assets.conftest import shared_spark_session

HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
META = (
    "Nasdaq Traded,Symbol,Security Name,Listing Exchange,Market Category,ETF,"
    "Round Lot Size,Test Issue,Financial Status,CQS Symbol,NASDAQ Symbol,NextShares\n"
    "Y,AAA,AAA Corp. - Common Stock,Q,Q,N,100.0,N,N,,AAA,N\n"
    "Y,BBB,BBB Inc. - Common Stock,N,,N,100.0,N,,BBB,BBB,N\n"
    "Y,EEE,Empty Co. - Common Stock,Q,G,N,100.0,N,N,,EEE,N\n"
    "Y,GONE,Gone Ltd. - Common Stock,Q,S,N,100.0,N,N,,GONE,N\n"
    "Y,SPYX,SPYX Index ETF,P,,Y,100.0,N,,SPYX,SPYX,N\n"
    "Y,HDR,Header Corp. - Common Stock,Q,Q,N,100.0,N,N,,HDR,N\n"
)


def _rows(days: int, base_volume: int, start_price: float, *, float_volume: bool) -> list[str]:
    lines = []
    for i in range(days):
        day = f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}"
        price = start_price + i * 0.25
        volume = base_volume + 1000 * (i % 7)
        vol = f"{volume}.0" if float_volume else str(volume)
        lines.append(f"{day},{price},{price + 1},{price - 1},{price + 0.5},{price * 0.9},{vol}\n")
    return lines


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    """AAA (40 good rows + 3 junk lines), BBB (35 rows, float volumes), SPYX (ETF, 31 rows),
    EEE.csv empty (0 bytes), GONE in the metadata without a file, HDR.csv with its Volume and
    Adj Close columns swapped in the header, ORPHAN.csv without a metadata row."""
    root = tmp_path / "kaggle"
    (root / "stocks").mkdir(parents=True)
    (root / "etfs").mkdir()
    (root / "symbols_valid_meta.csv").write_text(META)
    aaa = _rows(40, 10_000, 10.0, float_volume=False)
    aaa.insert(5, "2020-02-30,1,2,0.5,1.5,1.4,100\n")  # not a real date
    aaa.insert(9, "2020-03-01,abc,2,0.5,1.5,1.4,100\n")  # non-numeric price
    aaa.insert(20, "2020-03-02,1,2,0.5\n")  # truncated line
    (root / "stocks" / "AAA.csv").write_text(HEADER + "".join(aaa))
    (root / "stocks" / "BBB.csv").write_text(
        HEADER + "".join(_rows(35, 2_000_000, 100.0, float_volume=True))
    )
    (root / "stocks" / "EEE.csv").write_text("")
    (root / "stocks" / "HDR.csv").write_text(
        "Date,Open,High,Low,Close,Volume,Adj Close\n"
        + "".join(_rows(3, 5, 1.0, float_volume=False))
    )
    (root / "stocks" / "ORPHAN.csv").write_text(
        HEADER + "".join(_rows(2, 700, 3.0, float_volume=False))
    )
    (root / "etfs" / "SPYX.csv").write_text(
        HEADER + "".join(_rows(31, 50_000, 300.0, float_volume=True))
    )
    return root


@pytest.fixture(scope="session")
def spark():
    return shared_spark_session()
