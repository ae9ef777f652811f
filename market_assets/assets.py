"""Dagster wiring of the stock market group: CSVs -> prices -> rolling features -> volume model.

The stages are parquet datasets in the object store (``{S3_PREFIX}/market/<name>/``), each
rewritten whole and swapped in only when complete (``write_parquet_replacing``), so a re-run
gives the same data once and a failed run leaves the previous stage readable. The model is
published to the same store (``market_assets.model_store``), where the web service finds it.
"""

import time

import dagster as dg
import polars as pl
from dagster_pyspark import LazyPySparkResource

from market_assets.dataset import StockDataset
from market_assets.features import add_rolling_features
from market_assets.ingest import EXPECTED_HEADER, IngestReport, read_prices_and_quarantine
from market_assets.schema import (
    ADJ_CLOSE_ROLLING_MED,
    DATE,
    FEATURES,
    PRICE_COLUMNS,
    SECURITY_NAME,
    SYMBOL,
    VOL_MOVING_AVG,
    VOLUME,
    WINDOW_DAYS,
)
from resources.asset_metadata import column_schema
from resources.automation import missing_once
from resources.object_store import ObjectStore
from resources.spark import SPARK_POOL, to_spark_uri, write_parquet_replacing

GROUP = "market"
# Listing thousands of file names in metadata would drown the UI: the first ones and a count.
LISTED = 50
MODEL_MAX_BYTES = 50 * 1024 * 1024
# The source is a static dataset, so the group runs once, on a fresh instance (one request for
# the three stages), and then from the UI; a failed stage is not retried in a loop.
BOOTSTRAP = missing_once()


def dataset_uri(store: ObjectStore, name: str) -> str:
    """Where Spark reads/writes a stage: a local path, or s3a:// on S3."""
    return to_spark_uri(store.uri(store.key(GROUP, name)))


def scan_dataset(store: ObjectStore, name: str) -> pl.LazyFrame:
    """A stage read by polars (checks, model training) from the local folder or S3."""
    uri = store.uri(store.key(GROUP, name))
    return pl.scan_parquet(f"{uri}/*.parquet", storage_options=store.polars_storage_options())


_PRICES = [
    (SYMBOL, "VARCHAR", "Ticker, from the file name (stocks/AAPL.csv -> AAPL)."),
    (SECURITY_NAME, "VARCHAR", "From symbols_valid_meta.csv; null if the symbol is not listed."),
    (DATE, "DATE", "Trading day (YYYY-MM-DD)."),
    *[(name, "DOUBLE", f"{name} price, USD.") for name in PRICE_COLUMNS],
    (VOLUME, "BIGINT", "Shares traded that day."),
]
_FEATURES = [
    *_PRICES,
    (
        VOL_MOVING_AVG,
        "DOUBLE",
        f"Mean Volume over this trading day and the {WINDOW_DAYS - 1} before it; null for the "
        f"first {WINDOW_DAYS - 1} rows of a series.",
    ),
    (
        ADJ_CLOSE_ROLLING_MED,
        "DOUBLE",
        f"Exact median Adj Close over the same {WINDOW_DAYS} trading days; null likewise.",
    ),
]


def listing(names: list[str]) -> str:
    shown = ", ".join(names[:LISTED])
    return shown + (f" ... (+{len(names) - LISTED} more)" if len(names) > LISTED else "")


def _ingest_metadata(report: IngestReport) -> dict:
    metadata: dict = {
        "files": report.files,
        "accepted_files": report.accepted_files,
        "dagster/row_count": report.rows,
        "quarantined_lines": sum(report.quarantined_lines.values()),
    }
    metadata.update({f"quarantined/{k}": v for k, v in report.quarantined_lines.items()})
    if report.bad_header_files:
        metadata["expected_header"] = EXPECTED_HEADER
    for label, names in (
        ("missing_files", report.missing_files),
        ("empty_files", report.empty_files),
        ("unreadable_files", report.unreadable_files),
        ("bad_header_files", report.header_problems()),
        ("files_without_rows", report.files_without_rows),
        ("symbols_without_metadata", report.symbols_without_metadata),
    ):
        metadata[f"{label}_count"] = len(names)
        if names:
            metadata[label] = dg.MetadataValue.text(listing(names))
    return metadata


