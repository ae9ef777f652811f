"""How long the Dagster UI waits when it (re)loads the code location.

    .venv/bin/python benchmarks/definitions_load.py [--repeat 5]

Times a fresh interpreter importing ``definitions`` and resolving every asset, job and sensor
(what a code-server reload does). Issue #2 target: under 3 s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = (
    "import time; t=time.perf_counter(); import definitions as d; "
    "d.defs.resolve_all_asset_specs(); d.defs.resolve_job_def('rain_minute_job'); "
    "print(time.perf_counter()-t)"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    walls, imports = [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True, check=True
        )
        walls.append(time.perf_counter() - start)
        imports.append(float(out.stdout.strip().splitlines()[-1]))
    print(
        f"import + resolve definitions: median {statistics.median(imports):.2f} s "
        f"(min {min(imports):.2f}, max {max(imports):.2f}) over {args.repeat} runs"
    )
    print(f"whole interpreter incl. start-up: median {statistics.median(walls):.2f} s")


if __name__ == "__main__":
    main()
