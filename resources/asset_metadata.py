"""Asset-metadata helpers: the one way assets declare their columns (`(name, type, description)`
triples -> `dagster/column_schema`)."""

import dagster as dg


def column_schema(*columns: tuple[str, str, str]) -> dict:
    """``dagster/column_schema`` metadata from ``(name, type, description)`` triples."""
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns]
        )
    }
