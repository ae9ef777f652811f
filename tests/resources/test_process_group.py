"""resources.process_group: stop asks first, then SIGKILLs whatever is left, escaped or not.

Real processes: a child that ignores SIGTERM and SIGINT, and one whose grandchild left for a
session of its own (out of every process group the wrapper signals) and was orphaned.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from resources.process_group import parse

REPO = Path(__file__).resolve().parents[2]
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "signal.signal(signal.SIGINT, signal.SIG_IGN); time.sleep(300)"
)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_a_bad_command_spec_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="expected NAME=COMMAND, got 'sleep 1'"):
        parse(["main=sleep 5", "sleep 1"])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stubborn_and_escaped_processes_are_killed_after_the_grace(tmp_path, sig) -> None:
    pid_file = tmp_path / "escaped.pid"
    # A grandchild in a new session (no group signal reaches it), its parent then exits.
    escape = (
        f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', {STUBBORN!r}], "
        f"start_new_session=True); open({str(pid_file)!r}, 'w').write(str(p.pid))"
    )
    wrapper = subprocess.Popen(
        [
            sys.executable, "-m", "resources.process_group", "--grace", "1",
            "main=sleep 300", f"stubborn={sys.executable} -c {STUBBORN!r}",
            f"escape={sys.executable} -c {escape!r}",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 30
        while not pid_file.exists() or not pid_file.read_text():
            assert time.time() < deadline and wrapper.poll() is None
            time.sleep(0.1)
        escaped = int(pid_file.read_text())
        time.sleep(0.5)  # the escaped process's parent has exited: it is an orphan now
        assert _alive(escaped)
        stopping = time.time()
        os.kill(wrapper.pid, sig)
        output, _ = wrapper.communicate(timeout=20)
        assert time.time() - stopping < 10
    finally:
        with suppress(ProcessLookupError):
            os.killpg(wrapper.pid, signal.SIGKILL)
    assert wrapper.returncode == 128 + sig
    assert not _alive(escaped), output
    assert "still running after 1 s, killing" in output and "python" in output, output
