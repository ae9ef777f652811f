"""The raw-readings ETL: raw CSV -> clean -> quarter-hour and hourly aggregates -> features.

``etl_spark`` is the production engine (PySpark); ``etl_polars`` implements the same rules,
rule by rule, for the single-machine benchmark and the test that keeps both engines equal.
"""
