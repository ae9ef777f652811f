"""Dagster wiring of the NASA Image Library group: search -> staged results -> warehouse table
-> images in S3.

One dynamic partition per search query (``nasa_queries``). ``nasa_search_results`` pages
through the API (de-duplicated, optionally sampled) and stages the rows as
``{S3_PREFIX}/nasa/{query}/search_results.parquet``; ``nasa_image_search`` writes them into
``nasa.nasa_image_search``; ``nasa_images`` reads that table read-only and fans the downloads
out over Spark tasks into ``.../images/`` and ``.../metadata/`` of the object store, skipping
what is already there.

Only ``nasa_image_search`` holds the ``duckdb`` pool's one slot, and it does no API call: the
paging (minutes under the hourly rate limit, retries with backoff) and the downloads run
outside the pool, so they never stop the other warehouse writers.
"""

import json
import time
from collections import Counter
from dataclasses import dataclass

import dagster as dg
import polars as pl
from dagster_duckdb import DuckDBResource
from dagster_pyspark import LazyPySparkResource
from pydantic import Field

from nasa_assets.client import NasaImagesResource
from nasa_assets.download import (
    DOWNLOADED,
    FAILED,
    DownloadJob,
    download_partition,
    summarize,
)
from nasa_assets.keys import query_folder, safe_key_component, search_results_key, stored_ids
from nasa_assets.partitions import NASA_QUERIES
from nasa_assets.queries import require_normal_query
from nasa_assets.search import DEFAULT_RENDITION, RENDITIONS, sample, search_frame
from resources.asset_metadata import column_schema, warehouse_table
from resources.automation import missing_once
from resources.http import ApiAuthError
from resources.object_store import ObjectStore
from resources.settings import load_settings
from resources.spark import SPARK_POOL, collect_with_progress
from resources.warehouse import DUCKDB_POOL, read_only_connection, table_exists

GROUP = "nasa"
SCHEMA = "nasa"
LISTED_FAILURES = 20

_SEARCH_COLUMNS = [
    ("query", "VARCHAR", "The search text (the partition key)."),
    ("nasa_id", "VARCHAR", "NASA's id of the item; unique per query."),
    ("title", "VARCHAR", "Item title."),
    ("description", "VARCHAR", "Item description; null when NASA publishes none."),
    ("date_created", "TIMESTAMP WITH TIME ZONE", "When the image was made (UTC)."),
    ("center", "VARCHAR", "NASA center that holds the item (JPL, GSFC...)."),
    ("keywords", "VARCHAR[]", "Keywords; empty when NASA publishes none."),
    ("image_href", "VARCHAR", "Preview image the search returned; null when it has none."),
    ("manifest_href", "VARCHAR", "The item's collection.json (every published file)."),
    ("rank", "INTEGER", "Position in the search results (1-based, first occurrence)."),
]
_IMAGE_METADATA_FIELDS = [
    ("query", "VARCHAR", "The search text."),
    ("nasa_id", "VARCHAR", "NASA's id (the object name is its key-safe form)."),
    ("title", "VARCHAR", "Item title."),
    ("description", "VARCHAR", "Item description or null."),
    ("date_created", "VARCHAR", "ISO 8601, UTC."),
    ("center", "VARCHAR", "NASA center."),
    ("keywords", "VARCHAR[]", "Keywords."),
    ("preview_href", "VARCHAR", "The search's preview link."),
    ("manifest_href", "VARCHAR", "The item's collection.json."),
    ("rendition", "VARCHAR", "orig, large, medium, small or thumb: what was stored."),
    ("image_href", "VARCHAR", "The file downloaded."),
    ("image_key", "VARCHAR", "Object key of the stored image."),
    ("bytes", "BIGINT", "Image size."),
    ("sha256", "VARCHAR", "Image checksum."),
]


def new_query_once() -> dg.AutomationCondition:
    """Every stage of a query whose images were never built nor failed, once (one run, search
    first). Scoped by ``nasa_images`` so that queries built before a new stage existed are not
    searched again after a deploy; ``missing_once`` makes a failed run wait for a person."""
    ac = dg.AutomationCondition
    images_never_tried = ac.asset_matches(
        "nasa_images", ac.missing() & ~ac.execution_failed() & ~ac.in_progress()
    )
    return (
        missing_once() & images_never_tried & ~ac.any_deps_missing() & ~ac.any_deps_in_progress()
    ).with_label("new query, once")


class NasaSearchConfig(dg.Config):
    sampling_factor: int | None = Field(
        default=None,
        description="Keep one result in N, chosen by a hash of nasa_id (deterministic). "
        "Unset: SEARCH_RESULT_SAMPLING_FACTOR, else 1 (keep all).",
    )


