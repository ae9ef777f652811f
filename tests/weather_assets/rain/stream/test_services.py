"""The stream's supervisor: restarts a service that exits, with a bounded back-off."""

from __future__ import annotations

import sys
import threading
import time

from weather_assets.rain.stream import services
from weather_assets.rain.stream.services import Service, backoff, supervise


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert backoff(20) == services.MAX_BACKOFF_S


def test_a_service_that_exits_is_restarted_and_all_stop_together(tmp_path):
    starts = tmp_path / "starts"
    crashing = Service(
        "crashing",
        [sys.executable, "-c", f"open({str(starts)!r}, 'a').write('x'); raise SystemExit(3)"],
    )
    steady = Service("steady", [sys.executable, "-c", "import time; time.sleep(600)"])
    stopping: list[bool] = []
    thread = threading.Thread(target=supervise, args=([crashing, steady], stopping))
    thread.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(starts.read_text() if starts.exists() else "") < 2:
        time.sleep(0.1)
    stopping.append(True)
    thread.join(timeout=10)
    assert len(starts.read_text()) >= 2, "the crashed service was not restarted"
    assert crashing.restarts >= 1
    assert steady.restarts == 0 and steady.process.poll() is None
    steady.stop()
    assert steady.process.poll() is not None
