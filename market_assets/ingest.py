"""Kaggle-layout stock CSVs -> one typed price table, in PySpark (no Dagster here).

All CSVs of ``etfs/`` and ``stocks/`` are read in one Spark read, every field as a string and
headers included, so that a bad file or line is data to count, never an exception that kills
the job. The symbol comes from the file name (``stocks/AAPL.csv`` -> ``AAPL``) and the security
name from ``symbols_valid_meta.csv`` (left join: a file without a metadata row keeps a null
name and is counted).

A file is accepted when it has a header and every header-like line (first field ``date`` in any
case) is exactly ``Date,Open,High,Low,Close,Adj Close,Volume``. A file that fails this (wrong,
reordered or missing header: the columns cannot be trusted) has all its lines quarantined as
``bad_header``, and the report keeps its first line to show expected against found. Files
that yield no line at all are ``empty`` (zero bytes) or ``unreadable``
(Spark skipped them as corrupt, ``ignoreCorruptFiles``).

In accepted files, a data line is quarantined under the first reason that applies:

- ``malformed``: the CSV parser flagged it (too many fields, or far too few);
- ``bad_date``: ``Date`` is not a real ``YYYY-MM-DD`` date;
- ``missing_value``: a price or the volume is empty or absent (a line cut after ``Adj Close``);
- ``bad_price``: a price that is not a finite number >= 0 (zero is kept: old Yahoo rows have
  ``Open = 0`` where the opening price was not recorded);
- ``bad_volume``: a volume that is not a finite, whole number >= 0 (``117258400.0`` is whole).

Quarantined lines are kept (file, reason, line) so nothing read is silently lost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pyspark import StorageLevel
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from market_assets.schema import (
    CSV_HEADER,
    DATE,
    FOLDERS,
    META_FILE,
    PRICE_COLUMNS,
    PRICES_COLUMNS,
    SECURITY_NAME,
    SYMBOL,
    VOLUME,
)

FILE = "file"
REASON = "reason"
LINE = "line"
CORRUPT_RECORD = "_corrupt_record"
LINE_REASONS = ("malformed", "bad_date", "missing_value", "bad_price", "bad_volume")
FILE_REASONS = ("bad_header", "empty", "unreadable")
_FIELDS = tuple(f"_c{i}" for i in range(len(CSV_HEADER)))
_HEADER = "__header__"
EXPECTED_HEADER = ",".join(CSV_HEADER)
# First lines read back to show what a rejected header was (one small read per file).
HEADERS_SHOWN = 20
_HEADER_CHARS = 200


class DatasetError(ValueError):
    """The dataset folder cannot be used at all (no metadata file, no CSV files)."""


@dataclass(frozen=True)
class SourceFile:
    """One ``etfs/SYM.csv`` or ``stocks/SYM.csv`` as listed by the filesystem."""

    relative_path: str
    size: int

    @property
    def folder(self) -> str:
        return self.relative_path.split("/", 1)[0]

    @property
    def symbol(self) -> str:
        return self.relative_path.split("/", 1)[1].removesuffix(".csv")


@dataclass
class IngestReport:
    """What one ingestion read, kept and set aside; becomes the asset's metadata."""

    files: int = 0
    accepted_files: int = 0
    rows: int = 0
    quarantined_lines: dict[str, int] = field(default_factory=dict)
    bad_header_files: list[str] = field(default_factory=list)
    # The first line of the first HEADERS_SHOWN bad-header files, to show expected vs found.
    bad_headers: dict[str, str] = field(default_factory=dict)
    empty_files: list[str] = field(default_factory=list)
    unreadable_files: list[str] = field(default_factory=list)
    files_without_rows: list[str] = field(default_factory=list)
    missing_files: list[str] = field(default_factory=list)
    symbols_without_metadata: list[str] = field(default_factory=list)

    def header_problems(self) -> list[str]:
        """One line per rejected file: the header found (``expected`` is EXPECTED_HEADER)."""
        return [
            f"{name}: found {self.bad_headers[name]!r}"
            if name in self.bad_headers
            else f"{name}: found a wrong header"
            for name in self.bad_header_files
        ]

    def nothing_usable(self) -> str | None:
        """Why not a single price row survived, or None when some did.

        Writing an empty dataset would replace the previous good one, so the caller fails
        instead; the text names the files and, for headers, expected against found.
        """
        if self.rows:
            return None
        parts = []
        if self.bad_header_files:
            shown = "; ".join(self.header_problems()[:HEADERS_SHOWN])
            more = len(self.bad_header_files) - HEADERS_SHOWN
            parts.append(
                f"{len(self.bad_header_files)} of {self.files} files have a wrong header "
                f"(expected {EXPECTED_HEADER!r}; {shown}{f'; +{more} more' if more > 0 else ''})"
            )
        if self.empty_files or self.unreadable_files:
            parts.append(
                f"{len(self.empty_files)} empty and {len(self.unreadable_files)} unreadable files"
            )
        if self.files_without_rows:
            parts.append(
                f"{len(self.files_without_rows)} files with a good header but no valid line "
                f"(quarantined lines: {self.quarantined_lines})"
            )
        return f"no usable price rows in {self.files} files: " + "; ".join(parts)


