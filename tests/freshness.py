#!/usr/bin/env python3
"""Freshness of rows in a cdc-host table: for every row tagged with --notes, the time from its
PostgreSQL commit (the row's created_at, set with clock_timestamp() at insert) to the commit of the
Iceberg snapshot that added its data file. Prints JSON with count, p50, p95 and max in seconds."""
import argparse
import json
import os

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--notes", required=True)
    a = p.parse_args()
    wh = os.path.abspath(a.warehouse)
    catalog = SqlCatalog("iceberg", uri=f"sqlite:///{os.path.join(wh, 'catalog.db')}", warehouse=f"file://{wh}")
    table = catalog.load_table(a.table)
    committed_at = {s.snapshot_id: s.timestamp_ms for s in table.snapshots()}
    lags = []
    for e in table.inspect.entries().to_pylist():
        if e["status"] != 1:  # ADDED
            continue
        path = e["data_file"]["file_path"].removeprefix("file://")
        t = pq.read_table(path, columns=["created_at", "notes"])
        t = t.filter(pc.equal(t["notes"], a.notes))
        at = committed_at[e["snapshot_id"]]
        for c in t["created_at"].to_pylist():
            lags.append(at / 1000.0 - c.timestamp())
    lags.sort()
    if not lags:
        raise SystemExit("no tagged rows found")
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
    print(json.dumps({"rows": len(lags), "p50_seconds": round(q(0.5), 3), "p95_seconds": round(q(0.95), 3), "max_seconds": round(lags[-1], 3)}))


if __name__ == "__main__":
    main()
