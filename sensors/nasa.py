"""Keeps the ``nasa_queries`` partitions in step with ``nasa_assets/queries.yaml``.

Each tick adds the file's new queries as partitions, then asks for one ``nasa_job`` run for
every query partition (from the file, the UI or the CLI) whose images were never
materialized. The run key ``nasa:{query}`` makes that once per query and instance: a failed
run is retried from the UI, not in a loop, and re-materializing is a UI/CLI action.
"""

import dagster as dg

from nasa_assets.assets import nasa_images
from nasa_assets.jobs import nasa_job
from nasa_assets.partitions import NASA_QUERIES, add_queries_request
from nasa_assets.queries import QUERIES_FILE, load_queries


@dg.sensor(
    job=nasa_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds queries.yaml's queries as partitions and materializes new ones once.",
)
def nasa_queries_sensor(context: dg.SensorEvaluationContext):
    try:
        wanted = load_queries(QUERIES_FILE)
    except (OSError, ValueError) as exc:
        return dg.SkipReason(f"cannot read {QUERIES_FILE.name}: {exc}")
    known = context.instance.get_dynamic_partitions(NASA_QUERIES.name)
    new = [q for q in wanted if q not in known]
    queries = [*known, *new]
    materialized = context.instance.get_materialized_partitions(nasa_images.key)
    requests = [
        dg.RunRequest(run_key=f"nasa:{q}", partition_key=q)
        for q in queries
        if q not in materialized
    ]
    if not new and not requests:
        return dg.SkipReason(f"{len(queries)} queries, all materialized")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[add_queries_request(new)] if new else [],
    )
