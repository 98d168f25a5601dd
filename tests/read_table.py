#!/usr/bin/env python3
"""Reads an Iceberg table written by cdc-host through pyiceberg (an independent reader) and prints
it as JSON: schema, partition spec, sort order, snapshot summaries and every row.

Usage: read_table.py --warehouse DIR --table NAMESPACE.TABLE [--catalog iceberg]
                     [--catalog-uri URI] [--columns a,b] (rows with these columns only) [--drop]

--catalog-uri is the host's: none for the SQLite catalog in DIR/catalog.db, `sqlite:...`,
`postgresql://user:password@host:port/db` (SQL catalog on PostgreSQL) or `http://host:port` (Iceberg
REST catalog). --drop drops the table from the catalog afterwards (and its namespace once empty).
"""
import argparse
import datetime
import decimal
import json
import os
import sys

from pyiceberg.catalog.rest import RestCatalog
from pyiceberg.catalog.sql import SqlCatalog


def plain(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return v


def describe_file(f, sort_column):
    """Record count, partition, codec and sortedness of one data file, read with pyarrow directly."""
    import pyarrow.parquet as pq

    path = f["file_path"].removeprefix("file://")
    meta = pq.ParquetFile(path).metadata
    codecs = sorted({meta.row_group(g).column(c).compression for g in range(meta.num_row_groups) for c in range(meta.num_columns)})
    info = {
        "path": f["file_path"],
        "records": f["record_count"],
        "partition": {k: plain(v) for k, v in (f.get("partition") or {}).items()},
        "codecs": codecs,
    }
    names = pq.ParquetFile(path).schema_arrow.names
    if sort_column in names:
        values = pq.read_table(path, columns=[sort_column]).column(0).to_pylist()
        present = [v for v in values if v is not None]
        info["sorted"] = values[: len(values) - len(present)] == [None] * (len(values) - len(present)) and present == sorted(present)
        if present:
            info["range"] = [present[0], present[-1]]
    return info


def open_catalog(name, uri, warehouse):
    """The catalog the host used: `uri` as cdc-host takes it (--catalog-uri)."""
    wh = os.path.abspath(warehouse)
    if not uri:
        uri = f"sqlite:///{os.path.join(wh, 'catalog.db')}"
    if uri.startswith(("http://", "https://")):
        return RestCatalog(name, uri=uri)
    if uri.startswith(("postgresql://", "postgres://")):
        uri = "postgresql+psycopg2://" + uri.split("://", 1)[1]
    elif uri.startswith("sqlite:"):
        # sqlx forms (sqlite:path, sqlite://path, sqlite:///abs, with ?mode=rwc) -> SQLAlchemy's
        # sqlite:///<absolute path>.
        path = uri.removeprefix("sqlite:").split("?", 1)[0]
        if path.startswith("//"):
            path = path[2:]
        uri = "sqlite:///" + os.path.abspath(path)
    return SqlCatalog(name, uri=uri, warehouse=f"file://{wh}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--catalog", default="iceberg")
    p.add_argument("--catalog-uri", "--uri", dest="uri", help="the catalog URI cdc-host used (--catalog-uri)")
    p.add_argument("--drop", action="store_true", help="drop the table (and its namespace once empty) afterwards")
    p.add_argument("--summary-only", action="store_true")
    p.add_argument("--columns", help="comma-separated columns to read (default: all)")
    p.add_argument("--sort-column", default="customer_id", help="report whether each data file is sorted by it")
    a = p.parse_args()
    catalog = open_catalog(a.catalog, a.uri, a.warehouse)
    table = catalog.load_table(a.table)
    out = {
        "schema": [
            {"id": f.field_id, "name": f.name, "type": str(f.field_type), "required": f.required}
            for f in table.schema().fields
        ],
        "partition_spec": [
            {"source": table.schema().find_field(f.source_id).name, "transform": str(f.transform), "name": f.name}
            for f in table.spec().fields
        ],
        "sort_order": [
            {"source": table.schema().find_field(f.source_id).name, "direction": str(f.direction), "null_order": str(f.null_order)}
            for f in table.sort_order().fields
        ],
        "snapshots": [
            {"id": s.snapshot_id, "sequence_number": s.sequence_number, "summary": dict(s.summary.additional_properties) | {"operation": str(s.summary.operation)}}
            # In commit order (the metadata file lists snapshots in no particular order).
            for s in sorted(table.snapshots(), key=lambda s: s.sequence_number)
        ],
        "properties": dict(table.properties),
    }
    if not a.summary_only:
        fields = tuple(a.columns.split(",")) if a.columns else ("*",)
        arrow = table.scan(selected_fields=fields).to_arrow()
        out["num_rows"] = arrow.num_rows
        out["rows"] = [{k: plain(v) for k, v in row.items()} for row in arrow.to_pylist()]
        out["files"] = [describe_file(f, a.sort_column) for f in table.inspect.files().to_pylist()]
    if a.drop:
        catalog.drop_table(a.table)
        namespace = a.table.rsplit(".", 1)[0]
        if not catalog.list_tables(namespace):
            catalog.drop_namespace(namespace)
    json.dump(out, sys.stdout, default=plain)


if __name__ == "__main__":
    main()