def _hadoop_path(spark: SparkSession, uri: str):
    return spark.sparkContext._jvm.org.apache.hadoop.fs.Path(uri)


def _filesystem(spark: SparkSession, uri: str):
    return _hadoop_path(spark, uri).getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def list_source_files(spark: SparkSession, root: str) -> list[SourceFile]:
    """Every ``{etfs,stocks}/*.csv`` under ``root`` with its size, through Hadoop's filesystem
    (so ``root`` can be local, ``s3a://`` or HDFS), sorted by path."""
    fs = _filesystem(spark, root)
    found: list[SourceFile] = []
    for folder in FOLDERS:
        statuses = fs.globStatus(_hadoop_path(spark, f"{root.rstrip('/')}/{folder}/*.csv"))
        for status in statuses or []:
            if status.isFile():
                name = status.getPath().getName()
                found.append(SourceFile(f"{folder}/{name}", int(status.getLen())))
    return sorted(found, key=lambda f: f.relative_path)


def first_line(spark: SparkSession, uri: str) -> str:
    """The first line of a file (at most _HEADER_CHARS characters), through Hadoop's
    filesystem like every other read here; empty for an empty file."""
    jvm = spark.sparkContext._jvm
    stream = _filesystem(spark, uri).open(_hadoop_path(spark, uri))
    try:
        reader = jvm.java.io.BufferedReader(jvm.java.io.InputStreamReader(stream, "UTF-8"))
        line = reader.readLine()
    finally:
        stream.close()
    return (line or "")[:_HEADER_CHARS]


def read_metadata(spark: SparkSession, root: str) -> DataFrame:
    """``symbols_valid_meta.csv``: one row per symbol (the first, if listed twice)."""
    path = f"{root.rstrip('/')}/{META_FILE}"
    if not _filesystem(spark, root).exists(_hadoop_path(spark, path)):
        raise DatasetError(f"{path} does not exist: STOCK_DATASET_DIR needs the Kaggle layout")
    meta = spark.read.option("header", True).csv(path)
    missing = {SYMBOL, SECURITY_NAME} - set(meta.columns)
    if missing:
        raise DatasetError(f"{path} lacks the column(s) {sorted(missing)}; has {meta.columns}")
    return (
        meta.select(F.trim(SYMBOL).alias(SYMBOL), F.col(SECURITY_NAME))
        .where(F.col(SYMBOL).isNotNull() & (F.col(SYMBOL) != ""))
        .dropDuplicates([SYMBOL])
    )


