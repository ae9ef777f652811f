"""The NASA Image Library domain's ``dg.Definitions``: its assets, checks and job (resources
come from the root ``definitions.py``; its sensor from ``sensors/nasa.py``)."""

import dagster as dg

from nasa_assets import assets, checks, jobs

defs = dg.load_definitions_from_modules([assets, checks, jobs])
