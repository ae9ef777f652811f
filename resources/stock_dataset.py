"""Where the Kaggle-layout stock CSVs come from: ``STOCK_DATASET_DIR``, or a synthetic copy.

The Kaggle "Stock Market Dataset" cannot be downloaded on an offline machine (and needs a
Kaggle login), so without ``STOCK_DATASET_DIR`` a deterministic dataset of the same layout is
generated once under ``DATA_DIR`` (``STOCK_SIMULATED_SIZE``: ``small`` for ``make run``,
``kaggle`` for a full-size run). Live mode has no simulator to fall back on: it needs the real
folder.
"""

from dataclasses import replace
from pathlib import Path

import dagster as dg

from resources.settings import LIVE, SIMULATED, Settings


class StockDataset(dg.ConfigurableResource):
    """The dataset root handed to Spark (a local folder, or ``s3a://``/``hdfs://`` on a cluster)."""

    dataset_dir: str | None = None
    generated_dir: str = "data/stock_market"
    size: str = "small"
    seed: int = 0
    source_mode: str = SIMULATED

    @property
    def source(self) -> str:
        return "kaggle_dir" if self.dataset_dir else "simulated"

    def root(self) -> str:
        if self.dataset_dir:
            return self.dataset_dir
        if self.source_mode == LIVE:
            raise dg.Failure(
                "SOURCE_MODE=live needs STOCK_DATASET_DIR: a folder with the Kaggle layout "
                "(etfs/*.csv, stocks/*.csv, symbols_valid_meta.csv)"
            )
        from resources.simulators.stock_market import KAGGLE, SMALL, ensure_stock_dataset

        spec = replace(KAGGLE if self.size == "kaggle" else SMALL, seed=self.seed)
        manifest = ensure_stock_dataset(Path(self.generated_dir) / self.size, spec)
        return str(Path(manifest.root).resolve())


def stock_dataset_from(settings: Settings) -> StockDataset:
    return StockDataset(
        dataset_dir=settings.stock_dataset_dir,
        generated_dir=str(settings.data_dir / "stock_market"),
        size=settings.stock_simulated_size,
        seed=settings.simulator_seed,
        source_mode=settings.source_mode,
    )
