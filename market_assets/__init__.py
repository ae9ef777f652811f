"""Stock market volume: Kaggle-layout CSVs -> parquet -> 30-day rolling features -> volume model."""
