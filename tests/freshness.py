#!/usr/bin/env python3
"""Freshness of rows in a cdc-host table: for every row tagged with --notes, the time from its
PostgreSQL commit (the row's created_at, set with clock_timestamp() at insert) to the commit of the
Iceberg snapshot that first added a data file holding it. Prints JSON with count, p50, p95 and max in seconds."""
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
    # A row is visible from the first snapshot that added a file holding it; compaction adds it
    # again later, so every retained snapshot's own additions are looked at, not just the current files.
    first_seen = {}
    for snap in sorted(table.snapshots(), key=lambda s: s.sequence_number):
        for e in table.inspect.entries(snapshot_id=snap.snapshot_id).to_pylist():
            if e["status"] != 1 or e["snapshot_id"] != snap.snapshot_id:  # added by this snapshot
                continue
            path = e["data_file"]["file_path"].removeprefix("file://")
            t = pq.read_table(path, columns=["email", "created_at", "notes"])
            t = t.filter(pc.equal(t["notes"], a.notes))
            for email, created in zip(t["email"].to_pylist(), t["created_at"].to_pylist()):
                if email not in first_seen:
                    first_seen[email] = snap.timestamp_ms / 1000.0 - created.timestamp()
    lags = list(first_seen.values())
    lags.sort()
    if not lags:
        raise SystemExit("no tagged rows found")
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
    print(json.dumps({"rows": len(lags), "p50_seconds": round(q(0.5), 3), "p95_seconds": round(q(0.95), 3), "max_seconds": round(lags[-1], 3)}))


if __name__ == "__main__":
    main()
