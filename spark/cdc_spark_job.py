#!/usr/bin/env python3
"""cdc-host on Spark Structured Streaming (issue #12): Debezium change events from a Kafka topic, through
the project's WebAssembly transform chain, appended to Apache Iceberg tables, exactly once.

    Kafka topic --readStream--> micro-batch --mapInArrow(cdc_chain.Chain.process)--> Iceberg main table
                                                                                 \\-> dead-letter table

Per micro-batch (`foreachBatch`, on the driver):

1. The chain package (`cdc_chain.package(plugins_dir, config)`: the config and the chain's precompiled
   WASM components, as bytes) is rebuilt when a plugin file or the config changed since the last batch, so
   a new plugin takes effect between micro-batches, never inside one. The bytes are broadcast; every
   Python worker builds `cdc_chain.Chain(pkg)` once per package (spark/cdc_spark_worker.py).
2. The main and dead-letter tables are created if missing (schema from the chain, partition spec and sort
   order from the config); tables the host created are used as they are.
3. `mapInArrow` runs the chain over the Kafka columns; its single output schema holds both results
   (main columns, `_dead_`-prefixed dead-letter columns, `_kind`); the result is cached and split into
   one append per table.
4. Exactly once: a micro-batch whose checkpoint commit did not happen (driver killed after an Iceberg
   commit) is replayed by Spark with the same batch id. Every append carries the snapshot properties
   `cdc-spark.job` (a stable id of the checkpoint location) and `cdc-spark.batch`; a table whose snapshots
   already hold this job's batch (or a later one) skips the append. Each table is checked on its own.

`--identity` is the benchmark baseline, the reference design's job without its transforms: the same Kafka
read, foreachBatch and exactly-once appends, the values decoded with Spark SQL (`from_json`), an identity
mapInArrow, and the same table layout (partitioning, sort order), into `<table>_identity` (no cdc_chain).

Settings: environment variables (see scripts/submit-spark-job --help), overridden by flags. Run through
scripts/submit-spark-job; `--once` processes what the topic holds, prints one JSON summary line
(`{"batches": N, "rows": R, "dead_letters": D, "seconds": S}`) and exits.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.pandas.types import from_arrow_schema, to_arrow_schema
from pyspark.sql.types import (
    DateType,
    DecimalType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

# The worker module ships with --py-files (scripts/submit-spark-job); when this file runs otherwise,
# its directory is on sys.path and `ensure_worker_module` adds it to the SparkContext.
import cdc_spark_worker as worker

LOG = logging.getLogger("cdc-spark")

JOB_PROPERTY = "cdc-spark.job"
BATCH_PROPERTY = "cdc-spark.batch"
CHAIN_PROPERTY = "cdc-host.chain"
IDENTITY_CHAIN = "identity"

# The raw Kafka columns the chain (and the identity mode) read.
KAFKA_COLUMNS = ["key", "value", "topic", "partition", "offset"]

# Kafka records per micro-batch unless set: fits the default 1g driver/executor memory.
DEFAULT_MAX_OFFSETS_PER_TRIGGER = 200_000

# Partition transforms of the host's config -> Iceberg's Spark DDL transform.
SIMPLE_TRANSFORMS = {"year": "years", "month": "months", "day": "days", "hour": "hours"}
PARAM_TRANSFORM = re.compile(r"^(bucket|truncate)\[(\d+)\]$")


# ---------------------------------------------------------------------------------------------- settings


@dataclass
class Settings:
    """The job's settings: environment variables overridden by flags."""

    bootstrap_servers: str
    topic: str
    catalog: str
    warehouse: str
    namespace: str | None  # None: the config's (chain mode) or "analytics"
    table: str | None  # None: the config's (chain mode) or "customers_analytics"
    checkpoint: str | None  # None: ./checkpoints/<namespace>.<table>
    trigger: str  # "processing-time" or "available-now"
    trigger_interval: str
    plugins: str
    config: str | None
    identity: bool
    max_offsets_per_trigger: int | None
    min_partitions: int | None
    jars_file: str | None


