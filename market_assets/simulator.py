"""Deterministic synthetic copy of the Kaggle "Stock Market Dataset" layout (Yahoo Finance data).

Why: the real dataset is a few-GB download behind a Kaggle login, so ``make run``, the tests
and the benchmarks use this generator instead. It writes the same files with the same
headers, value formats and kinds of junk, at any size (``SMALL`` for tests, ``KAGGLE`` for the
real volume: ~8k files, ~25M rows)::

    root/symbols_valid_meta.csv     one row per symbol (some have no file)
    root/etfs/SYM.csv               Date,Open,High,Low,Close,Adj Close,Volume
    root/stocks/SYM.csv             one row per trading day, ascending

The model, per symbol (all vectorised with numpy; see :func:`_price_volume_series`):

* trading days: weekdays minus the main US exchange holidays, from the listing day (most after
  2000, the oldest at ``min_start``; ETFs not before 1993) to ``end`` (a few delisted earlier);
* prices: a geometric random walk with its own alpha, volatility (lower for long-lived symbols),
  fat tails (Student t) and beta to a shared market factor that follows the S&P 500's yearly
  moves (1987, 2008 and March 2020 crashes included); quoted in the tick of the day (1/8, 1/16,
  then cents) and stored as float32 values printed at float64 precision, as Yahoo's are
  (``35.279998779296875``). Open/High/Low/Close are consistent;
* splits (2:1 to 4:1) for a few stocks: the raw Close drops by the factor and the Volume jumps
  by it; quarterly dividends for some symbols. ``Adj Close`` is adjusted backward for both, so
  it is continuous and never above Close. Penny stocks and >$1000 stocks are always present;
* volume: log-normal level across symbols (tens to tens of millions of shares), AR(1) in log
  volume, higher on big-move days, news spikes, growth over the decades, zero-volume days
  (prices carried over) for illiquid ETFs; written as ``123.0`` or ``123`` depending on file.

Junk, counted in the manifest: ``malformed_rows`` rows over a few files (a non-numeric price, a
truncated line, an impossible date, an empty Volume; each replaces a real row), ``empty_files``
zero-byte files and ``missing_files`` metadata symbols without a file. Headers are always right.

Unlike the real Yahoo data, Close and Volume here are *not* split-adjusted (Yahoo's are); only
Adj Close is. Output is byte-identical for the same spec and numpy version (every symbol has its
own ``numpy.random.Generator`` seeded from (seed, index)).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import string
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from dateutil.easter import easter

from market_assets.schema import CSV_HEADER, FOLDERS, META_COLUMNS, META_FILE

__all__ = [
    "KAGGLE",
    "MARKER_FILE",
    "SIZES",
    "SMALL",
    "StockDatasetManifest",
    "StockDatasetSpec",
    "ensure_stock_dataset",
    "trading_days",
    "write_stock_dataset",
]

GENERATOR_VERSION = 1  # bump when the output changes, so ensure_stock_dataset regenerates
MARKER_FILE = ".dataset.json"
ETF_FOLDER, STOCK_FOLDER = FOLDERS
FIRST_ETF_DAY = date(1993, 1, 29)  # SPY, the first US ETF
TRADING_DAYS_PER_YEAR = 252
MIN_ROWS = 5
JUNK_KINDS = ("bad_price", "truncated", "bad_date", "empty_volume")
BAD_DATE = "2019-13-45"
# Windows device names: not valid file names there.
_RESERVED = frozenset({"CON", "PRN", "AUX", "NUL"})

# Quote ticks: eighths until 1997-06-24, sixteenths until decimalisation on 2001-04-09, then
# cents; sub-dollar prices in 1/256 before and 0.0001 after; 1/32 below $10 before 2001.
_SIXTEENTHS = np.datetime64("1997-06-24")
_DECIMAL = np.datetime64("2001-04-09")
PRICE_FLOOR, PRICE_CAP = 0.005, 500_000.0

# Market factor: daily log returns shared by all symbols (scaled by each one's beta).
_MARKET_VOL = 0.0085
_STRESS = (  # (first day, last day, volatility multiplier, log move spread over the days)
    ("1987-10-01", "1987-12-31", 2.0, -0.15),
    ("2000-04-01", "2002-10-09", 1.4, -0.55),
    ("2008-09-15", "2009-03-09", 2.5, -0.45),
    ("2009-03-10", "2009-06-30", 1.6, 0.30),
    ("2011-08-01", "2011-10-03", 1.8, -0.17),
    ("2020-02-20", "2020-03-23", 4.0, -0.20),
    ("2020-03-24", "2020-04-01", 3.0, 0.05),
)
# Approximate S&P 500 price change (%) by calendar year; 2020 to 1 April.
_YEARLY = {
    1962: -11.8, 1963: 18.9, 1964: 13.0, 1965: 9.1, 1966: -13.1, 1967: 20.1, 1968: 7.7,
    1969: -11.4, 1970: 0.1, 1971: 10.8, 1972: 15.6, 1973: -17.4, 1974: -29.7, 1975: 31.5,
    1976: 19.1, 1977: -11.5, 1978: 1.1, 1979: 12.3, 1980: 25.8, 1981: -9.7, 1982: 14.8,
    1983: 17.3, 1984: 1.4, 1985: 26.3, 1986: 14.6, 1987: 2.0, 1988: 12.4, 1989: 27.3,
    1990: -6.6, 1991: 26.3, 1992: 4.5, 1993: 7.1, 1994: -1.5, 1995: 34.1, 1996: 20.3,
    1997: 31.0, 1998: 26.7, 1999: 19.5, 2000: -10.1, 2001: -13.0, 2002: -23.4, 2003: 26.4,
    2004: 9.0, 2005: 3.0, 2006: 13.6, 2007: 3.5, 2008: -38.5, 2009: 23.5, 2010: 12.8,
    2011: 0.0, 2012: 13.4, 2013: 29.6, 2014: 11.4, 2015: -0.7, 2016: 9.5, 2017: 19.4,
    2018: -6.2, 2019: 28.9, 2020: -23.5,
}  # fmt: skip
_CRASHES = {  # close-to-close market moves, roughly the S&P 500's
    "1987-10-19": -0.205,
    "1987-10-21": 0.087,
    "2008-09-29": -0.088,
    "2008-10-13": 0.110,
    "2008-10-15": -0.090,
    "2020-03-09": -0.076,
    "2020-03-12": -0.095,
    "2020-03-13": 0.093,
    "2020-03-16": -0.120,
    "2020-03-24": 0.094,
}
NEWS_RATE = 0.004  # share of days with news: a big move and a volume spike
DELISTED_SHARE = 0.04
MAX_VOLUME = 3e9  # shares a day; the busiest real days are a few billion
VOLUME_GROWTH = 0.04  # log-volume per year: volumes were ~10x smaller 60 years ago

_FIRST = (
    "Apex", "Atlas", "Beacon", "Blue", "Cedar", "Crest", "Delta", "Evergreen", "First",
    "Frontier", "Global", "Granite", "Harbor", "Horizon", "Insight", "Iron", "Juniper",
    "Keystone", "Liberty", "Lumen", "Meridian", "North", "Nova", "Oak", "Orion", "Pacific",
    "Pioneer", "Quantum", "River", "Sterling", "Summit", "Titan", "Trans", "United", "Vertex",
    "Vista", "West", "Zenith",
)  # fmt: skip
_SECOND = (
    "Aerospace", "Bancorp", "Biotech", "Brands", "Capital", "Communications", "Devices",
    "Energy", "Entertainment", "Financial", "Foods", "Genomics", "Healthcare", "Industries",
    "Logistics", "Materials", "Media", "Minerals", "Motors", "Networks", "Pharmaceuticals",
    "Realty", "Resources", "Retail", "Semiconductor", "Software", "Systems", "Technologies",
    "Therapeutics", "Utilities",
)  # fmt: skip
_SUFFIX = ("Inc.", "Corporation", "Corp.", "Holdings, Inc.", "Group, Inc.", "Ltd.", "plc")
_ISSUERS = (
    "iShares", "Vanguard", "SPDR", "Invesco", "Schwab", "First Trust", "WisdomTree",
    "ProShares", "Global X", "VanEck", "Direxion", "Xtrackers",
)  # fmt: skip
_THEMES = (
    "S&P 500", "Russell 2000", "MSCI EAFE", "MSCI Emerging Markets", "Core U.S. Aggregate Bond",
    "High Yield Corporate Bond", "Gold Miners", "Clean Energy", "Cybersecurity",
    "Semiconductor", "Dividend Appreciation", "Short-Term Treasury", "Real Estate",
    "Biotechnology", "Water Resources", "Cloud Computing", "Ultra QQQ", "Nasdaq-100 Equal Weight",
    "China Large-Cap", "Japan Hedged Equity", "Mid-Cap Value", "Small-Cap Growth",
)  # fmt: skip
# Symbol lengths (1 to 5 letters) and listing exchanges, roughly as in the real metadata.
_LENGTHS = (1, 2, 3, 4, 5)
_LENGTH_P = (0.004, 0.03, 0.30, 0.60, 0.066)
_STOCK_EXCHANGES, _STOCK_EXCHANGE_P = ("Q", "N", "A", "V"), (0.55, 0.38, 0.065, 0.005)
_ETF_EXCHANGES, _ETF_EXCHANGE_P = ("P", "Z", "Q", "N"), (0.72, 0.18, 0.08, 0.02)


@dataclass(frozen=True)
class StockDatasetSpec:
    """What to generate; the output is a pure function of it."""

    symbols: int  # symbols in the metadata file
    etf_share: float = 0.27
    end: date = date(2020, 4, 1)
    min_start: date = date(1962, 1, 2)
    mean_years: float = 12.0  # mean series length; controls total rows
    missing_files: int = 3  # metadata symbols with no CSV file
    malformed_rows: int = 5  # junk rows spread over a few files
    empty_files: int = 1  # zero-byte CSV files
    seed: int = 0

    def __post_init__(self) -> None:
        if self.symbols < 1:
            raise ValueError("symbols must be at least 1")
        if not 0.0 <= self.etf_share <= 1.0:
            raise ValueError("etf_share must be within [0, 1]")
        if self.min_start >= self.end:
            raise ValueError("min_start must be before end")
        if self.mean_years <= 0:
            raise ValueError("mean_years must be positive")
        if min(self.missing_files, self.malformed_rows, self.empty_files) < 0:
            raise ValueError("junk counts must not be negative")
        with_rows = self.symbols - self.missing_files - self.empty_files
        if with_rows < (1 if self.malformed_rows else 0):
            raise ValueError("missing_files + empty_files leave no file for the other rows")


SMALL = StockDatasetSpec(symbols=60, mean_years=3.5)
KAGGLE = StockDatasetSpec(symbols=8049, mean_years=12.7)
SIZES = {"small": SMALL, "kaggle": KAGGLE}


@dataclass(frozen=True)
class StockDatasetManifest:
    """What was written; ``rows`` excludes headers and malformed rows."""

    root: Path
    files: int  # CSV files written (including empty ones)
    rows: int
    malformed_rows: int
    missing_files: tuple[str, ...]  # metadata symbols without a file
    empty_files: tuple[str, ...]  # relative paths, e.g. "stocks/ABCD.csv"


# ---------------------------------------------------------------------------------------------
# Calendar and shared market


def _holidays(first_year: int, last_year: int) -> np.ndarray:
    """Main NYSE holidays (observed dates) and a few closures, as datetime64[D]."""
    days: list[np.datetime64] = []
    for y in range(first_year, last_year + 1):
        for fixed in (date(y, 1, 1), date(y, 7, 4), date(y, 12, 25)):
            shift = {5: -1, 6: 1}.get(fixed.weekday(), 0)  # Saturday -> Friday, Sunday -> Monday
            days.append(np.datetime64(fixed + timedelta(days=shift)))
        days += [
            np.busday_offset(f"{y}-05-31", 0, roll="backward", weekmask="Mon"),  # Memorial Day
            np.busday_offset(f"{y}-09-01", 0, roll="forward", weekmask="Mon"),  # Labor Day
            np.busday_offset(f"{y}-11-01", 3, roll="forward", weekmask="Thu"),  # Thanksgiving
            np.datetime64(easter(y) - timedelta(days=2)),  # Good Friday
        ]
        if y >= 1971:  # Presidents' Day
            days.append(np.busday_offset(f"{y}-02-01", 2, roll="forward", weekmask="Mon"))
        if y >= 1998:  # Martin Luther King Jr. Day
            days.append(np.busday_offset(f"{y}-01-01", 2, roll="forward", weekmask="Mon"))
    closures = ["2001-09-11", "2001-09-12", "2001-09-13", "2001-09-14", "2012-10-29", "2012-10-30"]
    days += [np.datetime64(d) for d in closures]
    return np.array(days, dtype="datetime64[D]")


def trading_days(start: date, end: date) -> np.ndarray:
    """Weekdays from ``start`` to ``end`` (inclusive) minus exchange holidays, datetime64[D]."""
    days = np.arange(np.datetime64(start, "D"), np.datetime64(end, "D") + 1)
    return days[np.is_busday(days, holidays=_holidays(start.year, end.year))]


def _ar1(e: np.ndarray, phi: float) -> np.ndarray:
    """``x[t] = phi * x[t-1] + e[t]`` from ``x[-1] = 0``, with no Python loop over t.

    Blocks of b steps are solved in closed form (``phi**-j`` kept below 1e6); the block-end
    values follow the same recursion with ``phi**b``, solved recursively.
    """
    n = len(e)
    if n == 0 or phi < 1e-5:  # phi**2 terms are below float resolution
        x = np.array(e, dtype=np.float64)
        x[1:] += phi * x[:-1]
        return x
    b = int(min(64, max(2, math.log(1e6) / -math.log(phi))))
    blocks = np.concatenate([e, np.zeros(-n % b)]).reshape(-1, b)
    j = np.arange(b)
    z = np.cumsum(blocks * phi**-j, axis=1) * phi**j
    if len(z) > 1:
        ends = _ar1(z[:, -1], phi**b)
        z[1:] += np.outer(ends[:-1], phi ** (j + 1))
    return z.ravel()[:n]


def _market_returns(days: np.ndarray, seed: int) -> np.ndarray:
    """Daily log returns of the shared market factor on ``days``.

    Random within each year (volatility clustering, fat tails, the stress windows and crash
    days), but each calendar year in ``_YEARLY`` sums to that year's move, pro rata for a year
    the calendar covers in part, so the long-run path is the real market's on every seed.
    """
    rng = np.random.default_rng([seed, 2])
    n = len(days)
    phi, sd = 0.985, 0.3  # persistent log volatility (volatility clustering)
    e = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    e[0] = rng.normal(0.0, sd)
    vol = _MARKET_VOL * np.exp(_ar1(e, phi) - sd**2 / 2)
    trend = np.full(n, 0.00025)
    for first, last, factor, move in _STRESS:
        window = (days >= np.datetime64(first)) & (days <= np.datetime64(last))
        vol[window] *= factor
        trend[window] = move / max(1, window.sum())
    df = 5.0
    returns = trend + vol * rng.standard_t(df, n) / math.sqrt(df / (df - 2))
    free = np.ones(n, dtype=bool)  # days the yearly adjustment may move
    for day, move in _CRASHES.items():
        at = np.searchsorted(days, np.datetime64(day))
        if at < n and days[at] == np.datetime64(day):
            returns[at], free[at] = move, False
    years = days.astype("datetime64[Y]").astype(np.int64) + 1970
    for year, percent in _YEARLY.items():
        in_year = years == year
        if not in_year.any():
            continue
        # Trading days of the whole year (to 2020-04-01 for 2020, where the table stops).
        last = date(2020, 4, 1) if year == 2020 else date(year, 12, 31)
        covered = in_year.sum() / len(trading_days(date(year, 1, 1), last))
        target = math.log1p(percent / 100) * min(covered, 1.0)
        adjust = in_year & free
        returns[adjust] += (target - returns[in_year].sum()) / max(1, adjust.sum())
    return returns


# ---------------------------------------------------------------------------------------------
# The plan: every per-symbol choice, drawn once from the spec


@dataclass(frozen=True)
class _DatasetPlan:
    """Every per-symbol choice for the whole dataset (arrays indexed by symbol), drawn once
    from the spec; the series themselves are drawn per symbol from it."""

    spec: StockDatasetSpec
    days: np.ndarray  # the trading calendar, datetime64[D]
    market: np.ndarray
    symbols: list[str]
    etf: np.ndarray
    meta: pl.DataFrame
    start: np.ndarray  # first row's index into days
    stop: np.ndarray  # one past the last row's index
    missing: np.ndarray
    empty: np.ndarray
    junk: np.ndarray  # malformed rows in each file
    float_volume: np.ndarray
    target: np.ndarray  # split-adjusted close on the last day, before the price floor
    sigma: np.ndarray
    alpha: np.ndarray  # daily log return beyond beta * market
    beta: np.ndarray
    splitter: np.ndarray
    div_yield: np.ndarray
    base_volume: np.ndarray
    zero_share: np.ndarray  # share of zero-volume days (illiquid ETFs)

    def path(self, i: int) -> str:
        folder = ETF_FOLDER if self.etf[i] else STOCK_FOLDER
        return f"{folder}/{self.symbols[i]}.csv"


def _make_symbols(rng: np.random.Generator, n: int) -> tuple[list[str], list[bool]]:
    """``n`` unique tickers, sorted; about 1.5% are share classes like ``ABC-A``."""
    letters = np.array(list(string.ascii_uppercase))
    seen: dict[str, bool] = {}
    while len(seen) < n:
        length = int(rng.choice(_LENGTHS, p=_LENGTH_P))
        symbol = "".join(rng.choice(letters, length))
        share_class = 2 <= length <= 4 and rng.random() < 0.015
        if share_class:
            symbol += "-" + "AB"[int(rng.integers(2))]
        if symbol not in _RESERVED and symbol not in seen:
            seen[symbol] = share_class
    symbols = sorted(seen)
    return symbols, [seen[s] for s in symbols]


def _pick(rng: np.random.Generator, candidates: np.ndarray, count: int) -> np.ndarray:
    """Indices of ``count`` random True entries of ``candidates`` (fewer if there are fewer)."""
    pool = np.flatnonzero(candidates)
    return rng.choice(pool, min(count, len(pool)), replace=False)


def _symbol_metadata(
    rng: np.random.Generator, symbols: list[str], share_class: np.ndarray, etf: np.ndarray
) -> pl.DataFrame:
    """The ``symbols_valid_meta.csv`` rows: one per symbol, every column a string."""
    n = len(symbols)
    exchange = np.where(
        etf,
        rng.choice(_ETF_EXCHANGES, n, p=_ETF_EXCHANGE_P),
        rng.choice(_STOCK_EXCHANGES, n, p=_STOCK_EXCHANGE_P),
    )
    nasdaq = exchange == "Q"
    category = np.where(nasdaq, rng.choice(["Q", "G", "S"], n, p=[0.4, 0.25, 0.35]), "")
    status = np.where(nasdaq, np.where(rng.random(n) < 0.06, "D", "N"), "")
    first, second = rng.integers(len(_FIRST), size=n), rng.integers(len(_SECOND), size=n)
    suffix, adr = rng.integers(len(_SUFFIX), size=n), rng.random(n) < 0.05
    issuer, theme = rng.integers(len(_ISSUERS), size=n), rng.integers(len(_THEMES), size=n)
    names = []
    for i, symbol in enumerate(symbols):
        company = f"{_FIRST[first[i]]} {_SECOND[second[i]]} {_SUFFIX[suffix[i]]}"
        if etf[i]:
            names.append(f"{_ISSUERS[issuer[i]]} {_THEMES[theme[i]]} ETF")
        elif share_class[i]:
            names.append(f"{company} Class {symbol[-1]} Common Stock")
        elif adr[i]:
            names.append(f"{company} American Depositary Shares")
        else:
            names.append(f"{company}{' -' if nasdaq[i] else ''} Common Stock")

    def column(values) -> list[str | None]:
        return [str(v) or None for v in values]  # None is written as an empty field

    data = {
        "Nasdaq Traded": ["Y"] * n,
        "Symbol": symbols,
        "Security Name": names,
        "Listing Exchange": column(exchange),
        "Market Category": column(category),
        "ETF": ["Y" if e else "N" for e in etf],
        "Round Lot Size": ["100.0"] * n,
        "Test Issue": ["N"] * n,
        "Financial Status": column(status),
        "CQS Symbol": [None if q else s for q, s in zip(nasdaq, symbols, strict=True)],
        "NASDAQ Symbol": symbols,
        "NextShares": ["N"] * n,
    }
    return pl.DataFrame(
        {name: data[name] for name in META_COLUMNS}, schema=dict.fromkeys(META_COLUMNS, pl.String)
    )


def _plan_dataset(spec: StockDatasetSpec) -> _DatasetPlan:
    """Symbols, metadata, listing spans, junk and every per-symbol parameter, from the spec."""
    rng = np.random.default_rng([spec.seed, 0])
    n = spec.symbols
    symbols, share_class_list = _make_symbols(rng, n)
    share_class = np.array(share_class_list)
    etf = np.zeros(n, dtype=bool)
    etf[_pick(rng, ~share_class, round(n * spec.etf_share))] = True
    meta = _symbol_metadata(rng, symbols, share_class, etf)
    stock = ~etf

    days = trading_days(spec.min_start, spec.end)
    first_allowed = np.where(etf, np.searchsorted(days, np.datetime64(FIRST_ETF_DAY)), 0)
    first_allowed = np.minimum(first_allowed, len(days) - MIN_ROWS)
    stop = np.full(n, len(days))
    delisted = rng.random(n) < DELISTED_SHARE
    stop[delisted] -= rng.integers(20, 5 * TRADING_DAYS_PER_YEAR, delisted.sum())
    stop = np.maximum(stop, first_allowed + MIN_ROWS)
    length = np.rint(rng.exponential(spec.mean_years, n) * TRADING_DAYS_PER_YEAR)
    length = np.maximum(length.astype(np.int64), MIN_ROWS)
    start = np.maximum(stop - length, first_allowed)
    rows = stop - start

    missing = np.zeros(n, dtype=bool)
    missing[_pick(rng, np.ones(n, dtype=bool), spec.missing_files)] = True
    empty = np.zeros(n, dtype=bool)
    empty[_pick(rng, ~missing, spec.empty_files)] = True
    with_rows = ~missing & ~empty

    target = np.where(
        etf,
        np.clip(rng.lognormal(math.log(35.0), 0.7, n), 3.0, 450.0),
        np.clip(rng.lognormal(math.log(22.0), 1.1, n), 1.0, 900.0),
    )
    sigma = np.where(
        etf,
        np.clip(rng.lognormal(math.log(0.011), 0.45, n), 0.003, 0.05),
        np.clip(rng.lognormal(math.log(0.021), 0.4, n), 0.007, 0.09),
    )
    stocks_with_rows = stock & with_rows
    penny = np.zeros(n, dtype=bool)
    penny[_pick(rng, stocks_with_rows, max(1, round(0.04 * stocks_with_rows.sum())))] = True
    target[penny] = rng.uniform(0.03, 0.95, penny.sum())
    sigma[penny] *= 1.7
    high = np.zeros(n, dtype=bool)
    high_count = max(1, round(0.004 * stocks_with_rows.sum()))
    high[_pick(rng, stocks_with_rows & ~penny, high_count)] = True
    target[high] = rng.uniform(1000.0, 4000.0, high.sum())
    # Long-lived symbols are calmer (the wild ones do not last decades): the walk's spread over
    # the whole series stays within a few e-folds, so prices stay plausible.
    sigma = np.minimum(sigma, np.maximum(2.0 / np.sqrt(rows), 0.01))
    splitter = np.zeros(n, dtype=bool)
    can_split = stocks_with_rows & ~penny & ~high & (rows >= TRADING_DAYS_PER_YEAR) & (target >= 15)
    splitter[_pick(rng, can_split, max(1, round(0.08 * can_split.sum())))] = True

    pays = np.where(etf, rng.random(n) < 0.5, rng.random(n) < 0.35) & ~penny
    div_yield = np.where(pays, np.clip(rng.lognormal(math.log(0.02), 0.5, n), 0.003, 0.08), 0.0)

    base_volume = np.where(
        etf,
        np.clip(rng.lognormal(math.log(20_000.0), 2.3, n), 10.0, 40e6),
        np.clip(rng.lognormal(math.log(250_000.0), 1.9, n) * (25.0 / target) ** 0.3, 30.0, 60e6),
    )
    etfs_with_rows = etf & with_rows
    if etfs_with_rows.any():  # at least one illiquid ETF
        lowest = np.flatnonzero(etfs_with_rows)[np.argmin(base_volume[etfs_with_rows])]
        base_volume[lowest] = min(base_volume[lowest], 400.0)
    zero_share = np.where(etf & (base_volume < 2000.0), rng.uniform(0.05, 0.35, n), 0.0)

    junk = np.zeros(n, dtype=np.int64)
    if spec.malformed_rows:
        n_files = min(spec.malformed_rows, 1 + spec.malformed_rows // 2)
        per_file = math.ceil(spec.malformed_rows / n_files)
        eligible = with_rows & (rows > per_file + 1)
        if not eligible.any():
            raise ValueError(f"no file has rows enough for {spec.malformed_rows} malformed rows")
        chosen = _pick(rng, eligible, n_files)
        for k in range(spec.malformed_rows):
            junk[chosen[k % len(chosen)]] += 1
        if (junk >= rows).any():
            raise ValueError(f"no files have rows enough for {spec.malformed_rows} malformed rows")

    return _DatasetPlan(
        spec=spec,
        days=days,
        market=_market_returns(days, spec.seed),
        symbols=symbols,
        etf=etf,
        meta=meta,
        start=start,
        stop=stop,
        missing=missing,
        empty=empty,
        junk=junk,
        float_volume=rng.random(n) < 0.5,
        target=target,
        sigma=sigma,
        alpha=rng.standard_normal(n) * np.minimum(np.where(etf, 0.00015, 0.0004), 1.0 / rows),
        beta=np.where(etf, rng.normal(0.9, 0.4, n), rng.normal(1.0, 0.35, n)),
        splitter=splitter,
        div_yield=div_yield,
        base_volume=base_volume,
        zero_share=zero_share,
    )


# ---------------------------------------------------------------------------------------------
# One symbol's series


def _reverse_sum_after(x: np.ndarray) -> np.ndarray:
    """``out[t] = sum(x[t+1:])``."""
    return np.cumsum(x[::-1])[::-1] - x


def _quote(prices: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Round to the day's tick (``1/units``), at least one tick; monotone, so order is kept."""
    return np.maximum(np.rint(prices * units) / units, 1.0 / units)


