"""Fixtures shared by the live-server modules; each module defines its own ``live``
(a populated platform of its own, served) and gets these views of it."""

from __future__ import annotations

import dagster as dg
import pytest


@pytest.fixture(scope="module")
def server(live) -> str:
    """The live server's base URL."""
    return live[0]


@pytest.fixture(scope="module")
def platform(live) -> dg.DagsterInstance:
    """The instance the live platform was populated with (to materialize more data)."""
    return live[1]
