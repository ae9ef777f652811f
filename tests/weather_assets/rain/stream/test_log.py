"""The log's set-up against a real nats-server: idempotent, and brought to a new configuration."""

import asyncio

from resources.jetstream import LogUnavailable, jetstream, run_sync
from weather_assets.rain.stream.log import (
    LATEST,
    LEASES,
    STREAM,
    LogConfig,
    ensure_log,
    kv_key,
    kv_name,
)


def test_ensure_log_creates_then_updates(nats_server):
    async def main():
        async with jetstream(nats_server.url) as (_, js):
            await ensure_log(js, LogConfig(nats_server.url))
            again = await ensure_log(js, LogConfig(nats_server.url))
            changed = await ensure_log(js, LogConfig(nats_server.url, max_age_hours=2))
            leases = await js.key_value(LEASES)
            latest = await js.key_value(LATEST)
            return again, changed, await leases.status(), await latest.status()

    again, changed, leases, latest = asyncio.run(main())
    assert again.config.name == STREAM and again.config.subjects == ["rain.nowcast.>"]
    assert again.config.max_age == 48 * 3600 and again.config.num_replicas == 1
    assert again.config.storage == "file"
    assert changed.config.max_age == 2 * 3600
    assert leases.ttl == 60
    assert latest.bucket == LATEST


def test_unreachable_log_is_a_clear_error():
    try:
        run_sync("nats://127.0.0.1:1", lambda js: js.account_info(), timeout_s=0.5)
    except LogUnavailable as exc:
        assert "nats://127.0.0.1:1 is not reachable" in str(exc)
    else:
        raise AssertionError("expected LogUnavailable")


def test_kv_keys_escape_any_location_id():
    for name in ["office", "a b/ü", "x=y", "São Paulo #2"]:
        key = kv_key(name)
        assert all(c.isalnum() or c in "-_=" for c in key)
        assert kv_name(key) == name