def _price_volume_series(plan: _DatasetPlan, i: int) -> dict[str, np.ndarray]:
    """The clean rows of symbol ``i``: the CSV columns as arrays (Date is datetime64[D])."""
    rng = np.random.default_rng([plan.spec.seed, 1, i])
    lo, hi = int(plan.start[i]), int(plan.stop[i])
    n = hi - lo
    dates = plan.days[lo:hi]
    sigma = float(plan.sigma[i])

    # Close-to-close log returns: alpha + beta * market + fat-tailed own noise + news.
    df = rng.uniform(3.0, 6.0)
    eps = np.clip(rng.standard_t(df, n) / math.sqrt(df / (df - 2)), -12.0, 12.0)
    news = rng.random(n) < NEWS_RATE
    eps[news] += rng.normal(0.0, 4.0, news.sum())
    r = plan.alpha[i] + plan.beta[i] * plan.market[lo:hi] + sigma * eps

    # Dividends: the price drops by the dividend on the ex-date (roughly every quarter).
    div = np.zeros(n)
    if plan.div_yield[i] > 0:
        ex = np.arange(int(rng.integers(1, 64)), n, 63)
        div[ex] = np.log1p(-plan.div_yield[i] / 4 * rng.lognormal(0.0, 0.1, len(ex)))
    r += div

    # Splits (k shares for one): log_m[t] = log of the splits after day t, so raw = adjusted * m.
    split = np.ones(n)
    if plan.splitter[i]:
        slots = np.arange(20, n - 1, 120)  # splits at least 120 trading days apart
        count = min(int(rng.choice([1, 1, 1, 2, 2, 3])), len(slots))
        at = rng.choice(slots, count, replace=False) + rng.integers(0, 120, count)
        split[np.minimum(at, n - 1)] = rng.choice([2.0, 2.0, 2.0, 3.0, 3.0, 4.0], count)
    log_split = np.log(split)
    log_m = _reverse_sum_after(log_split)

    # Open = previous close moved by an overnight gap; High/Low add wicks beyond Open and Close.
    gap = 0.35 * (r - div) + 0.3 * sigma * rng.standard_normal(n) + div
    log_close = np.cumsum(r)
    log_open = log_close - r + gap
    wick = 0.5 * sigma
    log_high = np.maximum(log_open, log_close) + wick * np.abs(rng.standard_normal(n))
    log_low = np.minimum(log_open, log_close) - wick * np.abs(rng.standard_normal(n))
    shift = math.log(plan.target[i]) - log_close[-1] + log_m
    lowest, highest = (log_low + shift).min(), (log_high + shift).max()
    if lowest < math.log(PRICE_FLOOR):
        shift += math.log(PRICE_FLOOR) - lowest
    elif highest > math.log(PRICE_CAP):
        shift -= min(highest - math.log(PRICE_CAP), lowest - math.log(PRICE_FLOOR))
    low = np.exp(log_low + shift)

    units = np.where(
        dates >= _DECIMAL,
        np.where(low < 1.0, 10_000.0, 100.0),
        np.where(
            low < 1.0, 256.0, np.where(low < 10.0, 32.0, np.where(dates < _SIXTEENTHS, 8.0, 16.0))
        ),
    )
    open_ = _quote(np.exp(log_open + shift), units)
    high = _quote(np.exp(log_high + shift), units)
    low = _quote(low, units)
    close = _quote(np.exp(log_close + shift), units)

    # Volume, in split-adjusted shares first: level, AR(1) persistence, move size, news, growth.
    phi, sd = rng.uniform(0.8, 0.97), rng.uniform(0.25, 0.6)
    e = rng.normal(0.0, sd * math.sqrt(1 - phi**2), n)
    e[0] = rng.normal(0.0, sd)
    years_back = (np.datetime64(plan.spec.end) - dates).astype(np.float64) / 365.25
    log_volume = (
        math.log(plan.base_volume[i])
        + _ar1(e, phi)
        + 0.25 * rng.standard_normal(n)
        + 0.3 * np.minimum(np.abs(eps), 5.0)
        + news * rng.uniform(0.7, 2.3, n)
        - VOLUME_GROWTH * years_back
    )
    volume = np.rint(np.clip(np.exp(log_volume - log_m), 1.0, MAX_VOLUME)).astype(np.int64)

    # Illiquid ETFs: days without trades carry the last close over (never an event day).
    if plan.zero_share[i] > 0:
        zero = rng.random(n) < plan.zero_share[i]
        zero[0] = False
        zero &= (div == 0) & (split == 1)
        last_trade = np.maximum.accumulate(np.where(zero, 0, np.arange(n)))
        close = close[last_trade]
        open_ = np.where(zero, close, open_)
        high = np.where(zero, close, high)
        low = np.where(zero, close, low)
        volume[zero] = 0

    # Adj Close: every earlier price times (1 - dividend/close) and 1/k for each later event.
    adj_close = close * np.exp(_reverse_sum_after(div - log_split))

    def f32(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32).astype(np.float64)

    volume_column = volume.astype(np.float64) if plan.float_volume[i] else volume
    prices = (f32(p) for p in (open_, high, low, close, adj_close))
    return dict(zip(CSV_HEADER, (dates, *prices, volume_column), strict=True))


