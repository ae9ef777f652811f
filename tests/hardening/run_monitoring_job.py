"""A job whose one step takes the ``duckdb`` pool slot and holds it until killed
(tests/hardening/test_run_monitoring.py). In process, as ``rain_minute_job``: the run worker writes its
pid to ``WORKER_PID_FILE``."""

import os
import time
from pathlib import Path

import dagster as dg


@dg.op(pool="duckdb")
def hold_the_pool_slot() -> None:
    Path(os.environ["WORKER_PID_FILE"]).write_text(str(os.getpid()))
    time.sleep(600)


@dg.job(executor_def=dg.in_process_executor)
def hold_slot_job() -> None:
    hold_the_pool_slot()


defs = dg.Definitions(jobs=[hold_slot_job])
