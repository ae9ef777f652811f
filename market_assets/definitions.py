"""The stock market domain's ``dg.Definitions``: its assets, checks and job (resources come
from the root ``definitions.py``; its automation conditions are evaluated by
``sensors.automation``)."""

import dagster as dg

from market_assets import assets, checks, jobs

defs = dg.load_definitions_from_modules([assets, checks, jobs])
