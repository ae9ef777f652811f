"""Checks of the NASA group: unique, key-safe ids per query, and every listed image stored."""

from pathlib import Path

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource

from nasa_assets.assets import (
    LISTED_FAILURES,
    SCHEMA,
    completed_ids,
    nasa_image_search,
    nasa_images,
)
from nasa_assets.keys import safe_key_component
from resources.object_store import ObjectStore
from resources.warehouse import DUCKDB_POOL, read_only_connection, table_exists


def _checked_query(context: dg.AssetCheckExecutionContext) -> str | None:
    op_context = context.op_execution_context
    return op_context.partition_key if op_context.has_partition_key else None


def _search_ids(
    warehouse: DuckDBResource, query: str | None, *, read_only: bool = False
) -> pl.DataFrame | None:
    """(query, nasa_id) of one query, or of all when run alone; None before the table exists.
    ``read_only``: for a check outside the ``duckdb`` pool (no writer's lock taken)."""
    if read_only and not Path(warehouse.database).exists():
        return None
    connection = (
        read_only_connection(warehouse.database) if read_only else warehouse.get_connection()
    )
    with connection as conn:
        if not table_exists(conn, SCHEMA, "nasa_image_search"):
            return None
        return conn.execute(
            f"select query, nasa_id from {SCHEMA}.nasa_image_search"
            + (" where query = ?" if query else ""),
            [query] if query else [],
        ).pl()


@dg.asset_check(asset=nasa_image_search, blocking=True, pool=DUCKDB_POOL)
def nasa_search_ids_unique(
    context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource
) -> dg.AssetCheckResult:
    """Each query lists a nasa_id once, never null, and no two ids share an object key
    (``nasa_images`` would otherwise overwrite one image with another)."""
    frame = _search_ids(warehouse, _checked_query(context))
    if frame is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "table missing"})
    keys = frame.with_columns(
        pl.col("nasa_id").map_elements(safe_key_component, return_dtype=pl.String).alias("key")
    )
    null_ids = frame["nasa_id"].null_count()
    duplicate_ids = frame.height - frame.select("query", "nasa_id").n_unique()
    key_collisions = frame.height - keys.select("query", "key").n_unique() - duplicate_ids
    return dg.AssetCheckResult(
        passed=null_ids == 0 and duplicate_ids == 0 and key_collisions == 0,
        metadata={
            "rows": frame.height,
            "null_ids": null_ids,
            "duplicate_ids": duplicate_ids,
            "key_collisions": key_collisions,
        },
    )


@dg.asset_check(asset=nasa_images, additional_deps=[nasa_image_search])
def nasa_images_stored(
    context: dg.AssetCheckExecutionContext,
    object_store: ObjectStore,
    warehouse: DuckDBResource,
) -> dg.AssetCheckResult:
    """Every search result of the query has its image and metadata JSON in the store (a
    warning, not a block: failed items are retried by the next run). It lists the object
    store, so it reads the table read-only outside the ``duckdb`` pool."""
    frame = _search_ids(warehouse, _checked_query(context), read_only=True)
    if frame is None:
        return dg.AssetCheckResult(passed=False, metadata={"reason": "table missing"})
    missing: list[str] = []
    for (name,), group in frame.group_by("query"):
        done = completed_ids(object_store, name)
        missing += [f"{name}/{i}" for i in group["nasa_id"] if safe_key_component(i) not in done]
    return dg.AssetCheckResult(
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "expected": frame.height,
            "missing": len(missing),
            "missing_ids": ", ".join(missing[:LISTED_FAILURES]) or "none",
        },
    )


NASA_CHECKS = [nasa_search_ids_unique, nasa_images_stored]
