#!/usr/bin/env python3
"""Reads an Iceberg table of a cdc-host SQLite catalog with Spark (pyspark 4.1.1) and
iceberg-spark-runtime-4.1_2.13:1.11.0 (Iceberg's JdbcCatalog on the same catalog database) and prints its
rows as JSON lines sorted by customer_id, every value as text.

Usage: read_table_spark.py WAREHOUSE NAMESPACE.TABLE "col, col" JAR[,JAR...]
(scripts/spark-setup installs pyspark into .venv-spark and the jars into ~/.m2)."""
import json, os, sys
from pyspark.sql import SparkSession

wh, table, cols, jars = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
wh = os.path.abspath(wh)
spark = (
    SparkSession.builder.master("local[1]")
    .config("spark.jars", jars)
    .config("spark.sql.extensions", "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions")
    .config("spark.sql.catalog.iceberg", "org.apache.iceberg.spark.SparkCatalog")
    .config("spark.sql.catalog.iceberg.catalog-impl", "org.apache.iceberg.jdbc.JdbcCatalog")
    .config("spark.sql.catalog.iceberg.uri", f"jdbc:sqlite:{wh}/catalog.db")
    .config("spark.sql.catalog.iceberg.warehouse", f"file://{wh}")
    .config("spark.ui.enabled", "false")
    .getOrCreate()
)
spark.sparkContext.setLogLevel("ERROR")
df = spark.sql(f"SELECT {cols} FROM iceberg.{table} ORDER BY customer_id")
for r in df.collect():
    print(json.dumps({k: (str(v) if v is not None else None) for k, v in r.asDict().items()}))
