"""The ESIOS domain's ``dg.Definitions``: its assets, checks (resources come from the root
``definitions.py``; sensors from ``sensors/``)."""

import dagster as dg

from esios_assets import assets, checks

defs = dg.load_definitions_from_modules([assets, checks])