@dg.asset(
    group_name=GROUP,
    kinds={"pyspark", "parquet"},
    pool=SPARK_POOL,
    metadata=column_schema(*_PRICES),
    automation_condition=BOOTSTRAP,
)
def stock_prices(
    context: dg.AssetExecutionContext,
    pyspark: LazyPySparkResource,
    stock_dataset: StockDataset,
    object_store: ObjectStore,
) -> dg.MaterializeResult:
    """Every daily price row of every symbol, typed, with its security name, as parquet.

    One Spark read of all ``etfs/*.csv`` and ``stocks/*.csv`` (STOCK_DATASET_DIR, or the
    simulated dataset). Bad lines and files are never fatal: they are quarantined to
    ``stock_prices_quarantine/`` (file, reason, line) and counted here; metadata symbols
    without a file are listed. Only a dataset without a single usable row fails the run,
    before writing, so the previous prices stay in place.
    """
    started = time.perf_counter()
    root = stock_dataset.root()
    context.log.info(f"reading the stock CSVs under {root}")
    result = read_prices_and_quarantine(pyspark.spark_session, root)
    try:
        for problem in result.report.header_problems()[:LISTED]:
            context.log.warning(
                f"quarantined, wrong header: {problem}; expected {EXPECTED_HEADER!r}"
            )
        if reason := result.report.nothing_usable():
            raise dg.Failure(f"{root}: {reason}; the previous stock_prices dataset is kept")
        path = dataset_uri(object_store, "stock_prices")
        write_parquet_replacing(result.prices, path)
        quarantine_path = dataset_uri(object_store, "stock_prices_quarantine")
        # repartition, not coalesce: the filter over the whole parse stays parallel.
        write_parquet_replacing(result.quarantine.repartition(1), quarantine_path)
    finally:
        result.release()
    report = result.report
    context.log.info(
        f"{report.rows:,} rows from {report.accepted_files:,}/{report.files:,} files; "
        f"quarantined lines: {report.quarantined_lines}; "
        f"{len(report.missing_files)} metadata symbols have no file"
    )
    return dg.MaterializeResult(
        metadata={
            "source": stock_dataset.origin,
            "dataset": root,
            **_ingest_metadata(report),
            "path": path,
            "quarantine_path": quarantine_path,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pyspark", "parquet"},
    pool=SPARK_POOL,
    deps=[stock_prices],
    metadata=column_schema(*_FEATURES),
    automation_condition=BOOTSTRAP,
)
def stock_features(
    context: dg.AssetExecutionContext, pyspark: LazyPySparkResource, object_store: ObjectStore
) -> dg.MaterializeResult:
    """``stock_prices`` plus the 30-trading-day ``vol_moving_avg`` and exact
    ``adj_close_rolling_med`` per symbol (``market_assets.features``), as parquet."""
    started = time.perf_counter()
    spark = pyspark.spark_session
    prices = spark.read.parquet(dataset_uri(object_store, "stock_prices"))
    path = dataset_uri(object_store, "stock_features")
    write_parquet_replacing(add_rolling_features(prices), path)
    counts = (
        scan_dataset(object_store, "stock_features")
        .select(
            pl.len().alias("rows"),
            pl.col(VOL_MOVING_AVG).is_not_null().sum().alias("with_features"),
            pl.col(SYMBOL).n_unique().alias("symbols"),
        )
        .collect()
        .row(0, named=True)
    )
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["rows"],
            "rows_with_features": counts["with_features"],
            "rows_without_full_window": counts["rows"] - counts["with_features"],
            "symbols": counts["symbols"],
            "path": path,
            "seconds": round(time.perf_counter() - started, 1),
        }
    )


class VolumeModelConfig(dg.Config):
    """Training knobs; the defaults keep the reference forest's memory bounded (see docs)."""

    reference_train_rows: int = 100_000
    eval_rows: int = 1_000_000


@dg.asset(
    group_name=GROUP,
    kinds={"scikit-learn", "polars"},
    deps=[stock_features],
    automation_condition=BOOTSTRAP,
    metadata={
        **column_schema(
            (VOL_MOVING_AVG, "DOUBLE", "Input 1, in this order."),
            (ADJ_CLOSE_ROLLING_MED, "DOUBLE", "Input 2."),
            (VOLUME, "BIGINT", "Predicted: shares traded that day (rounded, >= 0)."),
        ),
        "object": "market/volume_model/current.json -> versions/<version>/model.skops",
    },
)
def volume_model(
    context: dg.AssetExecutionContext, config: VolumeModelConfig, object_store: ObjectStore
) -> dg.MaterializeResult:
    """A regressor predicting a day's Volume from ``vol_moving_avg`` and
    ``adj_close_rolling_med``: the brief's random forest against gradient boosting, scored on
    the brief's random split and on a time split (no look-ahead); the best is refit on every
    row, published with its metrics and training log, and served by ``/predict``."""
    # scikit-learn is imported here, not at definitions load (it costs ~1 s).
    from market_assets.model import train_volume_model
    from market_assets.model_store import publish_model

    frame = (
        scan_dataset(object_store, "stock_features")
        .select(SYMBOL, DATE, VOLUME, *FEATURES)
        .collect()
    )
    report = train_volume_model(
        frame,
        reference_train_rows=config.reference_train_rows,
        eval_rows=config.eval_rows,
        log=context.log.info,
    )
    metrics = report.metadata()
    published = publish_model(
        object_store, report.estimator, metrics=metrics, log_text=report.log_text()
    )
    return dg.MaterializeResult(
        metadata={
            "best": report.best,
            "model_version": published.version,
            "model_bytes": published.model_bytes,
            "model_uri": object_store.uri(published.model_key),
            "training_log_uri": object_store.uri(published.log_key),
            "rows": report.rows,
            "dropped_rows": report.dropped_rows,
            "time_cutoff": str(report.time_cutoff),
            **metrics,
        }
    )


# --- checks: what the next stage and the web service rely on ------------------------------


MARKET_ASSETS = [stock_prices, stock_features, volume_model]
