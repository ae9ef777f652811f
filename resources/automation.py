"""Building blocks of the domains' automation conditions (``dg.AutomationCondition``), evaluated
by ``sensors.automation.automation_condition_sensor``.

A condition says *what state* a partition must be in to be requested (missing, its inputs
present), not *at what time* a job is guessed to be able to run; these two pieces cover what
the platform's hand-written bootstrap sensors and schedules used to say.
"""

import dagster as dg

AC = dg.AutomationCondition


def missing_once() -> dg.AutomationCondition:
    """Never materialized and not tried yet: requested once. While it is requested or running
    it is not asked for again, and a partition whose latest run failed waits for a person (a
    re-run from the UI), as a sensor's run key made it before: no retry loop every tick."""
    return (
        AC.missing() & ~AC.in_progress() & ~AC.newly_requested() & ~AC.execution_failed()
    ).with_label("missing, not yet tried")


def in_grace(opens: str, closes: str, label: str) -> dg.AutomationCondition:
    """True from a tick of the cron ``opens`` until the next tick of ``closes`` (UTC), e.g. the
    first minutes after a partition closed, while its last readings may still be arriving.

    Built from the cron ticks the evaluations see, so it is false on a fresh instance (no tick
    seen yet) and false when one evaluation spans both ticks (the daemon was down).
    """
    return AC.cron_tick_passed(opens).since(AC.cron_tick_passed(closes)).with_label(label)
