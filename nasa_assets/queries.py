"""The search queries: ``nasa_assets/queries.yaml`` and the ``nasa_queries`` dynamic partitions.

CLI (the instance is ``$DAGSTER_HOME``'s, as for ``dagster`` itself)::

    python -m nasa_assets.queries list
    python -m nasa_assets.queries add "apollo 11" "mars rover"
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

PARTITIONS_NAME = "nasa_queries"
QUERIES_FILE = Path(__file__).with_name("queries.yaml")
# Dagster refuses these in partition keys; a query has no use for them either.
_FORBIDDEN = ("\n", "\r", "\t", "\v", "\f", "\a", "\b", "\0", "...")
MAX_QUERY_CHARS = 200


def validate_query(query: object) -> str:
    """The query, stripped; a clear error when it cannot be a search / a partition key."""
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"a NASA search query must be a non-empty string, got {query!r}")
    text = " ".join(query.split())
    bad = [c for c in _FORBIDDEN if c in query]
    if bad:
        raise ValueError(f"query {query!r} contains {bad[0]!r}, which a partition key cannot hold")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"query {text[:40]!r}... is longer than {MAX_QUERY_CHARS} characters")
    return text


def require_normal_query(key: object) -> str:
    """``key`` itself when it is already its normal form (``validate_query``), else an error
    naming both: a partition ``"moon "`` would search ``moon`` and write its rows under
    ``query = 'moon'``, where the partition's delete never reaches, so each run appends a copy.
    """
    normal = validate_query(key)
    if normal != key:
        raise ValueError(
            f"query {key!r} is not in normal form {normal!r} (spaces collapsed, none around): "
            f"use {normal!r} instead"
        )
    return normal


def load_queries(path: Path = QUERIES_FILE) -> list[str]:
    """The queries of a YAML file ``queries: [...]`` (or a bare list), each already in normal
    form (they become partition keys as written), de-duplicated."""
    try:
        content = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path} is not valid YAML: {exc}") from None
    if isinstance(content, dict):
        unknown = sorted(set(content) - {"queries"})
        if unknown:
            raise ValueError(
                f"{path}: unknown key(s) {', '.join(map(str, unknown))}; expected 'queries'"
            )
        items = content.get("queries")
    else:
        items = content
    if items is None:
        return []
    if not isinstance(items, list):
        raise ValueError(f"{path}: 'queries' must be a list of strings, got {type(items).__name__}")
    queries: list[str] = []
    for item in items:
        try:
            query = require_normal_query(item)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
        if query not in queries:
            queries.append(query)
    return queries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nasa_assets.queries", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the queries registered as partitions")
    add = sub.add_parser("add", help="register queries as partitions")
    add.add_argument("query", nargs="+")
    args = parser.parse_args(argv)

    import dagster as dg

    if not os.environ.get("DAGSTER_HOME"):
        parser.error("DAGSTER_HOME is not set (make run uses data/dagster_home)")
    with dg.DagsterInstance.get() as instance:
        if args.command == "add":
            try:
                queries = [require_normal_query(q) for q in args.query]
            except ValueError as exc:
                parser.error(str(exc))
            known = set(instance.get_dynamic_partitions(PARTITIONS_NAME))
            new = [q for q in dict.fromkeys(queries) if q not in known]
            instance.add_dynamic_partitions(PARTITIONS_NAME, new)
            print(f"added {len(new)} of {len(queries)}: {', '.join(new) or 'none new'}")
        else:
            print("\n".join(instance.get_dynamic_partitions(PARTITIONS_NAME)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
