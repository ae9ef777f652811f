"""When the ESIOS assets refresh: their automation conditions (``dg.AutomationCondition``).

ESIOS publishes the next day's forecast every evening, so the month in progress (a partition,
see ``partitions.MONTHLY``) gains a day each day. Once a day after the evening tick it is
re-fetched and loaded into the SQL table in one run, where the blocking checks gate the load;
the CSV follows once that run has landed with its checks passing. Older months are never
requested: they are final and were backfilled by hand (``make run`` loads the brief's range).
"""

import dagster as dg

AC = dg.AutomationCondition

DAILY_REFRESH_CRON = "0 20 * * *"
"""20:00 Spanish time: after the evening publication of the next day's forecast."""
REFRESH_TIMEZONE = "Europe/Madrid"


def daily_current_month() -> dg.AutomationCondition:
    """The latest month (the one in progress) once after each daily tick. On the SQL load it also
    waits for its input's refresh since the tick, so both are requested together, in one run."""
    return AC.on_cron(DAILY_REFRESH_CRON, REFRESH_TIMEZONE).with_label(
        "month in progress, daily after 20:00 Europe/Madrid"
    )


def after_forecast_lands() -> dg.AutomationCondition:
    """Once after any month of the forecast was updated (the daily refresh or a backfill), when
    no month is being written and the latest run's blocking checks did not fail."""
    checks_failed = AC.any_deps_match(AC.any_checks_match(AC.check_failed(), blocking_only=True))
    return (
        AC.any_deps_match(AC.newly_updated()).since_last_handled()
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & ~checks_failed.with_label("a blocking check of the forecast failed")
    ).with_label("after the forecast is updated")
