"""The market group's bootstrap, by its automation conditions: one request for the whole group
on an empty instance, nothing once it exists, no retry loop after a failed run."""

from __future__ import annotations

import dagster as dg
import pytest

from market_assets.assets import MARKET_ASSETS

NAMES = {a.key.to_user_string() for a in MARKET_ASSETS}


@pytest.fixture
def evaluate(instance, platform_resources):
    """One tick against the instance: the market assets requested, and the cursor."""
    defs = dg.Definitions(assets=MARKET_ASSETS, resources=platform_resources)

    def tick(cursor=None) -> tuple[set[str], object]:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=cursor)
        return {n for n in NAMES if result.get_num_requested(dg.AssetKey(n))}, result.cursor

    return tick


def test_empty_instance_requests_the_group_once(instance, evaluate):
    requested, cursor = evaluate()
    assert requested == NAMES
    requested, cursor = evaluate(cursor)
    assert requested == set(), "the request is not repeated on the next tick"
    for name in NAMES:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name))
    assert evaluate(cursor)[0] == set()


def test_an_instance_with_a_model_requests_nothing(instance, evaluate):
    for name in NAMES:
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name))
    assert evaluate()[0] == set()


def test_a_failed_model_run_is_not_retried_in_a_loop(instance, evaluate):
    @dg.asset(name="volume_model")
    def failing_model():
        raise RuntimeError("out of memory")

    for name in ("stock_prices", "stock_features"):
        instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=name))
    assert not dg.materialize([failing_model], instance=instance, raise_on_error=False).success
    requested, cursor = evaluate()
    assert requested == set()
    assert evaluate(cursor)[0] == set()
