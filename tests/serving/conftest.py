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


def pytest_collection_modifyitems(items):
    """Schemathesis 4.32 names one item per API operation (``test[GET /rain]``), but under
    pytest 9 every one gets the function's bare node id; pytest-xdist dispatches by node id, so
    three of the four operations would silently not run. Give each item its own id."""
    for item in items:
        if type(item).__name__ == "SchemathesisFunction" and item.name != item.originalname:
            item._id = item.parent.id.child(item.name)
