"""The ESIOS partitions: Spanish local months (Europe/Madrid) from January 2017, the brief's start.

Spain publishes the forecast in local time, so a month is its local hours: 743 in March,
745 in October. The month in progress is a partition too (``end_offset=1``): the forecast is
day-ahead, so its hours up to tomorrow are published, and it is refreshed daily
(``esios_assets.automation``).
"""

from datetime import date, timedelta

import dagster as dg

MONTHLY = dg.MonthlyPartitionsDefinition(
    start_date="2017-01-01", timezone="Europe/Madrid", end_offset=1
)


def months_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> list[date]:
    """The run's months, from its partition keys (a checks-only run has no time window)."""
    keys = context.partition_key_range
    months, current = [], date.fromisoformat(keys.start)
    while current <= date.fromisoformat(keys.end):
        months.append(current)
        current = (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    return months
