"""Weather domain: the minute rain nowcast (``rain``), the raw-readings ETL (``observations``),
the office temperature forecast (``temperature``) and the station feed (``stations``).

``locations`` is the coordinate registry all four share; ``partitions`` their time partitions;
``definitions`` builds the domain's ``dg.Definitions``.
"""
