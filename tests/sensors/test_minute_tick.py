from datetime import UTC, datetime

from sensors.rain import next_minute_tick

NOW = datetime(2026, 11, 22, 16, 5, 42, tzinfo=UTC)


def test_first_tick_requests_the_minute_in_progress():
    tick = next_minute_tick(None, NOW)
    assert tick.partition_key == "2026-11-22-16:05" and tick.skipped_minutes == 0


def test_same_minute_is_not_requested_twice():
    assert next_minute_tick("2026-11-22-16:05", NOW).partition_key is None


def test_after_a_gap_it_resumes_at_now_and_counts_the_gap():
    tick = next_minute_tick("2026-11-22-15:30", NOW)
    assert tick.partition_key == "2026-11-22-16:05"
    assert tick.skipped_minutes == 34


def test_a_cursor_from_the_future_is_not_trusted_to_request_anything():
    assert next_minute_tick("2026-11-22-17:00", NOW).partition_key is None
