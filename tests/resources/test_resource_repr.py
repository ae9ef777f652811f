"""Secrets stay out of ``repr``/``str`` of every resource and of the settings.

Dagster resources are pydantic models: their ``repr`` lists every field, the resolved value of
a ``dg.EnvVar`` included, and a resource's ``repr`` ends up in tracebacks, debugger sessions
and log lines (``context.log.info(f"{resource}")``).
"""

from __future__ import annotations

import re

import dagster as dg
import pytest

from esios_assets.client import EsiosResource
from market_assets.dataset import StockDataset
from nasa_assets.client import NasaImagesResource
from resources.object_store import ObjectStore
from resources.settings import Settings
from resources.sql import SqlDatabase
from weather_assets.locations import CoordinateRegistry
from weather_assets.rain.client import OpenWeatherMapResource
from weather_assets.stations.feed import StationFeed

SECRET = "s3cr3t-VALUE-42"
DB_URL = f"postgresql://platform:{SECRET}@db.internal:5432/platform"
# A field holding a credential, by its name: keys, tokens, passwords, and URLs of databases
# (which carry the password). ``base_url``/``endpoint_url`` name public endpoints.
SECRET_FIELD = re.compile(r"key|token|password|secret|credential|(^|_)db_url$|^url$")

# The secret fields each resource is known to have: the test fails if one is not found.
RESOURCES = {
    EsiosResource: {"api_token"},
    OpenWeatherMapResource: {"api_key", "api_keys", "rate_limit_db_url"},
    StationFeed: {"api_key", "api_keys", "rate_limit_db_url"},
    NasaImagesResource: {"api_key", "rate_limit_db_url"},
    SqlDatabase: {"url", "password"},
    ObjectStore: set(),
    CoordinateRegistry: set(),
    StockDataset: set(),
}


def secret_fields(cls: type) -> list[str]:
    return [name for name in cls.model_fields if SECRET_FIELD.search(name)]


def value_for(field: str) -> str:
    return DB_URL if field.endswith("url") else SECRET


def texts(resource: object) -> list[str]:
    return [repr(resource), str(resource), f"{resource}", f"{resource!r}"]


@pytest.mark.parametrize("cls", list(RESOURCES), ids=lambda c: c.__name__)
def test_secret_fields_are_not_in_repr(cls: type) -> None:
    fields = secret_fields(cls)
    assert RESOURCES[cls] <= set(fields), "the known secret fields are all checked"
    for field in fields:
        resource = cls(**{field: value_for(field)})
        for text in texts(resource):
            assert SECRET not in text, f"{cls.__name__}.{field} shows in {text!r}"


@pytest.mark.parametrize(
    "cls", [c for c, known in RESOURCES.items() if known], ids=lambda c: c.__name__
)
def test_secrets_resolved_from_env_vars_are_not_in_repr(cls: type, monkeypatch) -> None:
    """What a run holds: the resource with its ``dg.EnvVar`` resolved to the secret."""
    for field in secret_fields(cls):
        monkeypatch.setenv("REPR_TEST_SECRET", value_for(field))
        resource = cls(**{field: dg.EnvVar("REPR_TEST_SECRET")})
        with dg.build_resources({"resource": resource}) as built:
            resolved = built.resource
            assert getattr(resolved, field) == value_for(field)
            for text in texts(resolved):
                assert SECRET not in text, f"{cls.__name__}.{field} shows in {text!r}"


def test_settings_do_not_show_credentials_in_a_nats_url() -> None:
    """``NATS_URL`` may carry ``user:password@``; the settings' repr and the start-up summary
    name the server without the password."""
    settings = Settings(_env_file=None, nats_url=f"nats://rain:{SECRET}@nats.internal:4222")
    assert settings.nats_url == f"nats://rain:{SECRET}@nats.internal:4222"
    for text in [*texts(settings), settings.summary()]:
        assert SECRET not in text
    assert "NATS_URL=nats://rain:***@nats.internal:4222" in settings.summary()
    for field in secret_fields(Settings):  # none today; any added later must hide too
        assert SECRET not in repr(Settings(_env_file=None, **{field: value_for(field)}))
