"""When the nightly ETL and the temperature forecast run: their automation conditions.

They replace a 00:20 ETL schedule, a 00:50 retraining schedule that assumed the ETL had
finished, an hourly schedule and a bootstrap sensor. Each asset says what it waits for:

- the ETL's daily partitions: each of the last ``ETL_DAYS`` days once, while missing (a fresh
  instance gets six days in one request; later, yesterday), never in 00:00-00:20 UTC;
- ``temperature_model``: once the ETL has produced yesterday, if there is no model yet or it
  has not been retrained since midnight UTC: once a day, never on a day-old table;
- ``temperature_actuals``: each of the last ``ACTUAL_HOURS`` hours once, while missing, never
  in the first two minutes of an hour;
- ``temperature_predictions``: the latest hour, with its actuals (in the same run), once a
  model has been materialized;
- ``temperature_accuracy``: the latest hour, with its actual, once a prediction of the week
  before it exists (on a fresh instance, from the hour after the first prediction).

The grace periods keep the schedules' timing: the minute polls of the hour's (day's) last
minute and late rows are in before the partition is read.
"""

from datetime import timedelta

import dagster as dg

from resources.automation import in_grace, missing_once

AC = dg.AutomationCondition

ETL_DAYS = 6
"""Days of hourly observations the model needs: five to train on and one to score it."""
ACTUAL_HOURS = 25
"""Hours of actuals the first prediction needs (24 inputs) and the hour it is scored on."""


def nightly_etl() -> dg.AutomationCondition:
    """One daily partition of the raw-readings ETL: the last six days, once each."""
    return (
        AC.in_latest_time_window(timedelta(days=ETL_DAYS))
        & missing_once()
        & ~in_grace("0 0 * * *", "20 0 * * *", "00:00-00:20 UTC grace")
    ).with_label(f"nightly ETL: last {ETL_DAYS} days, once")


def daily_retrain() -> dg.AutomationCondition:
    """The daily model: after the ETL has produced yesterday, at most once per UTC day."""
    yesterday_produced = AC.all_deps_match(AC.in_latest_time_window() & ~AC.missing()).with_label(
        "the ETL has produced yesterday"
    )
    no_model = (AC.missing() & ~AC.execution_failed()).with_label("no model yet")
    new_day = (
        AC.cron_tick_passed("0 0 * * *")
        .since_last_handled()
        .with_label("not trained since midnight UTC")
    )
    return (
        yesterday_produced
        & (no_model | new_day)
        & ~AC.any_deps_in_progress()
        & ~AC.in_progress()
        & ~AC.newly_requested()
    ).with_label("daily retrain after the ETL")


def hourly_actuals() -> dg.AutomationCondition:
    """One observed hour: the last 25 hours, once each, after the hour's two-minute grace."""
    return (
        AC.in_latest_time_window(timedelta(hours=ACTUAL_HOURS))
        & missing_once()
        & ~in_grace("0 * * * *", "2 * * * *", ":00-:02 grace")
    ).with_label(f"last {ACTUAL_HOURS} hours, once")


def _model_materialized() -> dg.AutomationCondition:
    # Requested in the same tick is not enough: the model runs on its own, unpartitioned.
    return ~AC.any_deps_match(AC.missing()).allow(
        dg.AssetSelection.assets("temperature_model")
    ).with_label("temperature_model materialized")


def hourly_prediction() -> dg.AutomationCondition:
    """The latest hour's prediction, once its 24 input hours are there (or requested with it)."""
    return (
        AC.in_latest_time_window()
        & missing_once()
        & _model_materialized()
        & ~AC.any_deps_missing()
        & ~AC.any_deps_in_progress()
    ).with_label("latest hour, with its inputs")


def hourly_accuracy() -> dg.AutomationCondition:
    """The latest hour's score, with (or after) the hour's actual, once there is a prediction to
    score: the asset reads the week of predictions before the hour, so before the first one
    its table does not exist. An hour without a pair is a row-less success, not a reason to
    wait."""
    actual_of_the_hour = (
        AC.any_deps_match(AC.in_latest_time_window() & (AC.will_be_requested() | ~AC.missing()))
        .allow(dg.AssetSelection.assets("temperature_actuals"))
        .with_label("the hour's actual present or requested")
    )
    a_prediction_to_score = (
        AC.any_deps_match(~AC.missing())
        .allow(dg.AssetSelection.assets("temperature_predictions"))
        .with_label("a prediction in the week before the hour")
    )
    return (
        AC.in_latest_time_window()
        & missing_once()
        & actual_of_the_hour
        & a_prediction_to_score
        & ~AC.any_deps_in_progress()
    ).with_label("latest hour, after its actual")
