"""NASA queries added after the automation sensor is running (from the UI, the CLI or
queries.yaml) are materialized once by the assets' automation conditions: requested on the
next evaluation, never again once built or once failed, and queries built before (which have
no staged ``nasa_search_results``) are not searched again after a deploy."""

from __future__ import annotations

import dagster as dg
import pytest

from definitions import build_resources
from nasa_assets.assets import NASA_ASSETS
from nasa_assets.checks import NASA_CHECKS
from nasa_assets.client import NasaImagesResource
from resources.settings import load_settings
from resources.source import SourceConfig

KEYS = ["nasa_search_results", "nasa_image_search", "nasa_images"]
ASSETS = [*NASA_ASSETS, *NASA_CHECKS]


class Evaluator:
    """``dg.evaluate_automation_conditions`` tick after tick, keeping the cursor."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.cursor = None
        self.defs = dg.Definitions(assets=ASSETS, resources=build_resources(load_settings()))

    def tick(self) -> dict[str, set[str]]:
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor
        )
        self.cursor = result.cursor
        return {
            key: set(result.get_requested_partitions(dg.AssetKey(key)))
            for key in KEYS
            if result.get_requested_partitions(dg.AssetKey(key))
        }


def _built(instance, query: str, keys=KEYS) -> None:
    for key in keys:
        instance.report_runless_asset_event(dg.AssetMaterialization(key, partition=query))


def test_a_new_query_is_requested_once_and_not_again_once_built(platform_env, instance):
    evaluator = Evaluator(instance)
    assert evaluator.tick() == {}
    instance.add_dynamic_partitions("nasa_queries", ["apollo 11"])
    # one request for the three stages of the new query: one run, search first
    assert evaluator.tick() == {key: {"apollo 11"} for key in KEYS}
    assert evaluator.tick() == {}, "asked for again before its run started"
    _built(instance, "apollo 11")
    assert evaluator.tick() == {}
    instance.add_dynamic_partitions("nasa_queries", ["mars rover"])
    assert evaluator.tick() == {key: {"mars rover"} for key in KEYS}
    _built(instance, "mars rover")
    for _ in range(3):
        assert evaluator.tick() == {}


def test_queries_built_before_the_deploy_are_not_searched_again(platform_env, instance):
    """An instance from before ``nasa_search_results`` existed: its queries have images, so the
    new stage being missing for them requests nothing (no API budget spent on old queries)."""
    instance.add_dynamic_partitions("nasa_queries", ["moon", "venus"])
    _built(instance, "moon", ["nasa_image_search", "nasa_images"])
    _built(instance, "venus", ["nasa_image_search", "nasa_images"])
    evaluator = Evaluator(instance)
    for _ in range(2):
        assert evaluator.tick() == {}


def test_a_query_whose_search_was_built_alone_gets_its_images(platform_env, instance):
    instance.add_dynamic_partitions("nasa_queries", ["moon"])
    _built(instance, "moon", ["nasa_search_results", "nasa_image_search"])
    assert Evaluator(instance).tick() == {"nasa_images": {"moon"}}


def test_a_failed_query_is_not_retried_in_a_loop(platform_env, instance, httpserver):
    """The run of a new query fails (NASA rejects the key): the next evaluations leave it for a
    person to re-run from the UI."""
    httpserver.expect_request("/search").respond_with_json(
        {"reason": "An invalid api_key was supplied"}, status=403
    )
    resources = build_resources(load_settings())
    resources["nasa_library"] = NasaImagesResource(
        source=SourceConfig(mode="live"), base_url=httpserver.url_for("").rstrip("/")
    )
    evaluator = Evaluator(instance)
    evaluator.tick()
    instance.add_dynamic_partitions("nasa_queries", ["saturn"])
    requested = evaluator.tick()
    assert requested == {key: {"saturn"} for key in KEYS}
    result = dg.materialize(
        [*NASA_ASSETS, *NASA_CHECKS],
        partition_key="saturn",
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )
    assert not result.success
    for _ in range(3):
        assert evaluator.tick() == {}


@pytest.mark.parametrize("key", KEYS)
def test_every_nasa_asset_has_the_condition(key):
    (asset,) = [a for a in NASA_ASSETS if a.key == dg.AssetKey(key)]
    condition = asset.automation_conditions_by_key.get(asset.key)
    assert condition is not None and condition.get_label() == "new query, once"