def _junk_line(kind: str, line: str) -> str:
    """A malformed version of a CSV data line."""
    fields_ = line.split(",")
    if kind == "bad_price":
        fields_[4] = "abc"
    elif kind == "truncated":
        fields_ = fields_[:3]
    elif kind == "bad_date":
        fields_[0] = BAD_DATE
    else:
        fields_[6] = ""
    return ",".join(fields_)


def _csv_text(plan: _DatasetPlan, i: int, frame: pl.DataFrame) -> str:
    """The file's text with ``plan.junk[i]`` data lines replaced by malformed ones."""
    lines = frame.write_csv().split("\n")
    rng = np.random.default_rng([plan.spec.seed, 3, i])
    count = int(plan.junk[i])
    at = np.sort(rng.choice(np.arange(1, len(frame) + 1), count, replace=False))
    # Kinds rotate over the dataset's junk rows, so every kind appears once there are four.
    first = int(plan.junk[:i].sum()) + plan.spec.seed
    for k, line_no in enumerate(at):
        kind = JUNK_KINDS[(first + k) % len(JUNK_KINDS)]
        lines[line_no] = _junk_line(kind, lines[line_no])
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Writing


def _spec_json(spec: StockDatasetSpec) -> dict:
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in asdict(spec).items()}


def write_stock_dataset(root: Path, spec: StockDatasetSpec) -> StockDatasetManifest:
    """Write the dataset into ``root`` (created; must be empty), its marker file last."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if any(root.iterdir()):
        raise FileExistsError(f"{root} is not empty (ensure_stock_dataset replaces datasets)")
    plan = _plan_dataset(spec)
    for folder in FOLDERS:
        (root / folder).mkdir()
    plan.meta.write_csv(root / META_FILE)

    rows = files = 0
    for i in range(spec.symbols):
        if plan.missing[i]:
            continue
        path = root / plan.path(i)
        files += 1
        if plan.empty[i]:
            path.write_bytes(b"")
            continue
        frame = pl.DataFrame(_price_volume_series(plan, i))
        if plan.junk[i]:
            path.write_text(_csv_text(plan, i, frame))
        else:
            frame.write_csv(path)
        rows += len(frame) - int(plan.junk[i])

    manifest = StockDatasetManifest(
        root=root,
        files=files,
        rows=rows,
        malformed_rows=int(plan.junk.sum()),
        missing_files=tuple(s for s, m in zip(plan.symbols, plan.missing, strict=True) if m),
        empty_files=tuple(plan.path(i) for i in np.flatnonzero(plan.empty)),
    )
    marker = {
        "generator": GENERATOR_VERSION,
        "spec": _spec_json(spec),
        "manifest": {
            f.name: getattr(manifest, f.name) for f in fields(manifest) if f.name != "root"
        },
    }
    # Last, so a dataset with a (complete, parseable) marker is a complete dataset.
    (root / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n")
    return manifest


def _read_marker(root: Path, spec: StockDatasetSpec) -> StockDatasetManifest | None:
    """The manifest recorded in ``root`` if it was written by this generator for ``spec``."""
    try:
        marker = json.loads((root / MARKER_FILE).read_text())
    except (OSError, ValueError):
        return None
    if marker.get("generator") != GENERATOR_VERSION or marker.get("spec") != _spec_json(spec):
        return None
    m = marker["manifest"]
    return StockDatasetManifest(
        root=root,
        files=m["files"],
        rows=m["rows"],
        malformed_rows=m["malformed_rows"],
        missing_files=tuple(m["missing_files"]),
        empty_files=tuple(m["empty_files"]),
    )


def _remove_abandoned(root: Path) -> None:
    """Delete temp/old siblings of ``root`` left by processes that died mid-way."""
    prefix = f".{root.name}."
    for sibling in root.parent.iterdir():
        pid = sibling.name[len(prefix) :].split(".")[0]
        if not (sibling.name.startswith(prefix) and pid.isdigit()):
            continue
        if sibling.suffix not in (".tmp", ".old"):
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(sibling, ignore_errors=True)
        except OSError:
            pass  # alive, another user's


def ensure_stock_dataset(root: Path, spec: StockDatasetSpec) -> StockDatasetManifest:
    """Generate the dataset at ``root`` unless it is already there for this spec.

    A dataset is complete only once its marker (spec + manifest) exists; otherwise it is built
    in a temp sibling and renamed into place, so ``root`` never shows a half dataset. ``root``
    is replaced only if it holds nothing but a dataset's files (never unrelated data).
    """
    root = Path(root)
    found = _read_marker(root, spec)
    if found is not None:
        return found
    if root.exists():
        if not root.is_dir():
            raise FileExistsError(f"{root} is a file")
        extra = {p.name for p in root.iterdir()} - {*FOLDERS, META_FILE, MARKER_FILE}
        if extra:
            raise FileExistsError(
                f"{root} holds other files ({sorted(extra)[:3]}); not replacing it"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(root)
    tag = f".{root.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    temp, old = root.with_name(tag + ".tmp"), root.with_name(tag + ".old")
    try:
        manifest = write_stock_dataset(temp, spec)
        if root.exists():
            os.rename(root, old)
        try:
            os.rename(temp, root)
        except OSError:  # another process put a dataset there meanwhile
            found = _read_marker(root, spec)
            if found is None:
                raise
            return found
    finally:
        shutil.rmtree(temp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return replace(manifest, root=root)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m market_assets.simulator",
        description="Generate the synthetic Kaggle stock market dataset (once per spec).",
    )
    parser.add_argument("--out", type=Path, required=True, help="dataset folder")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)
    spec = SIZES[args.size]
    if args.seed is not None:
        spec = replace(spec, seed=args.seed)
    started = time.perf_counter()
    manifest = ensure_stock_dataset(args.out, spec)
    elapsed = time.perf_counter() - started
    size = sum(p.stat().st_size for p in manifest.root.rglob("*") if p.is_file())
    report = {f.name: getattr(manifest, f.name) for f in fields(manifest)}
    report.update(root=str(manifest.root), bytes=size, seconds=round(elapsed, 2))
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
