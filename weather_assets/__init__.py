"""Weather domain: the minute rain nowcast stream (and, later, the temperature forecast).

Pure transforms live in ``rain`` and ``locations``; Dagster wiring in ``rain_assets``.
"""
