"""Image downloads through ``nasa_images``: images/s with 1, 2 and 4 Spark tasks.

    .venv/bin/python benchmarks/nasa_images.py [--images 2000] [--tasks 1 2 4]
        [--latency-ms 0 20] [--rendition large]

Materializes ``nasa_image_search`` once for a simulated query with exactly ``--images``
distinct results, then ``nasa_images`` once per (latency, tasks) into a fresh object folder, so
every run downloads every image (manifest request + file request each, simulated in each Spark
worker). ``--latency-ms`` adds a wait before every simulated answer, like a network round trip:
at 0 the run is CPU-bound (simulator + PNG + writes); with latency, tasks overlap their waits as
they would against the real hosts. The rate limit is lifted for the measurement (the real API
allows 1,000 requests an hour, i.e. 500 images an hour: the benchmark measures the pipeline,
not NASA's quota). Spark runs ``local[N]`` with N = the largest ``--tasks``; its start-up and
a warm-up run are excluded.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def distinct_to_hits(images: int) -> int:
    """Catalog size whose de-duplicated results are exactly ``images`` (the simulator repeats
    the entry before every 100th position)."""
    hits = images
    while hits - (hits - 1) // 100 < images:
        hits += 1
    return hits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--tasks", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0, 20.0])
    parser.add_argument("--rendition", default="large")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-nasa-"))
    os.environ["DATA_DIR"] = str(root / "data")
    for name in ("S3_BUCKET", "S3_ENDPOINT_URL", "SOURCE_MODE", "SEARCH_RESULT_SAMPLING_FACTOR"):
        os.environ.pop(name, None)

    import dagster as dg
    from dagster_pyspark import LazyPySparkResource

    from definitions import build_resources
    from nasa_assets.assets import nasa_image_search, nasa_images, nasa_search_results
    from nasa_assets.client import NasaImagesResource
    from resources.object_store import ObjectStore
    from resources.settings import load_settings
    from resources.spark import spark_config

    master = f"local[{max(args.tasks)}]"
    spark = LazyPySparkResource(spark_config=spark_config(master, data_dir=root / "data"))
    started = time.perf_counter()
    sc = spark.spark_session.sparkContext
    sc.setLogLevel("ERROR")
    print(f"Spark {sc.version} {master} started in {time.perf_counter() - started:.1f} s")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )

    query = "benchmark"
    base = build_resources(load_settings())
    base["pyspark"] = spark

    def library(latency_ms: float) -> NasaImagesResource:
        return NasaImagesResource(
            simulator_hits=distinct_to_hits(args.images),
            simulator_latency_s=latency_ms / 1000,
            requests_per_hour=10**9,
        )

    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("nasa_queries", [query])
        searched = dg.materialize(
            [nasa_search_results, nasa_image_search],
            partition_key=query,
            resources={**base, "nasa_library": library(0)},
            instance=instance,
            run_config=quiet,
        )
        rows = searched.asset_materializations_for_node("nasa_image_search")[0].metadata
        print(f"search: {rows['dagster/row_count'].value} distinct results\n")
        print(f"{'latency':>8} {'tasks':>5} {'images':>6} {'MB':>6} {'seconds':>8} {'images/s':>9}")

        def run(tasks: int, latency_ms: float, label: str) -> dict:
            store = ObjectStore(local_dir=str(root / "objects" / label))
            result = dg.materialize(
                [nasa_image_search.to_source_asset(), nasa_images],
                partition_key=query,
                resources={**base, "nasa_library": library(latency_ms), "object_store": store},
                instance=instance,
                run_config={
                    **quiet,
                    "ops": {
                        "nasa_images": {"config": {"tasks": tasks, "rendition": args.rendition}}
                    },
                },
            )
            meta = result.asset_materializations_for_node("nasa_images")[0].metadata
            return {k: v.value for k, v in meta.items()}

        run(max(args.tasks), 0.0, "warm-up")  # starts the Python workers once
        for latency in args.latency_ms:
            for tasks in args.tasks:
                meta = run(tasks, latency, f"t{tasks}-l{latency:g}")
                assert meta["downloaded"] == args.images and meta["failed"] == 0, meta
                print(
                    f"{latency:>6g}ms {tasks:>5} {meta['downloaded']:>6} "
                    f"{meta['bytes'] / 1e6:>6.1f} {meta['seconds']:>8.2f} "
                    f"{meta['downloaded'] / meta['seconds']:>9.1f}"
                )


if __name__ == "__main__":
    main()