def read_price_lines(spark: SparkSession, root: str, folders: Sequence[str]) -> DataFrame:
    """Every line of every CSV in ``folders``, as 7 string fields plus the file it came from."""
    schema = T.StructType(
        [T.StructField(name, T.StringType()) for name in (*_FIELDS, CORRUPT_RECORD)]
    )
    paths = [f"{root.rstrip('/')}/{folder}/*.csv" for folder in folders]
    folder = F.regexp_extract(F.col("_metadata.file_path"), r"([^/]+)/[^/]+$", 1)
    return (
        spark.read.schema(schema)
        .option("header", False)
        .option("mode", "PERMISSIVE")
        .option("columnNameOfCorruptRecord", CORRUPT_RECORD)
        .option("ignoreCorruptFiles", True)
        .csv(paths)
        .select(
            *_FIELDS,
            CORRUPT_RECORD,
            F.concat_ws("/", folder, F.col("_metadata.file_name")).alias(FILE),
        )
    )


def _is_blank(column: Column) -> Column:
    return column.isNull() | (F.trim(column) == "")


def _finite(column: Column) -> Column:
    return column.isNotNull() & ~F.isnan(column) & (F.abs(column) < F.lit(float("inf")))


def parse_price_lines(lines: DataFrame) -> DataFrame:
    """Type every line and name why it is not a good data line (``reason`` null when it is).

    Header-like lines get the reason ``__header__`` and a flag saying whether they match the
    expected header exactly; ``file_checks`` turns those into per-file verdicts.
    """
    raw = {name: F.col(field_) for name, field_ in zip(CSV_HEADER, _FIELDS, strict=True)}
    is_header = F.lower(F.trim(raw[DATE])) == "date"
    header_ok = F.lit(True)
    for name in CSV_HEADER:
        header_ok = header_ok & F.coalesce(raw[name] == name, F.lit(False))
    date = F.when(raw[DATE].rlike(r"^\d{4}-\d{2}-\d{2}$"), F.try_to_date(raw[DATE], "yyyy-MM-dd"))
    prices = {name: raw[name].try_cast("double") for name in PRICE_COLUMNS}
    volume = raw[VOLUME].try_cast("double")
    missing = F.lit(False)
    for name in (*PRICE_COLUMNS, VOLUME):
        missing = missing | _is_blank(raw[name])
    bad_price = F.lit(False)
    for value in prices.values():
        bad_price = bad_price | ~_finite(value) | (value < 0)
    bad_volume = ~_finite(volume) | (volume < 0) | (volume != F.floor(volume))
    reason = (
        F.when(is_header, F.lit(_HEADER))
        .when(F.col(CORRUPT_RECORD).isNotNull(), F.lit("malformed"))
        .when(date.isNull(), F.lit("bad_date"))
        .when(missing, F.lit("missing_value"))
        .when(bad_price, F.lit("bad_price"))
        .when(bad_volume, F.lit("bad_volume"))
    )
    line = F.coalesce(F.col(CORRUPT_RECORD), F.concat_ws(",", *[F.col(f) for f in _FIELDS]))
    return lines.select(
        F.col(FILE),
        F.regexp_extract(F.col(FILE), r"[^/]+/(.+)\.csv$", 1).alias(SYMBOL),
        date.alias(DATE),
        *[prices[name].alias(name) for name in PRICE_COLUMNS],
        F.when(_finite(volume), volume).cast("long").alias(VOLUME),
        reason.alias(REASON),
        (is_header & header_ok).alias("header_ok"),
        line.alias(LINE),
    )


def file_checks(parsed: DataFrame) -> DataFrame:
    """One row per file that yielded lines: header verdict and line counts per reason."""
    reason = F.col(REASON)
    return parsed.groupBy(FILE).agg(
        F.sum((reason == _HEADER).cast("long")).alias("headers"),
        F.sum(F.col("header_ok").cast("long")).alias("good_headers"),
        F.sum(reason.isNull().cast("long")).alias("good_rows"),
        *[F.sum((reason == r).cast("long")).alias(r) for r in LINE_REASONS],
    )


