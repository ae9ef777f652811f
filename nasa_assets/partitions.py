"""The NASA partitions: one dynamic partition per search query (``nasa_queries``).

Queries come from ``queries.yaml`` (added by ``sensors.nasa``), the UI, or
``python -m nasa_assets.queries add``.
"""

import dagster as dg

from nasa_assets.queries import PARTITIONS_NAME

NASA_QUERIES = dg.DynamicPartitionsDefinition(name=PARTITIONS_NAME)
