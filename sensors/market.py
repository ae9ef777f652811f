"""Builds the stock market stages once on a fresh instance, so ``/predict`` has a model.

The market group has no schedule: its source is a static dataset. Without this sensor a fresh
``make run`` would serve 503s until someone materialized the group by hand. It asks for one
run of ``market_job`` while ``volume_model`` has never been materialized; the run key makes
that once per instance (a failed run is retried from the UI, not in a loop).
"""

import dagster as dg

from market_assets.assets import volume_model
from market_assets.jobs import market_job

BOOTSTRAP_RUN_KEY = "bootstrap:market"


@dg.sensor(
    job=market_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Materializes the market group once if volume_model has never been built.",
)
def market_bootstrap_sensor(context: dg.SensorEvaluationContext):
    if context.instance.get_latest_materialization_event(volume_model.key) is not None:
        return dg.SkipReason("volume_model exists; re-materialize the market group from the UI")
    return dg.RunRequest(run_key=BOOTSTRAP_RUN_KEY)
