"""The ESIOS brief's code-optimization exercise: a row loop made vectorized, and a memory reducer.

(a) ``function_to_apply(lat, lon) = sin(lat/2)**2 + cos(lat)*cos(lon)*sin(lon/2)**2`` with lat/lon
    taken as radians exactly as the brief writes it (it is not the textbook haversine and is not
    "fixed" here). ``apply_row_loop`` is the brief's ``df.iloc[i]`` loop, kept as the baseline;
    ``apply_vectorized`` (numpy over whole columns) and ``apply_polars`` / ``function_expr``
    (polars expressions) compute the same numbers without a Python-level loop.

(b) ``reduce_memory_pandas`` / ``reduce_memory_polars`` shrink a frame without changing its values:

    * integers -> the smallest integer type of the same signedness that holds the column's
      min..max (signed stays signed so ``a - b`` cannot wrap around; nullable pandas ``Int64``
      becomes ``Int8``/``Int16``/``Int32``);
    * floats -> float32 only when it is lossless for the data (``float32_is_lossless``): every
      value, stored as float32 and printed shortest-round-trip, reads back as exactly the float64
      it was (decimals with up to 6 significant digits, e.g. 23.4 MW or 40.4168, always pass;
      full-precision computed doubles stay float64) and every non-zero finite value is in the
      float32 normal range. Upcasting back to float64 then differs from the original by at most a
      relative ``FLOAT32_RTOL`` (2**-24, half a float32 ulp): that is the documented tolerance;
    * strings that are all ISO-8601 dates / date-times -> datetime (date-only -> ``Date`` in
      polars); values carrying a UTC offset are parsed to UTC instants (the instant is kept, the
      original offset text is not; naive mixed with offsets is not parsed); a column that does
      not parse is then treated like any other string;
    * other strings whose distinct-value ratio is < ``max_cardinality_ratio`` (0.5) ->
      categorical (pandas ``category``, polars ``Enum``), since a repeated string then costs one
      small code instead of its bytes.

    Both return the new frame and a ``MemoryReport`` with the bytes before/after (pandas:
    ``memory_usage(deep=True)`` incl. the index; polars: ``estimated_size()``) and each change.

The command runs both on the brief's own files (run from the repository root)::

    python -m benchmarks.optimization_exercise speed [CSV] [-o OUT]   # dataset_speed_optimization.csv
    python -m benchmarks.optimization_exercise memory [CSV] [-o OUT.parquet]
                                                                    # dataset_memory_optimization.csv

``speed`` adds the brief's ``distance`` column from ``latitude``/``longitude`` (used as they
are, as the brief's loop does) and writes ``{CSV stem}_distance.csv`` unless ``-o`` says where;
``memory`` loads any CSV, reduces it and prints the bytes before/after and each column's change.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl

FLOAT32_RTOL = 2.0**-24
"""Max relative difference between a downcast float column, upcast back, and the original."""

MAX_CARDINALITY_RATIO = 0.5
"""Strings with fewer distinct values than this share of the rows become categorical."""

# ISO-8601 date or date-time, optional fraction and offset (ESIOS: 2024-01-01T00:00:00.000+01:00).
ISO_DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
ISO_DATETIME_PATTERN = (
    r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?$"
)
_OFFSET_PATTERN = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"

_SIGNED = (np.int8, np.int16, np.int32, np.int64)
_UNSIGNED = (np.uint8, np.uint16, np.uint32, np.uint64)
_PANDAS_NULLABLE = {
    np.dtype(t).name: np.dtype(t).name.title().replace("Ui", "UI") for t in _SIGNED + _UNSIGNED
}


# --------------------------------------------------------------------------------------------
# (a) the row function: baseline loop and vectorized versions
# --------------------------------------------------------------------------------------------


def function_to_apply(lat: float, lon: float) -> float:
    """The brief's per-row function, verbatim (radians in, NaN in -> NaN out)."""
    return math.sin(lat / 2) ** 2 + math.cos(lat) * math.cos(lon) * math.sin(lon / 2) ** 2


def apply_row_loop(df: pd.DataFrame, lat: str = "lat", lon: str = "lon") -> pd.Series:
    """The brief's baseline: one ``df.iloc[i]`` per row in a Python loop. Slow by design."""
    results = []
    for i in range(len(df)):
        row = df.iloc[i]
        results.append(function_to_apply(row[lat], row[lon]))
    return pd.Series(results, index=df.index, name="result", dtype="float64")


