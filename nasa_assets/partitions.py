"""The NASA partitions: one dynamic partition per search query (``nasa_queries``).

Queries come from ``queries.yaml`` (added by ``sensors.nasa``), the UI, or
``python -m nasa_assets.queries add``. Keys are added only in normal form (``moon``, never
``"moon "``): the UI cannot be checked when it adds one, so the assets refuse such a key.
"""

import dagster as dg

from nasa_assets.queries import PARTITIONS_NAME, require_normal_query

NASA_QUERIES = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)


def add_queries_request(queries: list[str]) -> dg.AddDynamicPartitionsRequest:
    """The request adding ``queries`` as partitions; ``ValueError`` for a key not in normal
    form (naming it and its normal form), so nothing is added."""
    return NASA_QUERIES.build_add_request([require_normal_query(q) for q in queries])