def _query(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The partition key, refused unless already in normal form (a retry cannot fix it)."""
    try:
        return require_normal_query(context.partition_key)
    except ValueError as exc:
        raise dg.Failure(
            f"partition {context.partition_key!r}: {exc}; add that partition and delete this one",
            allow_retries=False,
        ) from None


@dg.asset(
    group_name=GROUP,
    kinds={"python", "polars", "s3"},
    partitions_def=NASA_QUERIES,
    automation_condition=new_query_once(),
    retry_policy=dg.RetryPolicy(max_retries=2, delay=30, backoff=dg.Backoff.EXPONENTIAL),
    metadata=column_schema(*_SEARCH_COLUMNS),
)
def nasa_search_results(
    context: dg.AssetExecutionContext,
    config: NasaSearchConfig,
    nasa_library: NasaImagesResource,
    object_store: ObjectStore,
) -> dg.MaterializeResult:
    """The NASA Image Library's image results for one query: every page up to the API's
    100-page cap, repeats across pages dropped, optionally sampled (``sampling_factor``),
    staged as ``{S3_PREFIX}/nasa/{query}/search_results.parquet`` for ``nasa_image_search``.
    Not in the ``duckdb`` pool: the API calls must not hold the warehouse writers' slot."""
    query = _query(context)
    factor = config.sampling_factor or load_settings().search_result_sampling_factor
    if factor < 1:
        raise dg.Failure(f"sampling_factor must be >= 1 (keep one result in N), got {factor}")

    def on_page(page: int, result) -> None:
        if page == 1 or page % 10 == 0:
            context.log.info(f"{query!r} page {page}: {len(result.rows)} items")

    client = nasa_library.client(logger=context.log)
    try:
        result = client.search(query, on_page=on_page)
        requests = client.api.stats.requests
    except ApiAuthError as exc:
        # A rejected key stays rejected: the step's retry policy would only wait for it.
        raise dg.Failure(str(exc), allow_retries=False) from None
    finally:
        client.close()
    kept = sample(result.rows, factor)
    frame = search_frame(kept)
    context.log.info(
        f"{query!r}: {len(result.rows)} distinct results in {result.pages} pages "
        f"({result.duplicates} repeats dropped), {len(kept)} kept with sampling 1/{factor}; "
        f"ended: {result.end}"
    )
    location = object_store.put_parquet(object_store.key(search_results_key(query)), frame)
    return dg.MaterializeResult(
        metadata={
            "source": nasa_library.source.mode,
            "query": query,
            "location": location,
            "total_hits": result.total_hits if result.total_hits is not None else -1,
            "pages": result.pages,
            "search_ended": result.end,
            "distinct_results": len(result.rows),
            "duplicates_dropped": result.duplicates,
            "items_without_id": len(result.skipped),
            "sampling_factor": factor,
            "dagster/row_count": frame.height,
            "api_requests": requests,
        }
    )


def staged_search_results(store: ObjectStore, query: str) -> pl.DataFrame:
    """The rows ``nasa_search_results`` staged for ``query``; a clear failure when none are."""
    key = store.key(search_results_key(query))
    if not store.exists(key):
        raise dg.Failure(
            f"no search results staged for {query!r} at {store.uri(key)}: materialize "
            "nasa_search_results for this partition first",
            allow_retries=False,
        )
    return store.get_parquet(key)


@dg.asset(
    group_name=GROUP,
    kinds={"polars", "duckdb"},
    partitions_def=NASA_QUERIES,
    automation_condition=new_query_once(),
    pool=DUCKDB_POOL,
    deps=[nasa_search_results],
    metadata=warehouse_table(SCHEMA, *_SEARCH_COLUMNS, partition_expr="query"),
)
def nasa_image_search(
    context: dg.AssetExecutionContext,
    nasa_library: NasaImagesResource,
    object_store: ObjectStore,
    warehouse: DuckDBResource,
) -> pl.DataFrame:
    """The query's search results (``nasa_search_results``) as rows of the warehouse table:
    the step that holds the ``duckdb`` pool slot only reads the staged file and writes."""
    query = _query(context)
    frame = staged_search_results(object_store, query)
    if frame.is_empty():
        # The IO manager skips empty frames, which would leave this query's old rows behind.
        with warehouse.get_connection() as conn:
            if table_exists(conn, SCHEMA, "nasa_image_search"):
                conn.execute(f"delete from {SCHEMA}.nasa_image_search where query = ?", [query])
    context.add_output_metadata(
        {
            "source": nasa_library.source.mode,
            "query": query,
            "dagster/row_count": frame.height,
            "without_description": frame["description"].null_count(),
            "without_preview": frame["image_href"].null_count(),
        }
    )
    return frame


class NasaImagesConfig(dg.Config):
    rendition: str = Field(
        default=DEFAULT_RENDITION,
        description="Preferred file: orig, large, medium, small or thumb (the closest one "
        "published is taken when it is missing).",
    )
    tasks: int = Field(
        default=0, description="Spark tasks sharing the downloads; 0: the session's parallelism."
    )
    max_failure_share: float = Field(
        default=0.1,
        description="Fail the run when more than this share of the attempted items failed "
        "(what was stored is kept either way).",
    )


def completed_ids(store: ObjectStore, query: str) -> set[str]:
    """Key-safe ids of the query whose image and metadata JSON are both in the store."""
    images, metadata = stored_ids(store.list_keys(store.key(query_folder(query)) + "/"), query)
    return images & metadata


def _failure_table(failures: list[dict]) -> str:
    lines = ["| nasa_id | error |", "| --- | --- |"]
    for outcome in failures[:LISTED_FAILURES]:
        error = str(outcome["error"]).replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {outcome['nasa_id']} | {error} |")
    if len(failures) > LISTED_FAILURES:
        lines.append(f"| ... | {len(failures) - LISTED_FAILURES} more in failures.json |")
    return "\n".join(lines)


def _check_images_config(config: NasaImagesConfig) -> None:
    if config.rendition not in RENDITIONS:
        raise dg.Failure(
            f"rendition must be one of {', '.join(RENDITIONS)}, got {config.rendition!r}"
        )
    if not 0.0 <= config.max_failure_share <= 1.0:
        raise dg.Failure(f"max_failure_share must be in [0, 1], got {config.max_failure_share}")
    if config.tasks < 0:
        raise dg.Failure(f"tasks must be >= 0 (0: Spark's parallelism), got {config.tasks}")


@dataclass(frozen=True)
class _DownloadPlan:
    """The query's search rows split into those already stored and those to download."""

    items: int  # search rows of the query
    to_download: list[dict]  # search rows whose image or metadata JSON is not stored yet
    skipped: int  # search rows already stored


def _plan_downloads(
    context: dg.AssetExecutionContext, query: str, search: pl.DataFrame, store: ObjectStore
) -> _DownloadPlan:
    rows = search.to_dicts()
    done = completed_ids(store, query)
    todo = [row for row in rows if safe_key_component(row["nasa_id"]) not in done]
    skipped = len(rows) - len(todo)
    context.log.info(
        f"{query!r}: {len(rows)} items, {skipped} already stored, {len(todo)} to download"
    )
    return _DownloadPlan(items=len(rows), to_download=todo, skipped=skipped)


def _download_on_spark(
    context: dg.AssetExecutionContext,
    config: NasaImagesConfig,
    query: str,
    todo: list[dict],
    pyspark: LazyPySparkResource,
    nasa_library: NasaImagesResource,
    store: ObjectStore,
) -> tuple[list[dict], int]:
    """One outcome per item of ``todo`` and the Spark tasks they were spread over, logging
    tasks as they finish; nothing to do starts no Spark session (0 tasks)."""
    if not todo:
        return [], 0
    sc = pyspark.spark_session.sparkContext
    tasks = min(config.tasks or sc.defaultParallelism, len(todo))
    job = DownloadJob(
        client=nasa_library.spec().share(tasks),
        store=store.spec(),
        query=query,
        rendition=config.rendition,
    )
    rdd = sc.parallelize(todo, tasks).mapPartitionsWithIndex(
        lambda index, part: download_partition(job, index, part)
    )
    outcomes = collect_with_progress(
        rdd,
        lambda done_tasks, total: context.log.info(
            f"{query!r}: {done_tasks}/{total} Spark tasks done"
        ),
        description=f"nasa_images {query}",
    )
    return outcomes, tasks


def _summarize_outcomes(
    context: dg.AssetExecutionContext, query: str, outcomes: list[dict]
) -> dict:
    """``summarize(outcomes)``, with one log line per Spark partition."""
    summary = summarize(outcomes)
    for index, part in summary["partitions"].items():
        context.log.info(
            f"{query!r} Spark partition {index}: {part[DOWNLOADED]} downloaded, "
            f"{part[FAILED]} failed, {part['bytes'] / 1e6:.1f} MB, {part['seconds']:.1f} s"
        )
    return summary


def _write_failures(store: ObjectStore, folder: str, outcomes: list[dict]) -> list[dict]:
    """The failed outcomes, also written (id and error; ``[]`` when none) to failures.json."""
    failures = [o for o in outcomes if o["status"] == FAILED]
    store.put_bytes(
        f"{folder}/failures.json",
        json.dumps(
            [{"nasa_id": o["nasa_id"], "error": o["error"]} for o in failures], indent=1
        ).encode(),
        "application/json",
    )
    return failures


def _images_metadata(
    *,
    source: str,
    query: str,
    location: str,
    plan: _DownloadPlan,
    outcomes: list[dict],
    summary: dict,
    failures: list[dict],
    tasks: int,
    seconds: float,
) -> dict:
    renditions = Counter(o["rendition"] for o in outcomes if o["status"] == DOWNLOADED)
    metadata = {
        "source": source,
        "query": query,
        "location": location,
        "items": plan.items,
        "downloaded": summary[DOWNLOADED],
        "skipped": plan.skipped,
        "failed": summary[FAILED],
        "bytes": summary["bytes"],
        "spark_tasks": tasks,
        "seconds": round(seconds, 2),
        "images_per_second": round(summary[DOWNLOADED] / seconds, 1) if seconds else 0.0,
        "renditions": dict(renditions),
        "dagster/row_count": plan.items - summary[FAILED],
    }
    if failures:
        metadata["failures"] = dg.MetadataValue.md(_failure_table(failures))
    return metadata


def _fail_above_failure_share(
    config: NasaImagesConfig, plan: _DownloadPlan, summary: dict, metadata: dict
) -> None:
    """``dg.Failure`` (with the metadata) when more than ``max_failure_share`` of the
    attempted downloads failed."""
    attempted = len(plan.to_download)
    share = summary[FAILED] / attempted if attempted else 0.0
    if share > config.max_failure_share:
        raise dg.Failure(
            description=f"{summary[FAILED]} of {attempted} downloads failed ({share:.0%}), more "
            f"than max_failure_share {config.max_failure_share:.0%}; the "
            f"{summary[DOWNLOADED]} stored are kept and a re-run retries only the rest",
            metadata=metadata,
        )


def search_rows(warehouse: DuckDBResource, query: str) -> pl.DataFrame:
    """The query's rows of ``nasa.nasa_image_search``, in search order, read on a read-only
    connection (retried while a writer holds the file): reading takes no writer's lock."""
    with read_only_connection(warehouse.database) as conn:
        if not table_exists(conn, SCHEMA, "nasa_image_search"):
            raise dg.Failure(
                f"{SCHEMA}.nasa_image_search does not exist: materialize nasa_image_search first"
            )
        return conn.execute(
            f"select * from {SCHEMA}.nasa_image_search where query = ? order by rank", [query]
        ).pl()


@dg.asset(
    group_name=GROUP,
    kinds={"pyspark", "s3"},
    partitions_def=NASA_QUERIES,
    automation_condition=new_query_once(),
    pool=SPARK_POOL,
    deps=[nasa_image_search],
    metadata=column_schema(*_IMAGE_METADATA_FIELDS),
)
def nasa_images(
    context: dg.AssetExecutionContext,
    config: NasaImagesConfig,
    warehouse: DuckDBResource,
    pyspark: LazyPySparkResource,
    nasa_library: NasaImagesResource,
    object_store: ObjectStore,
) -> dg.MaterializeResult:
    """The query's images and one metadata JSON each (columns below) in the object store, at
    ``{S3_PREFIX}/nasa/{query}/images/{nasa_id}{ext}`` and ``.../metadata/{nasa_id}.json``.

    Spark spreads the items over tasks, each with one HTTP session and its share of the
    hourly request budget. Items already stored are skipped, so a re-run or a resumed run only
    downloads what is missing; per-item failures are listed and fail the run only above
    ``max_failure_share``."""
    query = _query(context)
    _check_images_config(config)
    started = time.perf_counter()
    folder = object_store.key(query_folder(query))
    plan = _plan_downloads(context, query, search_rows(warehouse, query), object_store)
    outcomes, tasks = _download_on_spark(
        context, config, query, plan.to_download, pyspark, nasa_library, object_store
    )
    summary = _summarize_outcomes(context, query, outcomes)
    failures = _write_failures(object_store, folder, outcomes)
    seconds = time.perf_counter() - started
    metadata = _images_metadata(
        source=nasa_library.source.mode,
        query=query,
        location=object_store.uri(folder),
        plan=plan,
        outcomes=outcomes,
        summary=summary,
        failures=failures,
        tasks=tasks,
        seconds=seconds,
    )
    context.log.info(
        f"{query!r}: {summary[DOWNLOADED]} downloaded ({summary['bytes'] / 1e6:.1f} MB), "
        f"{plan.skipped} skipped, {summary[FAILED]} failed in {seconds:.1f} s"
    )
    _fail_above_failure_share(config, plan, summary, metadata)
    return dg.MaterializeResult(metadata=metadata)


NASA_ASSETS = [nasa_search_results, nasa_image_search, nasa_images]
