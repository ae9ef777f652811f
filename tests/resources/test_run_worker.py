"""resources.run_worker.process_alive: a dead, zombie or reused pid is not the run's worker."""

from __future__ import annotations

import subprocess
import sys
import time

from resources.run_worker import process_alive


def test_a_live_process_is_alive_a_zombie_or_a_reused_pid_is_not() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert process_alive(child.pid, started_by=time.time())
        # The pid as a worker reported it an hour before this process started: reused.
        assert not process_alive(child.pid, started_by=time.time() - 3600)
    finally:
        child.kill()
    time.sleep(0.5)  # exited, not reaped: a zombie
    assert not process_alive(child.pid)
    child.wait()
    assert not process_alive(child.pid)
