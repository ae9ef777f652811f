"""The local Dagster instance's ``dagster.yaml``: the template, plus PostgreSQL storage when
``DAGSTER_PG_URL`` is set.

    python -m resources.instance_config "$DAGSTER_HOME/dagster.yaml"   (run by `make run`)

The URL itself is never written to the file: the storage block names the variable
(``{env: DAGSTER_PG_URL}``), which Dagster resolves in every process that opens the instance,
so the password stays in the environment.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from resources.settings import dotenv_environ

PG_URL_ENV = "DAGSTER_PG_URL"
TEMPLATE = Path(__file__).resolve().parent.parent / "dagster.yaml.template"
# dagster-postgres depends on psycopg2; SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3.
PG_SCHEME = "postgresql+psycopg2"


class InstanceConfigError(ValueError):
    """DAGSTER_PG_URL holds something Dagster's PostgreSQL storage cannot use."""


def validate_pg_url(url: str) -> None:
    """Refuse, before Dagster starts, what would otherwise fail deep inside SQLAlchemy."""
    parts = urlsplit(url)
    if parts.scheme != PG_SCHEME:
        shown = f"{parts.scheme}://..." if parts.scheme else repr(url.split("@")[-1])
        raise InstanceConfigError(
            f"{PG_URL_ENV} must start with {PG_SCHEME}:// (dagster-postgres uses psycopg2), "
            f"got {shown}; e.g. {PG_SCHEME}://user:password@host:5432/dagster"
        )
    if not parts.hostname or not parts.path.strip("/"):
        raise InstanceConfigError(
            f"{PG_URL_ENV} must name a host and a database: "
            f"{PG_SCHEME}://user:password@host:5432/dagster"
        )


def postgres_storage() -> dict:
    """The ``storage`` block for instance storage in PostgreSQL, by reference to the env var."""
    return {"postgres": {"postgres_url": {"env": PG_URL_ENV}}}


def instance_yaml(template: str, pg_url: str | None) -> str:
    """The template as is, or with PostgreSQL storage appended when a URL is given."""
    if not pg_url:
        return template
    validate_pg_url(pg_url)
    block = yaml.safe_dump({"storage": postgres_storage()}, sort_keys=False)
    note = f"# {PG_URL_ENV} is set: runs, event logs, schedules and sensors live in PostgreSQL.\n"
    return template.rstrip("\n") + "\n\n" + note + block


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m resources.instance_config PATH/dagster.yaml", file=sys.stderr)
        return 2
    target = Path(args[0])
    try:
        text = instance_yaml(TEMPLATE.read_text(), os.environ.get(PG_URL_ENV) or None)
    except InstanceConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    storage = "PostgreSQL ($DAGSTER_PG_URL)" if "postgres_url" in text else "SQLite in DAGSTER_HOME"
    print(
        f"{target}: instance storage in {storage}; duckdb pool limit 1; run queue; "
        "run monitoring; tick retention"
    )
    return 0


if __name__ == "__main__":
    # .env loaded as the dagster commands beside this one load it (resources.settings).
    with dotenv_environ():
        raise SystemExit(main())