def parse_settings(argv: list[str]) -> Settings:
    """Settings from the environment and the command line (flags win)."""
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="cdc_spark_job.py",
        description="cdc-host on Spark Structured Streaming: Kafka -> WASM chain -> Iceberg, exactly once.",
    )
    p.add_argument("--once", action="store_true",
                   help="available-now trigger: process what the topic holds, then exit (SPARK_TRIGGER=available-now)")
    p.add_argument("--trigger-interval", default=env("SPARK_TRIGGER_INTERVAL", "10 seconds"),
                   help="processing-time trigger interval (SPARK_TRIGGER_INTERVAL, default '10 seconds')")
    p.add_argument("--plugins", default=env("CDC_PLUGINS_DIR", "plugins"), help="plugins directory (default plugins)")
    p.add_argument("--config", default=env("CDC_CONFIG", "config/cdc-host.toml"),
                   help="the host's TOML config (default config/cdc-host.toml; '' for none)")
    p.add_argument("--identity", action="store_true",
                   help="benchmark baseline: values decoded by Spark SQL, identity mapInArrow, into <table>_identity "
                        "(same layout; no cdc_chain)")
    # Bounded micro-batches: a batch is cached between its two appends, so an unbounded first batch
    # over a long topic would need memory in proportion to the topic.
    p.add_argument("--max-offsets-per-trigger", type=int,
                   default=DEFAULT_MAX_OFFSETS_PER_TRIGGER if _int_env("MAX_OFFSETS_PER_TRIGGER") is None
                   else _int_env("MAX_OFFSETS_PER_TRIGGER"),
                   help="most Kafka records per micro-batch (MAX_OFFSETS_PER_TRIGGER, default "
                        f"{DEFAULT_MAX_OFFSETS_PER_TRIGGER:,}; 0: no limit)")
    p.add_argument("--min-partitions", type=int, default=_int_env("KAFKA_MIN_PARTITIONS"),
                   help="Spark tasks per micro-batch at least (KAFKA_MIN_PARTITIONS; default: the default parallelism)")
    p.add_argument("--bootstrap-servers", default=env("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"))
    p.add_argument("--topic", default=env("KAFKA_TOPIC", "postgres.public.customers"))
    p.add_argument("--catalog", default=env("ICEBERG_CATALOG", "iceberg"))
    p.add_argument("--warehouse", default=env("ICEBERG_WAREHOUSE", "./warehouse"))
    p.add_argument("--namespace", default=env("ICEBERG_NAMESPACE"))
    p.add_argument("--table", default=env("ICEBERG_TABLE"))
    p.add_argument("--checkpoint", default=env("CHECKPOINT_LOCATION"))
    p.add_argument("--jars-file", default=env("SPARK_JARS_FILE"),
                   help="comma-separated jar list for spark.jars when spark-submit did not set it")
    a = p.parse_args(argv)

    trigger = "available-now" if a.once else env("SPARK_TRIGGER", "processing-time")
    if trigger not in ("processing-time", "available-now"):
        p.error(f"SPARK_TRIGGER must be processing-time or available-now, not {trigger!r}")
    return Settings(
        bootstrap_servers=a.bootstrap_servers,
        topic=a.topic,
        catalog=a.catalog,
        warehouse=os.path.abspath(a.warehouse),
        namespace=a.namespace or None,
        table=a.table or None,
        checkpoint=a.checkpoint or None,
        trigger=trigger,
        trigger_interval=a.trigger_interval,
        plugins=a.plugins,
        config=a.config or None,
        identity=a.identity,
        max_offsets_per_trigger=a.max_offsets_per_trigger,
        min_partitions=a.min_partitions,
        jars_file=a.jars_file,
    )


def _int_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


# ------------------------------------------------------------------------------------------------- spark