def header_verdict(headers: int, good_headers: int) -> bool:
    """A file's columns can be trusted: it has a header and every header line is the right one."""
    return headers >= 1 and good_headers == headers


@dataclass
class Ingestion:
    """The outcome of ``read_prices_and_quarantine``: the kept rows, the quarantined lines and
    the report.

    ``prices`` and ``quarantine`` are lazy DataFrames over a persisted parse; call
    ``release()`` after writing them.
    """

    prices: DataFrame
    quarantine: DataFrame
    report: IngestReport
    _cached: DataFrame

    def release(self) -> None:
        self._cached.unpersist()


def read_prices_and_quarantine(spark: SparkSession, root: str) -> Ingestion:
    """Read the dataset under ``root`` and split it into good rows and quarantined lines.

    The parse is persisted (memory, then disk) because it is used three times: the per-file
    verdicts, the quarantine and the prices; parsing the CSV text is the expensive part.
    """
    meta = read_metadata(spark, root)
    files = list_source_files(spark, root)
    if not files:
        raise DatasetError(f"no CSV files under {root}/etfs or {root}/stocks")
    report = IngestReport(files=len(files))
    folders = sorted({f.folder for f in files})
    parsed = parse_price_lines(read_price_lines(spark, root, folders)).persist(
        StorageLevel.MEMORY_AND_DISK
    )
    checks = {row[FILE]: row for row in file_checks(parsed).collect()}
    good_files: list[SourceFile] = []
    for source in files:
        row = checks.get(source.relative_path)
        if row is None:
            if source.size == 0:
                report.empty_files.append(source.relative_path)
            else:
                report.unreadable_files.append(source.relative_path)
            continue
        if not header_verdict(row["headers"], row["good_headers"]):
            report.bad_header_files.append(source.relative_path)
            continue
        good_files.append(source)
        report.rows += row["good_rows"]
        for reason in LINE_REASONS:
            report.quarantined_lines[reason] = report.quarantined_lines.get(reason, 0) + row[reason]
        if row["good_rows"] == 0:
            report.files_without_rows.append(source.relative_path)
    report.accepted_files = len(good_files)
    report.bad_headers = {
        name: first_line(spark, f"{root.rstrip('/')}/{name}")
        for name in report.bad_header_files[:HEADERS_SHOWN]
    }
    bad_header_lines = sum(
        checks[f]["headers"] + checks[f]["good_rows"] + sum(checks[f][r] for r in LINE_REASONS)
        for f in report.bad_header_files
    )
    report.quarantined_lines = {"bad_header": bad_header_lines, **report.quarantined_lines}

    meta_rows = meta.collect()
    meta_symbols = {row[SYMBOL] for row in meta_rows}
    file_symbols = {f.symbol for f in files}
    report.missing_files = sorted(meta_symbols - file_symbols)
    report.symbols_without_metadata = sorted({f.symbol for f in good_files} - meta_symbols)

    accepted = spark.createDataFrame(
        [(f.relative_path, True) for f in good_files], "file STRING, accepted BOOLEAN"
    )
    with_verdict = parsed.join(F.broadcast(accepted), FILE, "left")
    prices = (
        with_verdict.where(F.col("accepted") & F.col(REASON).isNull())
        .join(F.broadcast(meta), SYMBOL, "left")
        .select(*PRICES_COLUMNS)
    )
    quarantine = with_verdict.where(
        F.col("accepted").isNull() | (F.col(REASON).isNotNull() & (F.col(REASON) != _HEADER))
    ).select(
        F.col(FILE),
        F.when(F.col("accepted").isNull(), F.lit("bad_header"))
        .otherwise(F.col(REASON))
        .alias(REASON),
        F.col(LINE),
    )
    return Ingestion(prices=prices, quarantine=quarantine, report=report, _cached=parsed)
