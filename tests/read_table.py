#!/usr/bin/env python3
"""Reads an Iceberg table written by cdc-host through pyiceberg (an independent reader) and prints
it as JSON: schema, partition spec, sort order, snapshot summaries and every row.

Usage: read_table.py --warehouse DIR --table NAMESPACE.TABLE [--catalog iceberg] [--uri URI]
"""
import argparse
import datetime
import decimal
import json
import os
import sys

from pyiceberg.catalog.sql import SqlCatalog


def plain(v):
    if isinstance(v, decimal.Decimal):
        return str(v)
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.hex()
    return v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--catalog", default="iceberg")
    p.add_argument("--uri")
    p.add_argument("--summary-only", action="store_true")
    a = p.parse_args()
    wh = os.path.abspath(a.warehouse)
    uri = a.uri or f"sqlite:///{os.path.join(wh, 'catalog.db')}"
    catalog = SqlCatalog(a.catalog, uri=uri, warehouse=f"file://{wh}")
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
            {"id": s.snapshot_id, "summary": dict(s.summary.additional_properties) | {"operation": str(s.summary.operation)}}
            for s in table.snapshots()
        ],
        "properties": dict(table.properties),
    }
    if not a.summary_only:
        arrow = table.scan().to_arrow()
        out["num_rows"] = arrow.num_rows
        out["rows"] = [{k: plain(v) for k, v in row.items()} for row in arrow.to_pylist()]
        files = list(table.inspect.files().to_pylist()) if hasattr(table, "inspect") else []
        out["files"] = [{"path": f["file_path"], "records": f["record_count"], "partition": {k: plain(v) for k, v in (f.get("partition") or {}).items()}} for f in files]
    json.dump(out, sys.stdout, default=plain)


if __name__ == "__main__":
    main()
