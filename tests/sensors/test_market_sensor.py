"""The market bootstrap sensor: one run on a fresh instance, silence once a model exists."""

from __future__ import annotations

import dagster as dg

from sensors.market import BOOTSTRAP_RUN_KEY, market_bootstrap_sensor


def test_requests_the_group_once_then_skips(instance):
    result = market_bootstrap_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == BOOTSTRAP_RUN_KEY

    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key="volume_model"))
    skipped = market_bootstrap_sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(skipped, dg.SkipReason)
