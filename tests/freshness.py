#!/usr/bin/env python3
"""Freshness of rows in a cdc-host table: for every row tagged with --notes, the time from its
PostgreSQL commit (the row's created_at, set with clock_timestamp() at insert) to the commit of the
Iceberg snapshot that first added a data file holding it. Prints JSON with count, p50, p95 and max in
seconds, and the snapshots and files the table holds at the end.

Maintenance expires old snapshots while the host runs, and a row whose snapshot expired would seem to
arrive with the compaction that rewrote it. Run it every few seconds during the run with --state: each
run reads the snapshots not read before and keeps what it learned in that file."""
import argparse
import json
import os

import pyarrow.compute as pc
import pyarrow.parquet as pq
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import NoSuchTableError


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--notes", required=True)
    p.add_argument("--state", help="JSON file of the snapshots read and rows seen by earlier runs")
    a = p.parse_args()
    state = {"snapshots": [], "first_seen": {}}
    if a.state and os.path.exists(a.state):
        with open(a.state) as f:
            state = json.load(f)
    read = set(state["snapshots"])
    first_seen = state["first_seen"]
    wh = os.path.abspath(a.warehouse)
    catalog = SqlCatalog("iceberg", uri=f"sqlite:///{os.path.join(wh, 'catalog.db')}", warehouse=f"file://{wh}")
    try:
        table = catalog.load_table(a.table)
    except NoSuchTableError:
        table = None
    snapshots = [] if table is None else sorted(table.snapshots(), key=lambda s: s.sequence_number)
    # A row is visible from the first snapshot that added a file holding it; compaction adds it
    # again later, so every snapshot's own additions are looked at, not just the current files.
    for snap in snapshots:
        if snap.snapshot_id in read:
            continue
        try:
            entries = table.inspect.entries(snapshot_id=snap.snapshot_id).to_pylist()
        except Exception:  # expired between listing and reading
            continue
        for e in entries:
            if e["status"] != 1 or e["snapshot_id"] != snap.snapshot_id:  # added by this snapshot
                continue
            path = e["data_file"]["file_path"].removeprefix("file://")
            t = pq.read_table(path, columns=["email", "created_at", "notes"])
            t = t.filter(pc.equal(t["notes"], a.notes))
            for email, created in zip(t["email"].to_pylist(), t["created_at"].to_pylist()):
                if email not in first_seen:
                    first_seen[email] = snap.timestamp_ms / 1000.0 - created.timestamp()
        read.add(snap.snapshot_id)
    if a.state:
        with open(a.state, "w") as f:
            json.dump({"snapshots": sorted(read), "first_seen": first_seen}, f)
    lags = sorted(first_seen.values())
    if not lags:
        raise SystemExit("no tagged rows found")
    q = lambda f: lags[min(len(lags) - 1, int(f * len(lags)))]
    files = table.inspect.files() if table is not None and table.current_snapshot() else None
    print(json.dumps({
        "rows": len(lags), "p50_seconds": round(q(0.5), 3), "p95_seconds": round(q(0.95), 3),
        "max_seconds": round(lags[-1], 3),
        # What the table holds at the end: maintenance keeps both bounded while commits are frequent.
        "snapshots_retained": len(snapshots),
        "current_files": 0 if files is None else files.num_rows,
    }))


if __name__ == "__main__":
    main()