def create_session(s: Settings) -> SparkSession:
    """The Spark session: Iceberg's JdbcCatalog on the host's SQLite catalog (`<warehouse>/catalog.db`,
    the iceberg-rust SQL catalog's tables, schema V1), no UI, few shuffle partitions."""
    os.makedirs(s.warehouse, exist_ok=True)
    prefix = f"spark.sql.catalog.{s.catalog}"
    builder = (
        SparkSession.builder.appName("cdc-host-spark")
        .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
        .config(prefix, "org.apache.iceberg.spark.SparkCatalog")
        .config(f"{prefix}.catalog-impl", "org.apache.iceberg.jdbc.JdbcCatalog")
        .config(f"{prefix}.uri", f"jdbc:sqlite:{s.warehouse}/catalog.db")
        .config(f"{prefix}.jdbc.schema-version", "V1")
        .config(f"{prefix}.warehouse", f"file://{s.warehouse}")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        # Streaming: no per-batch progress dump into the log; the job logs its own line per batch.
        .config("spark.sql.streaming.metricsEnabled", "false")
    )
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        # Run by plain python, not spark-submit (which passes --master and --jars itself): the JVM
        # starts with this session, so these settings still apply.
        builder = builder.master(os.environ.get("SPARK_MASTER", "local[2]"))
        if s.jars_file:
            with open(s.jars_file) as f:
                builder = builder.config("spark.jars", f.read().strip())
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(os.environ.get("SPARK_LOG_LEVEL", "WARN"))
    ensure_worker_module(spark)
    return spark


def ensure_worker_module(spark: SparkSession) -> None:
    """Ships spark/cdc_spark_worker.py to the Python workers unless spark-submit --py-files did."""
    py_files = spark.sparkContext.getConf().get("spark.submit.pyFiles", "") or ""
    if "cdc_spark_worker.py" not in py_files:
        spark.sparkContext.addPyFile(worker.__file__)


def kafka_stream(spark: SparkSession, s: Settings) -> DataFrame:
    """The topic as a stream of the raw Kafka columns, from the earliest offset."""
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", s.bootstrap_servers)
        .option("subscribe", s.topic)
        .option("startingOffsets", "earliest")
        .option("failOnDataLoss", "false")
    )
    if s.max_offsets_per_trigger:
        reader = reader.option("maxOffsetsPerTrigger", str(s.max_offsets_per_trigger))
    # Several tasks per Kafka partition when the topic has fewer partitions than cores.
    min_partitions = s.min_partitions or spark.sparkContext.defaultParallelism
    if min_partitions > 1:
        reader = reader.option("minPartitions", str(min_partitions))
    return reader.load().select(*KAFKA_COLUMNS)


# ------------------------------------------------------------------------------------------ chain package


class ChainPackage:
    """The current chain package: rebuilt with `cdc_chain.package` when a plugin file or the config
    changed (checked between micro-batches), broadcast to the workers, described by a driver-side
    `cdc_chain.Chain`."""

    def __init__(self, spark: SparkSession, plugins: str, config: str | None):
        import cdc_chain  # the chain mode's one hard dependency

        self._cdc_chain = cdc_chain
        self._spark = spark
        self.plugins = os.path.abspath(plugins)
        self.config = os.path.abspath(config) if config else None
        self._fingerprint = None
        self.key = None  # sha256 of the package bytes
        self.broadcast = None
        self.info = None  # driver-side cdc_chain.Chain: identity, schema, table, ...
        self.refresh()

    def _files_fingerprint(self) -> tuple:
        """(path, size, mtime) of the config and every .wasm file under the plugins directory."""
        entries = []
        for root, dirs, files in os.walk(self.plugins):
            dirs[:] = sorted(d for d in dirs if d not in ("target", "node_modules", ".git"))
            for name in sorted(files):
                if name.endswith(".wasm"):
                    st = os.stat(os.path.join(root, name))
                    entries.append((os.path.join(root, name), st.st_size, st.st_mtime_ns))
        if self.config:
            st = os.stat(self.config)
            entries.append((self.config, st.st_size, st.st_mtime_ns))
        return tuple(entries)

    def refresh(self) -> bool:
        """Rebuilds the package when its files changed; True when the chain changed."""
        fingerprint = self._files_fingerprint()
        if fingerprint == self._fingerprint:
            return False
        try:
            pkg = self._cdc_chain.package(self.plugins, self.config)
            key = hashlib.sha256(pkg).hexdigest()
            info = self._cdc_chain.Chain(pkg) if key != self.key else None
        except self._cdc_chain.ChainError as e:
            if self.info is None:
                raise
            # As the host does on a hot reload: a change that does not load leaves the running chain
            # in place (tried again when the files change again).
            self._fingerprint = fingerprint
            LOG.error("plugin change rejected, keeping chain %s: %s", self.info.identity, e)
            return False
        self._fingerprint = fingerprint
        if info is None:
            return False
        if self.broadcast is not None:
            # Workers still holding the old chain keep it in their cache; the bytes are no longer needed.
            self.broadcast.unpersist()
        self.key, self.info = key, info
        self.broadcast = self._spark.sparkContext.broadcast(pkg)
        LOG.info("chain package %s (%d bytes): %s", key[:12], len(pkg), info.identity)
        return True


