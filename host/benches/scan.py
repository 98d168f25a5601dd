"""Full-scan time of a table with pyiceberg, against a freshly written table holding the same rows.

    python host/benches/scan.py --warehouse WH --table analytics.customers_analytics

Reads the table (position deletes applied) three times, writes its rows once into a new table with
the same schema and partition spec (no deletes, one write), scans that three times too, and prints
JSON: rows, files of each, best scan seconds of each and their ratio.
"""

import argparse
import json
import os
import time

from pyiceberg.catalog.sql import SqlCatalog


def best_scan(table, runs=3):
    best, rows = None, 0
    for _ in range(runs):
        started = time.perf_counter()
        rows = table.scan().to_arrow().num_rows
        took = time.perf_counter() - started
        best = took if best is None else min(best, took)
    return best, rows


def files(table):
    data = deletes = 0
    for task in table.scan().plan_files():
        data += 1
        deletes += len(task.delete_files)
    return data, deletes


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--warehouse", required=True)
    p.add_argument("--table", required=True)
    p.add_argument("--catalog", default="iceberg")
    args = p.parse_args()
    wh = os.path.abspath(args.warehouse)
    catalog = SqlCatalog(args.catalog, uri=f"sqlite:///{wh}/catalog.db", warehouse=f"file://{wh}")
    table = catalog.load_table(args.table)
    seconds, rows = best_scan(table)
    fresh_name = args.table + "_fresh_copy"
    if catalog.table_exists(fresh_name):
        catalog.drop_table(fresh_name)
    fresh = catalog.create_table(fresh_name, schema=table.schema(), partition_spec=table.spec())
    fresh.append(table.scan().to_arrow())
    fresh_seconds, fresh_rows = best_scan(fresh)
    catalog.drop_table(fresh_name)
    print(json.dumps({
        "rows": rows,
        "fresh_rows": fresh_rows,
        "files": files(table),
        "scan_seconds": round(seconds, 3),
        "fresh_scan_seconds": round(fresh_seconds, 3),
        "ratio": round(seconds / fresh_seconds, 2),
    }))


if __name__ == "__main__":
    main()
