"""Property-based tests of every operation in the app's OpenAPI schema (schemathesis).

In process over ASGI, on a populated platform (so ``/predict`` has a model). Schemathesis 4
runs the app's lifespan itself: its ASGI client starts it before the first request of a test
(so ``app.state`` exists and the settings come from the platform's environment), and its
pytest plugin shuts it down when the test ends (see ``schemathesis/python/asgi.py`` and
``schemathesis/pytest/plugin.py``).

The schema is the app's own (``app.openapi()``, what ``/openapi.json`` serves: checked below),
loaded at import without starting the app: ``schemathesis.openapi.from_asgi`` would run the
lifespan at collection time, before the platform's ``DATA_DIR`` is set, and
``schemathesis.pytest.from_fixture`` (which would defer it) fails under pytest 9
(``'Function' object has no attribute '_nodeid'``, schemathesis 4.32.5 ``pytest/lazy.py``).
"""

from __future__ import annotations

import copy

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.python.asgi import get_client

from serving.app import create_app
from tests.serving.live_server import populated_platform

app = create_app()
schema = schemathesis.openapi.from_dict(copy.deepcopy(app.openapi()))  # it edits its argument
schema.app = app  # what from_asgi sets: requests go to this app object over ASGI


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    with populated_platform(tmp_path_factory, "openapi") as instance:
        yield instance


def test_the_schema_is_what_the_app_serves(platform):
    """The schema under test is /openapi.json, and it lists every JSON route."""
    with get_client(app) as client:
        response = client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == schema.raw_schema
    assert set(schema.raw_schema["paths"]) == {"/rain", "/temperature.json", "/predict", "/health"}


@schema.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    database=None,
)
def test_no_operation_answers_5xx(case, platform):
    """Every operation, with generated valid and invalid inputs (and undeclared methods):
    never a 5xx (not even /predict's 503: the lifespan loaded the published model), and every
    response passes schemathesis's default checks (status codes, schemas, content types)."""
    response = case.call()
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    case.validate_response(response)  # schemathesis's default checks, not_a_server_error included
    assert app.state.model_holder.current is not None
    assert app.state.snapshots.current.rain