# ------------------------------------------------------------------------------------------------ tables


def quote(name: str) -> str:
    """A Spark SQL identifier part, backquoted."""
    return "`" + name.replace("`", "``") + "`"


def ddl_columns(schema: StructType) -> str:
    """Column list of a CREATE TABLE for `schema`."""
    return ", ".join(
        f"{quote(f.name)} {f.dataType.simpleString()}{'' if f.nullable else ' NOT NULL'}" for f in schema
    )


def partition_ddl(partition: list) -> str:
    """PARTITIONED BY clause of the config's partition spec ([column, transform] pairs)."""
    terms = []
    for column, transform in partition:
        col = quote(column)
        transform = transform.strip().lower()
        if transform == "identity":
            terms.append(col)
        elif transform in SIMPLE_TRANSFORMS:
            terms.append(f"{SIMPLE_TRANSFORMS[transform]}({col})")
        elif m := PARAM_TRANSFORM.match(transform):
            terms.append(f"{m.group(1)}({m.group(2)}, {col})")
        elif transform == "void":
            continue
        else:
            raise ValueError(f"unsupported partition transform {transform!r} of column {column!r}")
    return f" PARTITIONED BY ({', '.join(terms)})" if terms else ""


@dataclass
class TableTarget:
    """One Iceberg table the job appends to, and the last batch of this job it is known to hold."""

    catalog: str
    namespace: str
    table: str
    schema: StructType  # the rows the job writes (before conforming to the table)
    partition: list = field(default_factory=list)
    sort: list = field(default_factory=list)
    last_batch: int | None = None  # this job's newest batch in the table (None: not looked up yet)
    columns: StructType | None = None  # the table's schema, once ensured

    @property
    def name(self) -> str:
        """catalog.namespace.table, quoted for Spark SQL."""
        return ".".join(quote(p) for p in (self.catalog, self.namespace, self.table))

    def ensure(self, spark: SparkSession) -> None:
        """Creates the table if missing (format v2, the config's partitioning and sort
        order); a table that exists (e.g. the host's) is used as is, only gaining columns it lacks."""
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {quote(self.catalog)}.{quote(self.namespace)}")
        if not spark.catalog.tableExists(self.name):
            spark.sql(
                f"CREATE TABLE IF NOT EXISTS {self.name} ({ddl_columns(self.schema)}) USING iceberg"
                f"{partition_ddl(self.partition)}"
                " TBLPROPERTIES ('format-version'='2', 'write.distribution-mode'='hash')"
            )
            if self.sort:
                spark.sql(f"ALTER TABLE {self.name} WRITE LOCALLY ORDERED BY {', '.join(quote(c) for c in self.sort)}")
            LOG.info("created %s", self.name)
        existing = {f.name for f in spark.table(self.name).schema}
        missing = [f for f in self.schema if f.name not in existing]
        if missing:
            spark.sql(
                f"ALTER TABLE {self.name} ADD COLUMNS ("
                + ", ".join(f"{quote(f.name)} {f.dataType.simpleString()}" for f in missing) + ")"
            )
            LOG.info("%s: added columns %s", self.name, [f.name for f in missing])
        self.columns = spark.table(self.name).schema

    def committed_batch(self, spark: SparkSession, job_id: str) -> int:
        """The newest batch id of `job_id` the table's snapshots record (-1: none). Looked up once per
        process; afterwards this process's own appends keep it current."""
        if self.last_batch is None:
            row = spark.sql(
                f"SELECT max(CAST(summary['{BATCH_PROPERTY}'] AS BIGINT)) AS b FROM {self.name}.snapshots"
                f" WHERE summary['{JOB_PROPERTY}'] = '{job_id}'"
            ).first()
            self.last_batch = -1 if row is None or row.b is None else int(row.b)
        return self.last_batch

    def append(self, spark: SparkSession, df: DataFrame, job_id: str, batch_id: int, chain: str) -> bool:
        """Appends `df` as batch `batch_id` of `job_id` unless the table already holds that batch (a
        replay); returns whether it appended. Columns go in the table's order (missing ones null)."""
        if self.committed_batch(spark, job_id) >= batch_id:
            LOG.warning("%s already holds batch %d of job %s (replay): append skipped", self.name, batch_id, job_id)
            return False
        have = set(df.columns)
        df = df.select(*[
            F.col(quote(f.name)) if f.name in have else F.lit(None).cast(f.dataType).alias(f.name)
            for f in self.columns
        ])
        (
            df.writeTo(self.name)
            .option(f"snapshot-property.{JOB_PROPERTY}", job_id)
            .option(f"snapshot-property.{BATCH_PROPERTY}", str(batch_id))
            .option(f"snapshot-property.{CHAIN_PROPERTY}", chain)
            # The combined chain output makes every column nullable; the chain fills required ones.
            .option("check-nullability", "false")
            # Rows reach the writers clustered by partition (the table's sort order or Iceberg's hash
            # distribution): one open file per task, not one per partition (hundreds of months).
            .option("fanout-enabled", "false")
            .append()
        )
        self.last_batch = batch_id
        return True


