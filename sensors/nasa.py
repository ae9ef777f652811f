"""Keeps the ``nasa_queries`` partitions in step with ``nasa_assets/queries.yaml``.

Each tick adds the file's new queries as partitions; it requests no run. A new partition,
from the file, the UI or the CLI alike, is materialized once by the NASA assets' automation
condition (``nasa_assets.assets.new_query_once``, evaluated by ``automation_condition_sensor``):
a failed run is retried from the UI, not in a loop, and re-materializing is a UI/CLI action.
"""

import dagster as dg

from nasa_assets.partitions import NASA_QUERIES, add_queries_request
from nasa_assets.queries import QUERIES_FILE, load_queries


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds queries.yaml's queries as nasa_queries partitions (the assets' "
    "automation condition then materializes each new one once).",
)
def nasa_queries_sensor(context: dg.SensorEvaluationContext):
    try:
        wanted = load_queries(QUERIES_FILE)
    except (OSError, ValueError) as exc:
        return dg.SkipReason(f"cannot read {QUERIES_FILE.name}: {exc}")
    known = set(context.instance.get_dynamic_partitions(NASA_QUERIES.name))
    new = [q for q in wanted if q not in known]
    if not new:
        return dg.SkipReason(f"{len(wanted)} queries in {QUERIES_FILE.name}, all registered")
    return dg.SensorResult(dynamic_partitions_requests=[add_queries_request(new)])
