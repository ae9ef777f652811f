"""Asset-metadata helpers: the one way assets declare their columns (`(name, type, description)`
triples -> `dagster/column_schema`) and, for warehouse tables, where they live."""

import dagster as dg


def column_schema(*columns: tuple[str, str, str]) -> dict:
    """``dagster/column_schema`` metadata from ``(name, type, description)`` triples."""
    return {
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(n, t, description=d) for n, t, d in columns]
        )
    }


def warehouse_table(
    schema: str, *columns: tuple[str, str, str], partition_expr: str | None = None
) -> dict:
    """Metadata of an asset stored as a DuckDB table: its schema (``schema.asset_name``, what
    the warehouse IO manager reads), the SQL expression of its partition (for partitioned
    assets), and its columns."""
    location = {"schema": schema}
    if partition_expr is not None:
        location["partition_expr"] = partition_expr
    return {**location, **column_schema(*columns)}
