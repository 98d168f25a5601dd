//! Arrow batches → Parquet data files of one table (partitioned with a fan-out writer, rolled at the
//! target file size). Files become visible only when [`super::commit`] commits them.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use iceberg::arrow::{RecordBatchPartitionSplitter, schema_to_arrow_schema};
use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::{DataFileWriter, DataFileWriterBuilder};
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::partitioning::PartitioningWriter;
use iceberg::writer::partitioning::fanout_writer::FanoutWriter;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use parquet::file::properties::WriterProperties;

use crate::error::SinkError;

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

// One writer exists per table and commit, so the variants' size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Partitioned { splitter: RecordBatchPartitionSplitter, writer: FanoutWriter<Builder> },
    Unpartitioned(DataFileWriter<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>),
}

/// Writes data files for one table, for one commit.
pub struct TableWriter {
    table_name: String,
    arrow_schema: SchemaRef,
    inner: Inner,
    rows: usize,
}

impl TableWriter {
    /// A writer for the table's current schema and partition spec.
    pub async fn new(
        table: &Table,
        props: WriterProperties,
        target_file_size: usize,
    ) -> Result<Self, SinkError> {
        let table_name = table.identifier().to_string();
        let err = |source| SinkError::Write { table: table_name.clone(), source: Box::new(source) };
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let arrow_schema = Arc::new(schema_to_arrow_schema(&schema).map_err(err)?);
        let location = DefaultLocationGenerator::new(metadata).map_err(err)?;
        let names = DefaultFileNameGenerator::new(
            format!("cdc-{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let parquet = ParquetWriterBuilder::new(props, schema.clone());
        let rolling = RollingFileWriterBuilder::new(
            parquet,
            target_file_size,
            table.file_io().clone(),
            location,
            names,
        );
        let builder = DataFileWriterBuilder::new(rolling);
        let spec = metadata.default_partition_spec().clone();
        let inner = if spec.is_unpartitioned() {
            Inner::Unpartitioned(builder.build(None).await.map_err(err)?)
        } else {
            let splitter =
                RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec).map_err(err)?;
            Inner::Partitioned { splitter, writer: FanoutWriter::new(builder) }
        };
        Ok(Self { table_name, arrow_schema, inner, rows: 0 })
    }

    /// The Arrow schema batches must have (with Iceberg field ids).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// Rows written since this writer was made.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Writes one batch (already in the table's Arrow schema).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        let err = |source| SinkError::Write { table: self.table_name.clone(), source: Box::new(source) };
        self.rows += batch.num_rows();
        match &mut self.inner {
            Inner::Unpartitioned(w) => w.write(batch).await.map_err(err),
            Inner::Partitioned { splitter, writer } => {
                for (key, part) in splitter.split(&batch).map_err(err)? {
                    writer.write(key, part).await.map_err(err)?;
                }
                Ok(())
            }
        }
    }

    /// Closes every open file and returns the data files to commit.
    pub async fn close(self) -> Result<Vec<DataFile>, SinkError> {
        let err = |source| SinkError::Write { table: self.table_name.clone(), source: Box::new(source) };
        match self.inner {
            Inner::Unpartitioned(mut w) => w.close().await.map_err(err),
            Inner::Partitioned { writer, .. } => writer.close().await.map_err(err),
        }
    }
}