def function_numpy(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """The same formula on whole arrays: one C loop per ufunc instead of a Python call per row."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    return np.sin(lat / 2) ** 2 + np.cos(lat) * np.cos(lon) * np.sin(lon / 2) ** 2


def apply_vectorized(df: pd.DataFrame, lat: str = "lat", lon: str = "lon") -> pd.Series:
    """Vectorized ``apply_row_loop``: the same values (to float rounding), NaN where it has NaN."""
    values = function_numpy(
        df[lat].to_numpy(dtype=np.float64, na_value=np.nan),
        df[lon].to_numpy(dtype=np.float64, na_value=np.nan),
    )
    return pd.Series(values, index=df.index, name="result")


def function_expr(lat: str | pl.Expr = "lat", lon: str | pl.Expr = "lon") -> pl.Expr:
    """The formula as a polars expression, so it runs inside a lazy query on all cores."""
    lat_e = pl.col(lat) if isinstance(lat, str) else lat
    lon_e = pl.col(lon) if isinstance(lon, str) else lon
    lat_e = lat_e.cast(pl.Float64)
    lon_e = lon_e.cast(pl.Float64)
    return ((lat_e / 2).sin().pow(2) + lat_e.cos() * lon_e.cos() * (lon_e / 2).sin().pow(2)).alias(
        "result"
    )


def apply_polars(df: pl.DataFrame, lat: str = "lat", lon: str = "lon") -> pl.Series:
    """``function_expr`` over a polars frame (NaN stays NaN, null stays null)."""
    return df.select(function_expr(lat, lon)).to_series()


# --------------------------------------------------------------------------------------------
# (b) memory reduction
# --------------------------------------------------------------------------------------------


@dataclass
class MemoryReport:
    """Bytes before/after a reduction and what changed, per column (old dtype, new dtype)."""

    before_bytes: int
    after_bytes: int
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def reduction_pct(self) -> float:
        if self.before_bytes == 0:
            return 0.0
        return 100.0 * (1 - self.after_bytes / self.before_bytes)

    def __str__(self) -> str:
        lines = [
            f"memory {self.before_bytes:,} B -> {self.after_bytes:,} B "
            f"({self.reduction_pct:.1f}% less)"
        ]
        lines += [f"  {col}: {old} -> {new}" for col, (old, new) in self.changes.items()]
        return "\n".join(lines)


def smallest_int_dtype(minimum: int, maximum: int, unsigned: bool = False) -> np.dtype:
    """The narrowest numpy integer type (keeping signedness) that holds ``minimum..maximum``."""
    for candidate in _UNSIGNED if unsigned else _SIGNED:
        info = np.iinfo(candidate)
        if info.min <= minimum and maximum <= info.max:
            return np.dtype(candidate)
    raise OverflowError(f"{minimum}..{maximum} fits no 64-bit integer type")


def float32_is_lossless(values: np.ndarray, sample: int = 1_000) -> bool:
    """True if storing ``values`` as float32 loses nothing the float64 data actually carried.

    Rule: the float32's shortest round-trip decimal reads back as exactly the original float64
    (NaN/inf allowed), and non-zero finite values lie in float32's normal range. A small sample
    is checked first so full-precision columns are rejected without formatting every value.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size > sample and not _float32_roundtrips(values[:: max(1, values.size // sample)]):
        return False
    return _float32_roundtrips(values)


def _float32_roundtrips(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values) & (values != 0)]
    f32 = np.finfo(np.float32)
    if finite.size and (np.abs(finite).min() < f32.tiny or np.abs(finite).max() > f32.max):
        return False
    with np.errstate(over="ignore"):
        back = values.astype(np.float32).astype(str).astype(np.float64)
    return bool(np.array_equal(back, values, equal_nan=True))


def _string_target(
    non_null: int, n_unique: int, rows: int, date_only: bool, datetime_like: bool, ratio: float
) -> str | None:
    """Decide what a string column becomes: 'date', 'datetime', 'category' or None."""
    if non_null and date_only:
        return "date"
    if non_null and datetime_like:
        return "datetime"
    if non_null and n_unique / rows < ratio:  # all-null columns have nothing to encode
        return "category"
    return None


def reduce_memory_pandas(
    df: pd.DataFrame, max_cardinality_ratio: float = MAX_CARDINALITY_RATIO
) -> tuple[pd.DataFrame, MemoryReport]:
    """Downcast ints/floats, parse ISO date strings, categorize repetitive strings (pandas).

    Returns a new frame (the input is untouched) and the before/after ``MemoryReport``.
    """
    before = int(df.memory_usage(deep=True).sum())
    out = df.copy()
    changes: dict[str, tuple[str, str]] = {}
    for col in df.columns:
        s = df[col]
        new = _reduce_pandas_column(s, max_cardinality_ratio)
        if new is not None:
            out[col] = new
            changes[str(col)] = (str(s.dtype), str(new.dtype))
    return out, MemoryReport(before, int(out.memory_usage(deep=True).sum()), changes)


def _reduce_pandas_column(s: pd.Series, ratio: float) -> pd.Series | None:
    dtype = s.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return None
    if pd.api.types.is_integer_dtype(dtype):
        non_null = s.dropna()
        if non_null.empty:
            return None
        unsigned = pd.api.types.is_unsigned_integer_dtype(dtype)
        target = smallest_int_dtype(int(non_null.min()), int(non_null.max()), unsigned)
        if target.itemsize >= dtype.itemsize:
            return None
        if isinstance(dtype, pd.api.extensions.ExtensionDtype):  # nullable Int64 -> Int8 ...
            return s.astype(_PANDAS_NULLABLE[target.name])
        return s.astype(target)
    if pd.api.types.is_float_dtype(dtype):
        if dtype.itemsize <= 4 or isinstance(dtype, pd.api.extensions.ExtensionDtype):
            return None
        return s.astype(np.float32) if float32_is_lossless(s.to_numpy()) else None
    is_text = pd.api.types.is_string_dtype(dtype) and (
        not pd.api.types.is_object_dtype(dtype)
        or pd.api.types.infer_dtype(s, skipna=True) == "string"
    )
    if not is_text:
        return None
    non_null = s.dropna()
    text = non_null.astype(str)
    date_only = bool(len(text)) and bool(text.str.fullmatch(ISO_DATE_PATTERN[1:-1]).all())
    datetime_like = bool(len(text)) and bool(text.str.fullmatch(ISO_DATETIME_PATTERN[1:-1]).all())
    target = _string_target(
        len(non_null), s.nunique(dropna=True), len(s), date_only, datetime_like, ratio
    )
    if target in ("date", "datetime"):
        offsets = int(text.str.contains(_OFFSET_PATTERN).sum()) if target == "datetime" else 0
        try:
            if 0 < offsets < len(text):  # naive mixed with offsets: no single meaning, keep text
                raise ValueError("mixed naive and offset date-times")
            return pd.to_datetime(s, format="ISO8601", utc=offsets > 0)
        except (ValueError, OverflowError):
            target = "category" if len(s) and s.nunique() / len(s) < ratio else None
    if target == "category":
        return s.astype("category")
    return None


_POLARS_SIGNED = {1: pl.Int8, 2: pl.Int16, 4: pl.Int32, 8: pl.Int64}
_POLARS_UNSIGNED = {1: pl.UInt8, 2: pl.UInt16, 4: pl.UInt32, 8: pl.UInt64}
_POLARS_ITEMSIZE = {
    dt: size for table in (_POLARS_SIGNED, _POLARS_UNSIGNED) for size, dt in table.items()
}


def reduce_memory_polars(
    df: pl.DataFrame, max_cardinality_ratio: float = MAX_CARDINALITY_RATIO
) -> tuple[pl.DataFrame, MemoryReport]:
    """The same rules as ``reduce_memory_pandas`` for a polars frame (dates -> ``pl.Date`` or
    ``pl.Datetime``; repetitive strings -> ``pl.Enum`` of their sorted distinct values, whose
    1-2 byte codes beat ``pl.Categorical``'s 4, and sorting stays lexical)."""
    before = int(df.estimated_size())
    changes: dict[str, tuple[str, str]] = {}
    columns = []
    for s in df.get_columns():
        new = _reduce_polars_column(s, max_cardinality_ratio)
        if new is not None and new.dtype != s.dtype:
            changes[s.name] = (str(s.dtype), str(new.dtype))
            columns.append(new)
        else:
            columns.append(s)
    out = pl.DataFrame(columns)
    return out, MemoryReport(before, int(out.estimated_size()), changes)


def _reduce_polars_column(s: pl.Series, ratio: float) -> pl.Series | None:
    dtype = s.dtype
    if dtype.is_integer():
        if s.null_count() == len(s):
            return None
        unsigned = dtype.is_unsigned_integer()
        target = smallest_int_dtype(int(s.min()), int(s.max()), unsigned)
        table = _POLARS_UNSIGNED if unsigned else _POLARS_SIGNED
        current = _POLARS_ITEMSIZE.get(dtype, 16)  # Int128/UInt128 are not in the tables
        return s.cast(table[target.itemsize]) if target.itemsize < current else None
    if dtype == pl.Float64:
        values = s.to_numpy()  # nulls -> NaN, which the lossless check accepts
        return s.cast(pl.Float32) if float32_is_lossless(values) else None
    if dtype != pl.String:
        return None
    non_null = s.drop_nulls()
    date_only = len(non_null) > 0 and bool(non_null.str.contains(ISO_DATE_PATTERN).all())
    datetime_like = len(non_null) > 0 and bool(non_null.str.contains(ISO_DATETIME_PATTERN).all())
    target = _string_target(
        len(non_null), s.drop_nulls().n_unique(), len(s), date_only, datetime_like, ratio
    )
    try:
        if target == "date":
            return s.str.to_date("%Y-%m-%d", strict=True)
        if target == "datetime":
            offsets = int(non_null.str.contains(_OFFSET_PATTERN).sum())
            if 0 < offsets < len(non_null):  # naive mixed with offsets: keep text (as pandas)
                raise ValueError("mixed naive and offset date-times")
            zone = "UTC" if offsets else None  # offsets -> UTC instants, as in pandas
            return s.str.to_datetime(time_unit="us", time_zone=zone, strict=True)
    except (pl.exceptions.PolarsError, ValueError):
        target = "category" if len(s) and s.drop_nulls().n_unique() / len(s) < ratio else None
    if target == "category":
        # Enum over the column's own values: UInt8/UInt16 codes, where pl.Categorical is UInt32.
        return s.cast(pl.Enum(s.drop_nulls().unique().sort()))
    return None


# --------------------------------------------------------------------------------------------
# the command: the brief's files and column names
# --------------------------------------------------------------------------------------------

SPEED_CSV = "dataset_speed_optimization.csv"
MEMORY_CSV = "dataset_memory_optimization.csv"
LATITUDE, LONGITUDE, DISTANCE = "latitude", "longitude", "distance"


def add_distance(df: pd.DataFrame) -> pd.DataFrame:
    """The brief's result: ``df`` with ``distance = function_to_apply(latitude, longitude)``
    per row, computed over whole columns."""
    missing = [c for c in (LATITUDE, LONGITUDE) if c not in df.columns]
    if missing:
        raise ValueError(
            f"has no column {', '.join(missing)} (the brief's input); its columns: "
            f"{', '.join(map(str, df.columns)) or 'none'}"
        )
    out = df.copy()
    out[DISTANCE] = apply_vectorized(df, LATITUDE, LONGITUDE).to_numpy()
    return out


def _read_csv(parser: argparse.ArgumentParser, path: Path) -> pd.DataFrame:
    """The CSV as pandas reads it by default (what the brief's ``df`` is), or a usage error."""
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        parser.error(f"{path} does not exist (run from the folder holding it, or name the file)")
    except pd.errors.EmptyDataError:
        parser.error(f"{path} is empty: no header, no rows")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        parser.error(f"{path} is not a readable CSV: {exc}")
    raise AssertionError("unreachable")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.optimization_exercise",
        description="The ESIOS brief's optimization exercise on its own files.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    speed = sub.add_parser("speed", help="add the brief's distance column, vectorized")
    speed.add_argument("csv", nargs="?", default=SPEED_CSV, type=Path)
    speed.add_argument("-o", "--output", type=Path, help="default: {CSV stem}_distance.csv")
    memory = sub.add_parser("memory", help="load a CSV and reduce its memory")
    memory.add_argument("csv", nargs="?", default=MEMORY_CSV, type=Path)
    memory.add_argument("-o", "--output", type=Path, help="also write the reduced frame (parquet)")
    args = parser.parse_args(argv)

    df = _read_csv(parser, args.csv)
    print(f"{args.csv}: {len(df):,} rows, {len(df.columns)} columns")
    if args.command == "speed":
        started = time.perf_counter()
        try:
            result = add_distance(df)
        except ValueError as exc:
            parser.error(f"{args.csv} {exc}")
        seconds = time.perf_counter() - started
        output = args.output or args.csv.with_name(f"{args.csv.stem}_distance.csv")
        result.to_csv(output, index=False)
        print(f"{DISTANCE} of {len(df):,} rows in {seconds * 1e3:.1f} ms -> {output}")
    else:
        reduced, report = reduce_memory_pandas(df)
        print(report)
        if args.output:
            reduced.to_parquet(args.output, index=False)
            print(f"reduced frame -> {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