# -------------------------------------------------------------------------------------------------- job


@dataclass
class Totals:
    batches: int = 0
    rows: int = 0
    dead_letters: int = 0


class Job:
    """The foreachBatch side of the stream: one instance per run, called on the driver per micro-batch."""

    def __init__(self, spark: SparkSession, s: Settings):
        self.spark = spark
        self.s = s
        self.totals = Totals()
        self.package: ChainPackage | None = None
        self.main: TableTarget | None = None
        self.dead: TableTarget | None = None  # None in the identity mode
        if s.identity:
            # The baseline writes the chain's table layout (partitioning, sort order) from the
            # config, so the two runs differ only in how records become rows.
            layout = config_layout(s.config)
            self.main = TableTarget(s.catalog, s.namespace or layout["namespace"],
                                    (s.table or layout["name"]) + "_identity", BASELINE_SCHEMA,
                                    layout["partition"], layout["sort"])
            self.out_schema = BASELINE_SCHEMA
            self.main.ensure(spark)
        else:
            self.package = ChainPackage(spark, s.plugins, s.config)
            self._resolve_tables()
        self.checkpoint = os.path.abspath(
            s.checkpoint or os.path.join("checkpoints", f"{self.main.namespace}.{self.main.table}"))
        # A stable id of the checkpoint: a restart on the same checkpoint is the same job.
        self.job_id = hashlib.sha256(self.checkpoint.encode()).hexdigest()[:16]

    def _resolve_tables(self) -> None:
        """Main and dead-letter tables of the current chain: the config's names, overridden by
        ICEBERG_NAMESPACE/ICEBERG_TABLE; the dead-letter table `<table>_dlq` unless the config names one."""
        info = self.package.info
        t = dict(info.table)
        namespace = self.s.namespace or t.get("namespace") or "analytics"
        config_name = t.get("name") or "customers_analytics"
        name = self.s.table or config_name
        dlq = t.get("dead_letter_table")
        if not dlq or (self.s.table and dlq == f"{config_name}_dlq"):
            dlq = f"{name}_dlq"
        dlq_namespace, _, dlq = dlq.rpartition(".")
        dlq_namespace = dlq_namespace or namespace
        if self.main is not None and (self.main.namespace, self.main.table) != (namespace, name):
            # A reload renamed the table; the checkpoint belongs to the tables the stream started with.
            LOG.warning("the config now names %s.%s; the running job keeps writing %s (restart to switch)",
                        namespace, name, self.main.name)
            namespace, name = self.main.namespace, self.main.table
            dlq_namespace, dlq = self.dead.namespace, self.dead.table
        main_schema = from_arrow_schema(info.schema)
        dead_schema = from_arrow_schema(info.dead_letter_schema)
        previous_main, previous_dead = self.main, self.dead
        self.main = TableTarget(self.s.catalog, namespace, name, main_schema,
                                [tuple(p) for p in t.get("partition") or []], list(t.get("sort") or []))
        self.dead = TableTarget(self.s.catalog, dlq_namespace, dlq, dead_schema)
        # What this process already knows of its committed batches carries over a reload.
        if previous_main is not None:
            self.main.last_batch, self.dead.last_batch = previous_main.last_batch, previous_dead.last_batch
        # The single output schema of mapInArrow: main columns, prefixed dead-letter columns, _kind.
        nullable = lambda fields, prefix="": [StructField(prefix + f.name, f.dataType, True) for f in fields]
        self.out_schema = StructType(
            nullable(main_schema) + nullable(dead_schema, worker.DEAD_PREFIX)
            + [StructField(worker.KIND_COLUMN, pa_to_spark(pa.string()), False)]
        )
        self.main.ensure(self.spark)
        self.dead.ensure(self.spark)

    def __call__(self, df: DataFrame, batch_id: int) -> None:
        """foreachBatch: one micro-batch, through the chain (or the identity), into the tables."""
        started = time.monotonic()
        if self.package is not None and self.package.refresh():
            self._resolve_tables()
        chain = self.package.info.identity if self.package else IDENTITY_CHAIN
        arrow_schema = to_arrow_schema(self.out_schema, timestamp_utc=True)
        if self.package is None:
            df = baseline_decode(df)
            fn = functools.partial(worker.run_identity, out_schema=arrow_schema)
        else:
            fn = functools.partial(
                worker.run_chain,
                pkg_key=self.package.key,
                pkg_broadcast=self.package.broadcast,
                out_schema=arrow_schema,
                n_main=len(self.main.schema),
            )
        out = df.mapInArrow(fn, self.out_schema).persist()
        # Seconds of each step: read + mapInArrow (cached), the rows' append, the dead letters' append.
        steps = {}
        mark = time.monotonic()

        def step(name: str) -> None:
            nonlocal mark
            now = time.monotonic()
            steps[name] = round(now - mark, 2)
            mark = now

        try:
            if self.dead is None:
                rows, dead = out.count(), 0
                step("map")
                main_done = bool(rows) and self.main.append(self.spark, out, self.job_id, batch_id, chain)
                step("rows")
                dead_done = False
            else:
                counts = {r[0]: r[1] for r in out.groupBy(worker.KIND_COLUMN).count().collect()}
                step("map")
                rows, dead = counts.get(worker.KIND_ROW, 0), counts.get(worker.KIND_DEAD, 0)
                kind = F.col(worker.KIND_COLUMN)
                main_cols = [quote(f.name) for f in self.main.schema]
                dead_cols = [F.col(quote(worker.DEAD_PREFIX + f.name)).alias(f.name) for f in self.dead.schema]
                main_done = bool(rows) and self.main.append(
                    self.spark, out.where(kind == worker.KIND_ROW).select(*main_cols), self.job_id, batch_id, chain)
                step("rows")
                crash_point("after-rows")
                dead_done = bool(dead) and self.dead.append(
                    self.spark, out.where(kind == worker.KIND_DEAD).select(*dead_cols), self.job_id, batch_id, chain)
                step("dead_letters")
                crash_point("after-dead-letters")
        finally:
            out.unpersist()
        # Totals count what this run committed (a replayed batch a table already holds adds nothing).
        self.totals.batches += 1
        self.totals.rows += rows if main_done else 0
        self.totals.dead_letters += dead if dead_done else 0
        skipped = (rows and not main_done) or (dead and not dead_done)
        LOG.info(
            "batch %d: %d rows, %d dead letters, chain %s, %.2fs (%s)%s",
            batch_id, rows, dead, chain, time.monotonic() - started,
            ", ".join(f"{k} {v}s" for k, v in steps.items()),
            " (replay: already committed, skipped)" if skipped else "",
        )


