"""The minute sensor's decision, pure: the log's minute progress and a cursor in, requests out."""

from datetime import UTC, datetime, timedelta

import pytest

from sensors.rain import (
    FIRST_START_MINUTES,
    MAX_REQUESTS_PER_TICK,
    gap_ranges,
    plan_minute_requests,
    run_request,
)
from weather_assets.partitions import MINUTE_FORMAT
from weather_assets.rain.stream.progress import MinuteProgress

NOW = datetime(2026, 11, 22, 16, 5, 42, tzinfo=UTC)
GRACE = timedelta(seconds=90)


def minute(minutes_ago: int) -> datetime:
    return NOW.replace(second=0) - timedelta(minutes=minutes_ago)


def key(moment: datetime) -> str:
    return moment.strftime(MINUTE_FORMAT)


def done(minutes_ago: int, shards: int = 2) -> MinuteProgress:
    return MinuteProgress(minute(minutes_ago), shards, frozenset(range(shards)))


def partial(minutes_ago: int, ended=(0,), shards: int = 2) -> MinuteProgress:
    return MinuteProgress(minute(minutes_ago), shards, frozenset(ended))


def test_complete_minutes_after_the_cursor_oldest_first():
    progress = [done(3), done(5), done(4)]
    plan = plan_minute_requests(key(minute(6)), progress, NOW, GRACE)
    assert [key(r.minute) for r in plan.requests] == [key(minute(m)) for m in (5, 4, 3)]
    assert {r.reason for r in plan.requests} == {"complete"}
    assert plan.cursor == key(minute(3)) and plan.gaps == []


def test_minutes_up_to_the_cursor_are_not_requested_again():
    plan = plan_minute_requests(key(minute(3)), [done(5), done(4), done(3)], NOW, GRACE)
    assert plan.requests == [] and plan.cursor == key(minute(3))
    assert "no minute after" in plan.reason


def test_a_waiting_minute_stops_the_list_until_its_grace_period_passed():
    # 1 minute ago: the minute ended 42 s ago, shard 1 has not ended: wait (grace 90 s).
    progress = [done(3), partial(1), done(0)]
    plan = plan_minute_requests(key(minute(4)), progress, NOW, GRACE)
    assert [key(r.minute) for r in plan.requests] == [key(minute(3))]
    assert plan.cursor == key(minute(3))

    waiting = plan_minute_requests(key(minute(3)), progress, NOW, GRACE)
    assert waiting.requests == [] and waiting.cursor == key(minute(3))
    assert "waiting for shards 1 of 2" in waiting.reason

    later = plan_minute_requests(key(minute(3)), progress, NOW + timedelta(seconds=60), GRACE)
    assert [r.reason for r in later.requests] == [
        "grace period passed (shards 1 missing)",
        "complete",  # the newest minute: every shard ended already
    ]
    assert later.gaps == [minute(2)]
    request = run_request(later.requests[0])
    assert request.tags["rain/completeness"] == "grace period passed (shards 1 missing)"
    assert request.tags["rain/missing_shards"] == "1"


def test_minutes_with_no_data_are_reported_as_gaps_not_requested():
    plan = plan_minute_requests(key(minute(10)), [done(8), done(4)], NOW, GRACE)
    assert [key(r.minute) for r in plan.requests] == [key(minute(8)), key(minute(4))]
    assert plan.gaps == [minute(m) for m in (9, 7, 6, 5)]
    assert gap_ranges(plan.gaps) == [
        key(minute(9)),
        f"{key(minute(7))} to {key(minute(5))} (3 minutes)",
    ]


def test_after_downtime_every_missed_minute_capped_per_evaluation():
    progress = [done(m) for m in range(150, 0, -1)]  # 150 complete minutes, the newest 1 min ago
    first = plan_minute_requests(key(minute(151)), progress, NOW, GRACE)
    assert len(first.requests) == MAX_REQUESTS_PER_TICK
    assert first.requests[0].minute == minute(150)
    assert first.cursor == key(minute(150 - MAX_REQUESTS_PER_TICK + 1))
    assert "more next evaluation" in first.reason

    seen = [r.minute for r in first.requests]
    cursor = first.cursor
    while True:
        plan = plan_minute_requests(cursor, progress, NOW, GRACE)
        if not plan.requests:
            break
        seen += [r.minute for r in plan.requests]
        cursor = plan.cursor
    assert seen == [minute(m) for m in range(150, 0, -1)], "each minute once, oldest first"


def test_first_start_begins_with_the_newest_minutes():
    progress = [done(m) for m in range(120, 0, -1)]
    plan = plan_minute_requests(None, progress, NOW, GRACE)
    assert plan.requests[0].minute == minute(FIRST_START_MINUTES)
    assert plan.requests[-1].minute == minute(1)
    assert plan.gaps == []


def test_first_start_reports_no_gaps_before_its_first_minute():
    plan = plan_minute_requests(None, [done(3), done(1)], NOW, GRACE)
    assert [r.minute for r in plan.requests] == [minute(3), minute(1)]
    assert plan.gaps == [minute(2)]


def test_minutes_before_the_partitions_start_are_ignored():
    plan = plan_minute_requests(
        key(minute(10)), [done(9), done(8), done(7)], NOW, GRACE, earliest=minute(8)
    )
    assert [r.minute for r in plan.requests] == [minute(8), minute(7)]


@pytest.mark.parametrize("cursor", [None, "2026-11-22-16:00"])
def test_an_empty_log_requests_nothing(cursor):
    plan = plan_minute_requests(cursor, [], NOW, GRACE)
    assert plan.requests == [] and plan.cursor == cursor


def test_run_requests_carry_the_minute_as_run_key_and_the_priority():
    request = run_request(plan_minute_requests(key(minute(3)), [done(2)], NOW, GRACE).requests[0])
    assert request.run_key == request.partition_key == key(minute(2))
    assert request.tags["dagster/priority"] == "10"
    assert request.tags["rain/completeness"] == "complete"
    assert "rain/missing_shards" not in request.tags
