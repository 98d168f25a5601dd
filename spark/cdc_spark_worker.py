"""Python-worker side of the cdc-host Spark job (spark/cdc_spark_job.py): the functions `mapInArrow` runs.

They live in their own importable module (shipped to the workers with `--py-files`) rather than in the
job's `__main__`: cloudpickle pickles functions of an importable module by reference, so the module-level
chain cache below survives from one task to the next in a reused Python worker, and a chain package is
compiled once per worker process, not once per task.

Neither function imports `cdc_chain` unless it runs the chain, so the identity (benchmark) mode works
without it.
"""

from __future__ import annotations

import threading
from typing import Iterator

import pyarrow as pa

# Kind column values of the chain's combined output (see `run_chain`).
KIND_COLUMN = "_kind"
KIND_ROW = "row"
KIND_DEAD = "dead"
# Prefix of the dead-letter columns in the combined output.
DEAD_PREFIX = "_dead_"

# The input schema cdc_chain.Chain.process expects.
CHAIN_INPUT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("topic", pa.string()),
        pa.field("partition", pa.int32()),
        pa.field("offset", pa.int64()),
    ]
)

# Chains built in this worker process, by package hash (several micro-batches, several tasks).
_CHAINS: dict = {}
_CHAINS_LOCK = threading.Lock()
# Chains kept per process: the current package and the previous one while a reload rolls out.
_MAX_CHAINS = 2


def _chain(pkg_key: str, pkg_broadcast):
    """The cdc_chain.Chain of package `pkg_key`, built from the broadcast bytes on first use."""
    with _CHAINS_LOCK:
        chain = _CHAINS.get(pkg_key)
        if chain is None:
            import cdc_chain  # only the chain mode needs the extension module

            chain = cdc_chain.Chain(pkg_broadcast.value)
            while len(_CHAINS) >= _MAX_CHAINS:
                _CHAINS.pop(next(iter(_CHAINS)))
            _CHAINS[pkg_key] = chain
        return chain


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """`batch` with exactly the columns of `schema`, in its order and types (missing ones null)."""
    names = set(batch.schema.names)
    columns = []
    for field in schema:
        if field.name in names:
            column = batch.column(field.name)
            if column.type != field.type:
                column = column.cast(field.type)
        else:
            column = pa.nulls(batch.num_rows, field.type)
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _combined(part: pa.RecordBatch, kind: str, out_schema: pa.Schema, n_main: int) -> pa.RecordBatch:
    """One side of the chain's output (`kind`: kept rows or dead letters) in the combined output schema:
    its own columns filled, the other side's null, `_kind` set."""
    rows = part.num_rows
    main_fields = [out_schema.field(i) for i in range(n_main)]
    dead_fields = [out_schema.field(i) for i in range(n_main, len(out_schema) - 1)]
    if kind == KIND_ROW:
        own = _conform(part, pa.schema(main_fields))
        columns = list(own.columns) + [pa.nulls(rows, f.type) for f in dead_fields]
    else:
        unprefixed = pa.schema([f.with_name(f.name[len(DEAD_PREFIX):]) for f in dead_fields])
        own = _conform(part, unprefixed)
        columns = [pa.nulls(rows, f.type) for f in main_fields] + list(own.columns)
    columns.append(pa.array([kind] * rows, out_schema.field(KIND_COLUMN).type))
    return pa.RecordBatch.from_arrays(columns, schema=out_schema)


def run_chain(
    batches: Iterator[pa.RecordBatch],
    pkg_key: str,
    pkg_broadcast,
    out_schema: pa.Schema,
    n_main: int,
) -> Iterator[pa.RecordBatch]:
    """mapInArrow function of the chain mode: every Kafka record batch through the WASM chain.

    `out_schema` is the combined output: the main table's `n_main` columns, the dead-letter columns
    (prefixed with `_dead_`) and `_kind` ("row" or "dead"); every batch the chain returns is conformed
    to it (types cast to Spark's Arrow types, columns the chain did not fill null).
    """
    chain = _chain(pkg_key, pkg_broadcast)
    for batch in batches:
        kept, dead = chain.process(_conform(batch, CHAIN_INPUT_SCHEMA))
        if kept is not None and kept.num_rows:
            yield _combined(kept, KIND_ROW, out_schema, n_main)
        if dead is not None and dead.num_rows:
            yield _combined(dead, KIND_DEAD, out_schema, n_main)


def run_identity(batches: Iterator[pa.RecordBatch], out_schema: pa.Schema) -> Iterator[pa.RecordBatch]:
    """mapInArrow function of the identity (benchmark baseline) mode: the rows unchanged, only conformed
    to the declared output schema (the same Arrow round trip as the chain mode, no WASM)."""
    for batch in batches:
        yield _conform(batch, out_schema)