_CRASH_HITS: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Crash testing at chosen points: `CDC_SPARK_CRASH_AT=<point>:<n>` ends the driver like `kill -9`
    at the n-th arrival at `<point>` (`after-rows`: a batch's rows are committed, its dead letters are
    not; `after-dead-letters`: both are, Spark's checkpoint does not record the batch yet). Unset
    (always, outside tests), it does nothing."""
    at = os.environ.get("CDC_SPARK_CRASH_AT")
    if not at:
        return
    point, _, n = at.partition(":")
    if point != name:
        return
    _CRASH_HITS[name] = _CRASH_HITS.get(name, 0) + 1
    if _CRASH_HITS[name] == int(n or 1):
        print(f"CDC_SPARK_CRASH_AT={at}: ending the driver at {name}", file=sys.stderr, flush=True)
        os._exit(137)


# ------------------------------------------------------------------------------ the benchmark baseline

# The baseline's rows: the customers table's columns as the reference design's job decodes them with
# Spark SQL (no plugin columns, no rules), and the metadata columns.
BASELINE_SCHEMA = StructType([
    StructField("customer_id", LongType()),
    StructField("email", StringType()),
    StructField("first_name", StringType()),
    StructField("last_name", StringType()),
    StructField("city", StringType()),
    StructField("state", StringType()),
    StructField("country", StringType()),
    StructField("customer_tier", StringType()),
    StructField("lifetime_value", DecimalType(12, 2)),
    StructField("registration_date", DateType()),
    StructField("created_at", TimestampType()),
    StructField("notes", StringType()),
    StructField("_ingestion_timestamp", TimestampType()),
    StructField("_source_system", StringType()),
    StructField("_cdc_operation", StringType()),
    StructField("_pipeline_id", StringType()),
])


def config_layout(config: str | None) -> dict:
    """Table name, partitioning and sort order of the host's config (the baseline reads them without
    cdc_chain)."""
    import tomllib

    table = {}
    if config:
        with open(config, "rb") as f:
            table = tomllib.load(f).get("table", {})
    return {
        "namespace": table.get("namespace", "analytics"),
        "name": table.get("name", "customers_analytics"),
        "partition": [(p["column"], p["transform"]) for p in table.get("partition", [])],
        "sort": list(table.get("sort", [])),
    }


def baseline_decode(df: DataFrame) -> DataFrame:
    """Debezium JSON values of the customers table (JSON converter, with or without schemas; decimals
    as base64 bytes, scale 2) decoded with Spark SQL, as the reference design's job does: creates,
    updates and snapshot reads, one row each (deletes and tombstones carry no row)."""
    after = StructType([StructField(f.name, StringType() if f.name in ("lifetime_value", "created_at")
                                    else IntegerType() if f.name == "registration_date" else f.dataType)
                        for f in BASELINE_SCHEMA if not f.name.startswith("_")])
    envelope = StructType([StructField("after", after), StructField("op", StringType())])
    parsed = F.from_json(F.col("value").cast("string"),
                         StructType([StructField("payload", envelope)] + list(envelope.fields)))
    e = F.coalesce(parsed.getField("payload"), F.struct(parsed.getField("after").alias("after"),
                                                       parsed.getField("op").alias("op")))
    a = e.getField("after")
    # A two's-complement big-endian unscaled value: unsigned, minus 256^len when the top bit is set.
    raw = F.unbase64(a.getField("lifetime_value"))
    unsigned = F.conv(F.hex(raw), 16, 10).cast(DecimalType(38, 0))
    signed = F.when(F.ascii(raw) >= 128, unsigned - F.pow(F.lit(256), F.length(raw)).cast(DecimalType(38, 0))) \
        .otherwise(unsigned)
    columns = {f.name: a.getField(f.name) for f in after}
    columns["lifetime_value"] = (signed / 100).cast(DecimalType(12, 2))
    columns["registration_date"] = F.date_add(F.lit("1970-01-01").cast("date"), a.getField("registration_date"))
    columns["created_at"] = F.to_timestamp(a.getField("created_at"))
    columns["_ingestion_timestamp"] = F.current_timestamp()
    columns["_source_system"] = F.lit("postgres_cdc")
    columns["_cdc_operation"] = F.when(e.getField("op") == "u", "UPDATE").otherwise("INSERT")
    columns["_pipeline_id"] = F.lit("postgres-to-iceberg")
    return df.where(a.isNotNull()).select(*[columns[f.name].cast(f.dataType).alias(f.name) for f in BASELINE_SCHEMA])


def pa_to_spark(t: pa.DataType):
    """Spark type of one Arrow type."""
    return from_arrow_schema(pa.schema([pa.field("c", t)]))[0].dataType


# Restarts of a query that failed with Spark 4.1.1's Kafka-metrics NullPointerException (below).
MAX_METRICS_BUG_RESTARTS = 3


def is_kafka_metrics_bug(e: Exception) -> bool:
    """Whether `e` is SPARK-55271 (apache/spark#55236, Spark 4.1.1): KafkaMicroBatchStream.metrics()
    throws a NullPointerException in the progress report of a micro-batch that a restart replays from the
    offset log (no latestOffset() call yet in this run). It is thrown after the batch's commit is in the
    checkpoint, so starting the query again simply continues with the next batch."""
    text = f"{e} {getattr(e, '_stackTrace', '') or ''}"
    return 'because the return value of "scala.Option.get()" is null' in text and (
        "KafkaMicroBatchStream" in text or "IterableOps.map" in text)


def run_stream(spark: SparkSession, s: Settings, job: Job) -> None:
    """Runs the streaming query until it ends (--once: the topic is drained) or is stopped; raises its
    exception if it fails."""
    stopping = threading.Event()
    query = None

    def stop(signum, _frame):
        # SIGTERM/SIGINT: end after the running micro-batch (its commit stays consistent either way).
        LOG.info("signal %d: stopping the stream", signum)
        stopping.set()
        if query is not None:
            threading.Thread(target=query.stop, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    restarts = 0
    while not stopping.is_set():
        writer = (
            kafka_stream(spark, s).writeStream.queryName(f"cdc-spark-{job.job_id}")
            .option("checkpointLocation", job.checkpoint)
            .foreachBatch(job)
        )
        if s.trigger == "available-now":
            writer = writer.trigger(availableNow=True)
        else:
            writer = writer.trigger(processingTime=s.trigger_interval)
        query = writer.start()
        try:
            query.awaitTermination()
            return
        except Exception as e:
            if not is_kafka_metrics_bug(e) or restarts >= MAX_METRICS_BUG_RESTARTS:
                raise
            restarts += 1
            LOG.warning("Spark's Kafka source failed reporting the replayed batch's metrics (SPARK-55271); "
                        "its commit is in the checkpoint: restarting the query")


# ------------------------------------------------------------------------------------------------- main


def failure_reason(e: Exception) -> str:
    """The line that says why a query failed: the chain's own error when a worker raised one (Spark
    wraps it deep inside its own message), else the exception's first line."""
    lines = str(e).strip().splitlines()
    for line in lines:
        if "cdc_chain.ChainError:" in line:
            return line.split("cdc_chain.ChainError:", 1)[1].strip()
    return lines[0] if lines else type(e).__name__


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its callback server logs every command
    s = parse_settings(argv)
    started = time.monotonic()
    spark = create_session(s)
    try:
        job = Job(spark, s)
    except ImportError as e:
        LOG.error("cannot import cdc_chain (%s): build the cdc_chain wheel: scripts/build-spark-wheel", e)
        return 2
    except Exception as e:
        if type(e).__name__ != "ChainError":
            raise
        LOG.error("cannot load the chain: %s", e)
        return 2
    LOG.info("spark ready in %.1fs; %s -> %s%s (job %s, checkpoint %s, trigger %s)",
             time.monotonic() - started, s.topic, job.main.name,
             f" + {job.dead.name}" if job.dead else "", job.job_id, job.checkpoint, s.trigger)

    try:
        run_stream(spark, s, job)
    except Exception as e:  # the query failed: its exception, not a Python traceback of the wait
        LOG.error("stream failed: %s", failure_reason(e))
        return 1
    finally:
        seconds = time.monotonic() - started
    if s.trigger == "available-now":
        print(json.dumps({"batches": job.totals.batches, "rows": job.totals.rows,
                          "dead_letters": job.totals.dead_letters, "seconds": round(seconds, 3)}), flush=True)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
