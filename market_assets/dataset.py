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

from resources.source import SourceConfig


class StockDataset(dg.ConfigurableResource):
    """The dataset root handed to Spark (a local folder, or ``s3a://``/``hdfs://`` on a cluster)."""

    dataset_dir: str | None = None
    generated_dir: str = "data/stock_market"
    size: str = "small"
    source: SourceConfig = SourceConfig()

    @property
    def origin(self) -> str:
        """What the metadata reports as the source: a real folder, or the generated one."""
        return "kaggle_dir" if self.dataset_dir else "simulated"

    def root(self) -> str:
        if self.dataset_dir:
            return self.dataset_dir
        if self.source.live:
            raise dg.Failure(
                "SOURCE_MODE=live needs STOCK_DATASET_DIR: a folder with the Kaggle layout "
                "(etfs/*.csv, stocks/*.csv, symbols_valid_meta.csv)"
            )
        from market_assets.simulator import KAGGLE, SMALL, ensure_stock_dataset

        spec = replace(KAGGLE if self.size == "kaggle" else SMALL, seed=self.source.seed)
        manifest = ensure_stock_dataset(Path(self.generated_dir) / self.size, spec)
        return str(Path(manifest.root).resolve())
