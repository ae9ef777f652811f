"""Several long-running commands started and stopped as one, with nothing left behind.

    python -m resources.process_group [--grace 20] NAME=COMMAND [NAME=COMMAND ...]

``make run`` runs ``dagster dev``, the rain stream's services and the web service through this.
Each command gets a process group of its own. On Ctrl-C (SIGINT), SIGTERM (``make`` forwards
it to its recipe) or SIGHUP, each group is asked to stop: SIGINT to the whole ``dagster*`` group
(webserver, daemon, code servers and run workers all see it, as under a terminal's Ctrl-C, so a
run in progress is interrupted and marked failed), SIGTERM to the leader of the others (they
stop their own children in order). Whatever is still alive ``--grace`` seconds later is
SIGKILLed: every group, and every descendant of this process, found through /proc. It is a
child subreaper on Linux, so a descendant orphaned by its parent's exit stays findable.

Why it exists: under ``make`` in a non-interactive shell, a background job starts with SIGINT
ignored; ``dagster dev`` then maps SIGTERM to that ignored handler, so neither signal stopped
it or its children. Here every child starts with default signal handling.

The first command is the main one: when it exits, the others are stopped and its exit code is
returned. Another that exits is reported and not restarted.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("process_group")

GRACE_S = 20.0
KILL_WAIT_S = 5.0
PR_SET_CHILD_SUBREAPER = 36


@dataclass
class Child:
    name: str
    command: list[str]
    process: subprocess.Popen | None = None

    @property
    def whole_group(self) -> bool:
        """Dagster's processes all expect the terminal's SIGINT (see the module docstring)."""
        return self.name.startswith("dagster")


def parse(specs: list[str]) -> list[Child]:
    children = []
    for spec in specs:
        name, sep, command = spec.partition("=")
        if not sep or not name or not command.strip():
            raise ValueError(f"expected NAME=COMMAND, got {spec!r}")
        children.append(Child(name, shlex.split(command)))
    return children


def _proc_table() -> dict[int, tuple[int, int, str, str]] | None:
    """pid -> (ppid, pgid, state, name) of every process, or None without /proc."""
    if not Path("/proc/self/stat").exists():
        return None
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        head, _, tail = text.rpartition(")")
        fields = tail.split()
        table[int(stat.parent.name)] = (
            int(fields[1]),
            int(fields[2]),
            fields[0],
            head.partition("(")[2],
        )
    return table


def descendants(root: int) -> list[tuple[int, str]]:
    """Live (not zombie) descendants of ``root``: (pid, name)."""
    table = _proc_table() or {}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if table[pid][2] not in ("Z", "X"):
            found.append((pid, table[pid][3]))
    return found


def _group_alive(pgid: int) -> bool:
    table = _proc_table()
    if table is None:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    return any(g == pgid and s not in ("Z", "X") for _, g, s, _ in table.values())


def _signal(target: int, sig: int, group: bool) -> None:
    try:
        if group:
            os.killpg(target, sig)
        else:
            os.kill(target, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _reap_orphans(children: list[Child]) -> None:
    """Collect exited orphans handed to this subreaper (never the Popen children)."""
    ours = {c.process.pid for c in children if c.process is not None}
    table = _proc_table() or {}
    for pid, (ppid, _, state, _) in table.items():
        if ppid == os.getpid() and state == "Z" and pid not in ours:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)


def _become_subreaper() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        except (OSError, AttributeError):
            log.debug("prctl unavailable: orphans of the children are found by group only")


def _remaining(children: list[Child]) -> list[str]:
    for child in children:
        if child.process is not None:
            child.process.poll()
    _reap_orphans(children)
    left = [f"{pid} {name}" for pid, name in descendants(os.getpid())]
    if _proc_table() is None:
        left = [c.name for c in children if c.process and _group_alive(c.process.pid)]
    return left


def stop(children: list[Child], grace_s: float) -> list[str]:
    """Ask every child's group to stop, SIGKILL what is left after ``grace_s``; return what
    still lived when the grace ran out (empty when everything stopped by itself)."""
    started = time.monotonic()
    for child in children:
        if child.process is None or child.process.poll() is not None:
            if child.process is not None and _group_alive(child.process.pid):
                _signal(child.process.pid, signal.SIGTERM, group=True)
            continue
        if child.whole_group:
            _signal(child.process.pid, signal.SIGINT, group=True)
        else:
            _signal(child.process.pid, signal.SIGTERM, group=False)
    while (left := _remaining(children)) and time.monotonic() - started < grace_s:
        time.sleep(0.2)
    if not left:
        log.info("every process stopped in %.1f s", time.monotonic() - started)
        return []
    log.warning("still running after %.0f s, killing: %s", grace_s, ", ".join(left[:20]))
    for child in children:
        if child.process is not None:
            _signal(child.process.pid, signal.SIGKILL, group=True)
    for pid, _ in descendants(os.getpid()):
        _signal(pid, signal.SIGKILL, group=False)
    deadline = time.monotonic() + KILL_WAIT_S
    while _remaining(children) and time.monotonic() < deadline:
        time.sleep(0.1)
    for child in children:
        if child.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(timeout=1)
    return left


def run(children: list[Child], grace_s: float) -> int:
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        if not stopping:
            log.info(
                "%s received: stopping %s",
                signal.Signals(signum).name,
                ", ".join(c.name for c in children),
            )
        stopping.append(signum)

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    _become_subreaper()
    main_child = children[0]
    for child in children:
        if stopping:
            break
        # A group of its own; signals reset to default in the child (handlers do not survive
        # exec), whatever this process inherited; no terminal input (a background group reading
        # it would be stopped).
        child.process = subprocess.Popen(child.command, process_group=0, stdin=subprocess.DEVNULL)
        log.info(
            "started %s (pid %s): %s", child.name, child.process.pid, shlex.join(child.command)
        )
    reported: set[str] = set()
    while not stopping:
        if main_child.process is not None and main_child.process.poll() is not None:
            log.warning("%s exited with code %s", main_child.name, main_child.process.returncode)
            break
        for child in children[1:]:
            exited = child.process is not None and child.process.poll() is not None
            if exited and child.name not in reported:
                reported.add(child.name)
                log.warning(
                    "%s exited with code %s; the others keep running",
                    child.name,
                    child.process.returncode,
                )
        _reap_orphans(children)
        time.sleep(0.5)
    stop(children, grace_s)
    if stopping:
        return 128 + stopping[0]
    return main_child.process.returncode or 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description="Run commands as one; stop them all together.")
    parser.add_argument("--grace", type=float, default=GRACE_S, help="seconds before SIGKILL")
    parser.add_argument("commands", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args(argv)
    try:
        children = parse(args.commands)
    except ValueError as exc:
        parser.error(str(exc))
    return run(children, args.grace)


if __name__ == "__main__":
    raise SystemExit(main())
