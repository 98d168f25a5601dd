//! Arrow batches → Parquet data files of one table.
//!
//! Rows are buffered up to a memory budget, each batch put in write order as it arrives (by
//! partition and, within a partition, by the table's sort order: [`RowOrder`]), then merged and
//! written one partition at a time by each of one task per core ([`write_runs`]): a task has one
//! file open at a time (rolled at the target size), every file holds one partition and is sorted,
//! and memory does not grow with the number of partitions a batch touches. Files become visible
//! only when [`super::commit`] commits them.

use std::collections::HashSet;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::ByteArrayType;
use arrow_array::{Array, ArrayRef, BooleanArray, GenericByteArray, RecordBatch, StructArray, UInt32Array};
use arrow_ord::sort::{SortColumn, SortOptions, lexsort_to_indices};
use arrow_schema::{DataType, SchemaRef};
use arrow_select::concat::concat;
use arrow_select::interleave::interleave_record_batch;
use arrow_select::take::{take, take_record_batch};
use iceberg::arrow::{PartitionValueCalculator, arrow_struct_to_literal, schema_to_arrow_schema};
use iceberg::spec::{
    DataFile, DataFileFormat, Literal, PartitionKey, PartitionSpec, SchemaRef as IcebergSchema, StructType,
};
use iceberg::table::Table;
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};
use iceberg::{Error as IcebergError, ErrorKind};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::error::SinkError;

/// Rows buffered before they are ordered and written, by default (Arrow memory).
pub const DEFAULT_BUFFER_BYTES: usize = 96 << 20;

/// Rows per Arrow batch handed to the Parquet writer: each lane holds one such batch while it
/// writes (4,096 rows: a one-partition stream's peak RSS fell 5–10 MB against 16,384, at the same speed).
const WRITE_CHUNK: usize = 4 * 1024;

/// A run is split over several lanes only into files of at least this many rows.
const MIN_SPLIT_ROWS: usize = 64 * 1024;

/// Data files of fewer rows than this are small: written with [`FileSettings::small_props`].
pub const SMALL_FILE_ROWS: usize = 16 * 1024;

/// Whether a file of `rows` rows is small ([`SMALL_FILE_ROWS`]).
fn is_small(rows: usize) -> bool {
    rows < SMALL_FILE_ROWS
}

/// A run's number and, when it is split, the number of its piece.
type Piece = (usize, usize);

/// One partition's rows in write order: `(batch, row)` pairs into the batches given to
/// [`RowOrder::runs`] (32-bit: a commit's runs are held while its files are written).
pub struct Run {
    pub partition: Option<PartitionKey>,
    pub rows: Vec<(u32, u32)>,
}

/// The order rows are written in: by partition, then by the table's sort order (nulls first).
pub struct RowOrder {
    spec: PartitionSpec,
    schema: IcebergSchema,
    calculator: Option<PartitionValueCalculator>,
    partition_type: Option<StructType>,
    /// Arrow column indices of the sort order's fields.
    sort: Vec<usize>,
}

impl RowOrder {
    /// The order of `table`'s default partition spec and sort order, for rows in `arrow_schema`.
    pub fn new(table: &Table, arrow_schema: &SchemaRef) -> Result<Self, IcebergError> {
        let metadata = table.metadata();
        let schema = metadata.current_schema().clone();
        let spec = metadata.default_partition_spec().as_ref().clone();
        let (calculator, partition_type) = if spec.is_unpartitioned() {
            (None, None)
        } else {
            (Some(PartitionValueCalculator::try_new(&spec, &schema)?), Some(spec.partition_type(&schema)?))
        };
        let sort = metadata
            .default_sort_order()
            .fields
            .iter()
            .filter_map(|f| schema.field_by_id(f.source_id))
            .filter_map(|f| arrow_schema.index_of(&f.name).ok())
            .collect();
        Ok(Self { spec, schema, calculator, partition_type, sort })
    }

    /// `batch`'s rows in write order (by partition, then sort order). A buffer of batches sorted
    /// this way while they are still in the cache is gathered into files block by block, not row
    /// by row from all over the buffer: each run takes a few contiguous rows of every batch.
    pub fn sort_batch(&self, batch: RecordBatch) -> Result<RecordBatch, IcebergError> {
        match self.sort_indices(&batch)? {
            Some(indices) => take_record_batch(&batch, &indices)
                .map_err(|e| IcebergError::new(ErrorKind::Unexpected, e.to_string())),
            None => Ok(batch),
        }
    }

    /// The row numbers of `batch` in write order; `None` when its order does not matter.
    pub fn sort_indices(&self, batch: &RecordBatch) -> Result<Option<UInt32Array>, IcebergError> {
        let mut keys: Vec<ArrayRef> = Vec::new();
        if let Some(c) = &self.calculator {
            let partitions = c.calculate(batch)?;
            let s = partitions.as_any().downcast_ref::<StructArray>().expect("partition values are a struct");
            keys.extend(s.columns().iter().cloned());
        }
        keys.extend(self.sort.iter().map(|&i| batch.column(i).clone()));
        if keys.is_empty() || batch.num_rows() < 2 {
            return Ok(None);
        }
        order_of(&keys).map(Some)
    }

    /// The rows of `batches` grouped by partition, each group in sort order.
    pub fn runs(&self, batches: &[RecordBatch]) -> Result<Vec<Run>, IcebergError> {
        self.runs_of(batches, None)
    }

    /// [`Self::runs`] of the rows `keep` selects (one mask per batch; `None`: every row).
    pub fn runs_of(
        &self,
        batches: &[RecordBatch],
        keep: Option<&[BooleanArray]>,
    ) -> Result<Vec<Run>, IcebergError> {
        let arrow = |e: arrow_schema::ArrowError| IcebergError::new(ErrorKind::Unexpected, e.to_string());
        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let mut locations: Vec<(u32, u32)> = Vec::with_capacity(total);
        // With a selection: the selected rows' numbers in the batches' concatenation.
        let mut selected: Option<Vec<u32>> = keep.map(|_| Vec::with_capacity(total));
        let mut first = 0;
        for (b, batch) in batches.iter().enumerate() {
            match (keep, selected.as_mut()) {
                (Some(keep), Some(numbers)) => {
                    let mask = &keep[b];
                    for r in (0..batch.num_rows()).filter(|&r| mask.value(r)) {
                        locations.push((b as u32, r as u32));
                        numbers.push((first + r) as u32);
                    }
                }
                _ => locations.extend((0..batch.num_rows() as u32).map(|r| (b as u32, r))),
            }
            first += batch.num_rows();
        }
        if locations.is_empty() {
            return Ok(Vec::new());
        }
        let selected = selected.map(UInt32Array::from);
        let select = |a: ArrayRef| -> Result<ArrayRef, IcebergError> {
            match &selected {
                Some(s) => take(&a, s, None).map_err(arrow),
                None => Ok(a),
            }
        };
        let concat_all = |arrays: Vec<ArrayRef>| -> Result<ArrayRef, IcebergError> {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            concat(&refs).map_err(arrow)
        };
        // Partition values (one struct per row), then the sort columns.
        let partitions = match &self.calculator {
            Some(c) => Some(select(concat_all(
                batches.iter().map(|b| c.calculate(b)).collect::<Result<Vec<_>, _>>()?,
            )?)?),
            None => None,
        };
        let mut keys: Vec<ArrayRef> = Vec::new();
        if let Some(p) = &partitions {
            let s = p.as_any().downcast_ref::<StructArray>().expect("partition values are a struct");
            keys.extend(s.columns().iter().cloned());
        }
        let partition_keys = keys.len();
        for &i in &self.sort {
            keys.push(select(concat_all(batches.iter().map(|b| b.column(i).clone()).collect())?)?);
        }
        let order = if keys.is_empty() {
            UInt32Array::from_iter_values(0..locations.len() as u32)
        } else {
            order_of(&keys)?
        };
        let rows_of = |order: &[u32]| order.iter().map(|&i| locations[i as usize]).collect();
        let (Some(partitions), Some(partition_type)) = (partitions, &self.partition_type) else {
            return Ok(vec![Run { partition: None, rows: rows_of(order.values()) }]);
        };
        // Runs of equal partition values in the sorted order.
        let sorted: Vec<ArrayRef> = keys[..partition_keys]
            .iter()
            .map(|k| take(k, &order, None))
            .collect::<Result<_, _>>()
            .map_err(arrow)?;
        let ranges = arrow_ord::partition::partition(&sorted).map_err(arrow)?.ranges();
        let mut runs = Vec::with_capacity(ranges.len());
        for range in ranges {
            let first = order.value(range.start) as usize;
            let value = arrow_struct_to_literal(&partitions.slice(first, 1), partition_type)?;
            let Some(Some(Literal::Struct(data))) = value.into_iter().next() else {
                return Err(IcebergError::new(ErrorKind::DataInvalid, "a row has no partition value"));
            };
            runs.push(Run {
                partition: Some(PartitionKey::new(self.spec.clone(), self.schema.clone(), data)),
                rows: rows_of(&order.values()[range]),
            });
        }
        Ok(runs)
    }
}

/// The row numbers that order rows by `keys` (ascending, nulls first).
fn order_of(keys: &[ArrayRef]) -> Result<UInt32Array, IcebergError> {
    match integer_order(keys) {
        Some(order) => Ok(order),
        None => lex_order(keys),
    }
}

/// [`order_of`] for any keys, compared column by column.
fn lex_order(keys: &[ArrayRef]) -> Result<UInt32Array, IcebergError> {
    let columns: Vec<SortColumn> = keys
        .iter()
        .map(|k| SortColumn {
            values: k.clone(),
            options: Some(SortOptions { descending: false, nulls_first: true }),
        })
        .collect();
    lexsort_to_indices(&columns, None).map_err(|e| IcebergError::new(ErrorKind::Unexpected, e.to_string()))
}

/// [`order_of`] for the common keys: integer columns without nulls that fit, with a row number, in
/// 128 bits (a `month`, `year`, `day` or `bucket` partition value and a `long` sort key). Each row
/// becomes one integer (its keys, then its row number), and those are sorted: a sort without a
/// comparator called through the columns' types for every comparison (which took ~2.5 % of an
/// append run's samples). Equal keys keep their order.
fn integer_order(keys: &[ArrayRef]) -> Option<UInt32Array> {
    use arrow_array::types::{Date32Type, Int32Type, Int64Type};
    let width = |k: &ArrayRef| match k.data_type() {
        _ if k.null_count() > 0 => None,
        DataType::Int32 | DataType::Date32 => Some(32),
        DataType::Int64 => Some(64),
        _ => None,
    };
    let bits = keys.iter().map(width).sum::<Option<u32>>()?;
    let n = u32::try_from(keys.first()?.len()).ok()?;
    if bits + 32 > 128 {
        return None;
    }
    let mut rows: Vec<u128> = (0..n).map(u128::from).collect();
    let mut shift = 32;
    // The last key lands just above the row number, the first in the highest bits.
    for k in keys.iter().rev() {
        match k.data_type() {
            DataType::Int32 => {
                pack(&mut rows, shift, k.as_primitive::<Int32Type>().values().iter().map(|x| flip32(*x)))
            }
            DataType::Date32 => {
                pack(&mut rows, shift, k.as_primitive::<Date32Type>().values().iter().map(|x| flip32(*x)))
            }
            _ => pack(&mut rows, shift, k.as_primitive::<Int64Type>().values().iter().map(|x| flip64(*x))),
        }
        shift += width(k)?;
    }
    rows.sort_unstable();
    Some(UInt32Array::from_iter_values(rows.into_iter().map(|r| r as u32)))
}

/// ORs one key's values into `rows`, `shift` bits up.
fn pack(rows: &mut [u128], shift: u32, values: impl Iterator<Item = u64>) {
    for (row, v) in rows.iter_mut().zip(values) {
        *row |= u128::from(v) << shift;
    }
}

/// A signed integer with its sign bit flipped orders as an unsigned one.
fn flip32(x: i32) -> u64 {
    u64::from(x.cast_unsigned() ^ (1 << 31))
}

/// [`flip32`] for 64 bits.
fn flip64(x: i64) -> u64 {
    x.cast_unsigned() ^ (1 << 63)
}

/// Writes `run` (rows of `batches`) as data files of its partition, rolled at the target size.
async fn write_run(
    builder: &DataFiles,
    batches: &[&RecordBatch],
    run: Run,
) -> Result<Vec<DataFile>, IcebergError> {
    let started = std::time::Instant::now();
    let mut writer = builder.for_rows(run.rows.len()).build(run.partition).await?;
    let mut indices = Vec::with_capacity(run.rows.len().min(WRITE_CHUNK));
    for chunk in run.rows.chunks(WRITE_CHUNK) {
        indices.clear();
        indices.extend(chunk.iter().map(|&(b, r)| (b as usize, r as usize)));
        let rows = interleave_record_batch(batches, &indices)
            .map_err(|e| IcebergError::new(ErrorKind::Unexpected, e.to_string()))?;
        writer.write(rows).await?;
    }
    let files = writer.close().await;
    crate::metrics::stage_time(crate::metrics::Stage::Write, started.elapsed());
    files
}

/// Writes `runs` (rows of `batches`), spread over two tasks per core, one partition at a time per
/// task; returns each run's files, in run order (a run's files in the order of its rows).
pub async fn write_runs(
    files: Arc<DataFiles>,
    batches: Arc<Vec<RecordBatch>>,
    runs: Vec<Run>,
) -> Result<Vec<Vec<DataFile>>, IcebergError> {
    // Two lanes per core: while a lane waits on the file system (each file is created), another has
    // work ready (files are synced together before the commit, `super::storage`). Lanes stay on the
    // runtime's workers: on threads of their own they would let the next buffer fill while this one
    // is written, and with thousands of partitions the peak RSS rose from 272–285 MB to 337–350 MB
    // for little gain.
    let lanes = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4) * 2;
    // A run larger than a lane's share is split into files written side by side (each sorted, their
    // key ranges one after the other): one large partition is not left to a single lane while the
    // next buffer fills.
    let count = runs.len();
    let total: usize = runs.iter().map(|r| r.rows.len()).sum();
    let piece = total.div_ceil(lanes).max(MIN_SPLIT_ROWS);
    let mut by_size: Vec<(Piece, Run)> = Vec::with_capacity(count);
    for (i, run) in runs.into_iter().enumerate() {
        if run.rows.len() <= piece {
            by_size.push(((i, 0), run));
            continue;
        }
        let size = run.rows.len().div_ceil(run.rows.len().div_ceil(piece));
        for (j, rows) in run.rows.chunks(size).enumerate() {
            by_size.push(((i, j), Run { partition: run.partition.clone(), rows: rows.to_vec() }));
        }
    }
    // Biggest runs first, each to the lane with the fewest rows so far.
    by_size.sort_by_key(|(_, r)| std::cmp::Reverse(r.rows.len()));
    let mut plan: Vec<(usize, Vec<(Piece, Run)>)> = (0..lanes).map(|_| (0, Vec::new())).collect();
    for (i, run) in by_size {
        let lane = plan.iter_mut().min_by_key(|(rows, _)| *rows).expect("a lane");
        lane.0 += run.rows.len();
        lane.1.push((i, run));
    }
    let tasks: Vec<_> = plan
        .into_iter()
        .filter(|(_, runs)| !runs.is_empty())
        .map(|(_, runs)| {
            let (files, batches) = (files.clone(), batches.clone());
            tokio::spawn(async move {
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                let mut out = Vec::with_capacity(runs.len());
                for (i, run) in runs {
                    out.push((i, write_run(&files, &refs, run).await?));
                }
                Ok::<_, IcebergError>(out)
            })
        })
        .collect();
    let mut pieces: Vec<(Piece, Vec<DataFile>)> = Vec::new();
    for task in tasks {
        pieces.extend(task.await.map_err(|e| IcebergError::new(ErrorKind::Unexpected, e.to_string()))??);
    }
    // A split run's files in the order of its rows.
    pieces.sort_by_key(|(i, _)| *i);
    let mut written: Vec<Vec<DataFile>> = vec![Vec::new(); count];
    for ((i, _), files) in pieces {
        written[i].extend(files);
    }
    Ok(written)
}

type Builder =
    DataFileWriterBuilder<ParquetWriterBuilder, DefaultLocationGenerator, DefaultFileNameGenerator>;

/// Makes data files of one table: Parquet with the given properties (small files with their own),
/// named uniquely, rolled at the target size.
pub struct DataFiles {
    builder: Builder,
    small: Builder,
}

impl DataFiles {
    pub fn new(
        table: &Table,
        props: WriterProperties,
        small_props: WriterProperties,
        target_file_size: usize,
    ) -> Result<Self, IcebergError> {
        let metadata = table.metadata();
        // One name prefix for both: files are numbered in one sequence.
        let names = DefaultFileNameGenerator::new(
            format!("cdc-{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let builder = |props| -> Result<Builder, IcebergError> {
            Ok(DataFileWriterBuilder::new(RollingFileWriterBuilder::new(
                ParquetWriterBuilder::new(props, metadata.current_schema().clone()),
                target_file_size,
                table.file_io().clone(),
                DefaultLocationGenerator::new(metadata)?,
                names.clone(),
            )))
        };
        Ok(Self { builder: builder(props)?, small: builder(small_props)? })
    }

    /// The builder for a file of `rows` rows.
    fn for_rows(&self, rows: usize) -> &Builder {
        if is_small(rows) { &self.small } else { &self.builder }
    }
}

/// `props` with dictionary encoding turned off for `columns`.
fn without_dictionary(props: &WriterProperties, columns: &[ColumnPath]) -> WriterProperties {
    if columns.is_empty() {
        return props.clone();
    }
    columns
        .iter()
        .fold(props.clone().into_builder(), |b, c| b.set_column_dictionary_enabled(c.clone(), false))
        .build()
}

/// The text and binary columns whose values are mostly distinct in a sample of `batches` (e-mails,
/// notes): a dictionary there costs time and is dropped by the encoder anyway.
fn mostly_distinct_columns(batches: &[RecordBatch]) -> Vec<ColumnPath> {
    const SAMPLE: usize = 2048;
    let Some(first) = batches.iter().find(|b| b.num_rows() > 0) else { return Vec::new() };
    let mut columns = Vec::new();
    for (i, field) in first.schema().fields().iter().enumerate() {
        let column = first.column(i);
        let n = column.len().min(SAMPLE);
        let distinct = match field.data_type() {
            DataType::Utf8 => distinct_values(column.as_string::<i32>(), n),
            DataType::LargeUtf8 => distinct_values(column.as_string::<i64>(), n),
            DataType::Binary => distinct_values(column.as_binary::<i32>(), n),
            _ => continue,
        };
        if n >= 64 && distinct * 2 > n {
            columns.push(ColumnPath::from(field.name().as_str()));
        }
    }
    columns
}

/// Distinct non-null values among the first `n` of `a`.
fn distinct_values<T: ByteArrayType>(a: &GenericByteArray<T>, n: usize) -> usize {
    (0..n).filter(|&r| a.is_valid(r)).map(|r| a.value(r).as_ref()).collect::<HashSet<&[u8]>>().len()
}

/// How a table's data files are written.
#[derive(Debug, Clone)]
pub struct FileSettings {
    pub props: WriterProperties,
    /// For files of fewer than [`SMALL_FILE_ROWS`] rows.
    pub small_props: WriterProperties,
    /// A data file rolls over at this size.
    pub target_file_size: usize,
    /// Rows (Arrow memory) held before they are ordered and written out.
    pub buffer_bytes: usize,
}

impl FileSettings {
    /// The properties of a file of `rows` rows.
    pub fn props_for(&self, rows: usize) -> &WriterProperties {
        if is_small(rows) { &self.small_props } else { &self.props }
    }

    /// Data files for `batches` (dictionary encoding chosen from a sample of them, once for both
    /// kinds of file).
    pub fn data_files(&self, table: &Table, batches: &[RecordBatch]) -> Result<DataFiles, IcebergError> {
        let distinct = mostly_distinct_columns(batches);
        DataFiles::new(
            table,
            without_dictionary(&self.props, &distinct),
            without_dictionary(&self.small_props, &distinct),
            self.target_file_size,
        )
    }
}

/// Writes data files for one table, for one commit.
pub struct TableWriter {
    table: Table,
    table_name: String,
    arrow_schema: SchemaRef,
    order: Arc<RowOrder>,
    settings: FileSettings,
    buffer: Vec<RecordBatch>,
    buffered_bytes: usize,
    /// The previous buffer being written out on another thread while this one fills.
    in_flight: Option<tokio::task::JoinHandle<Result<Vec<DataFile>, SinkError>>>,
    files: Vec<DataFile>,
    rows: usize,
}

impl TableWriter {
    /// A writer for the table's current schema, partition spec and sort order.
    pub async fn new(table: &Table, settings: FileSettings) -> Result<Self, SinkError> {
        let table_name = table.identifier().to_string();
        let err = |source| SinkError::Write { table: table_name.clone(), source: Box::new(source) };
        let arrow_schema = Arc::new(schema_to_arrow_schema(table.metadata().current_schema()).map_err(err)?);
        let order = RowOrder::new(table, &arrow_schema).map_err(err)?;
        Ok(Self {
            table: table.clone(),
            table_name,
            arrow_schema,
            order: Arc::new(order),
            settings,
            buffer: Vec::new(),
            buffered_bytes: 0,
            in_flight: None,
            files: Vec::new(),
            rows: 0,
        })
    }

    /// The Arrow schema batches must have (with Iceberg field ids).
    pub fn arrow_schema(&self) -> &SchemaRef {
        &self.arrow_schema
    }

    /// Rows written since this writer was made.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Takes one batch (already in the table's Arrow schema) and puts it in write order; writes the
    /// buffer out when it is full.
    pub async fn write(&mut self, batch: RecordBatch) -> Result<(), SinkError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.rows += batch.num_rows();
        let batch = self.order.sort_batch(batch).map_err(|source| SinkError::Write {
            table: self.table_name.clone(),
            source: Box::new(source),
        })?;
        self.buffered_bytes += batch.get_array_memory_size();
        self.buffer.push(batch);
        if self.buffered_bytes >= self.settings.buffer_bytes {
            self.write_out().await?;
        }
        Ok(())
    }

    /// Hands the buffered rows to a task that orders them and writes them, one partition at a
    /// time, while the next buffer fills; waits for the previous one first (so at most two buffers
    /// exist).
    async fn write_out(&mut self) -> Result<(), SinkError> {
        self.wait_in_flight().await?;
        let batches = std::mem::take(&mut self.buffer);
        self.buffered_bytes = 0;
        if batches.is_empty() {
            return Ok(());
        }
        let (table, order, settings) = (self.table.clone(), self.order.clone(), self.settings.clone());
        self.in_flight = Some(tokio::spawn(async move {
            let err =
                |source| SinkError::Write { table: table.identifier().to_string(), source: Box::new(source) };
            let runs = order.runs(&batches).map_err(err)?;
            let data_files = Arc::new(settings.data_files(&table, &batches).map_err(err)?);
            let written = write_runs(data_files, Arc::new(batches), runs).await.map_err(err)?;
            Ok(written.into_iter().flatten().collect())
        }));
        Ok(())
    }

    async fn wait_in_flight(&mut self) -> Result<(), SinkError> {
        if let Some(task) = self.in_flight.take() {
            let files = task.await.map_err(|e| SinkError::Shape {
                table: self.table_name.clone(),
                message: format!("writing data files failed: {e}"),
            })??;
            self.files.extend(files);
        }
        Ok(())
    }

    /// Writes what is buffered and returns the data files to commit.
    pub async fn close(mut self) -> Result<Vec<DataFile>, SinkError> {
        self.write_out().await?;
        self.wait_in_flight().await?;
        Ok(self.files)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Date32Array, Int32Array, Int64Array, StringArray};

    use super::*;

    fn keys_in(order: &UInt32Array, keys: &[ArrayRef]) -> Vec<Vec<String>> {
        order
            .values()
            .iter()
            .map(|&i| {
                keys.iter()
                    .map(|k| arrow_cast::display::array_value_to_string(k, i as usize).unwrap())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn integer_keys_sort_like_lexsort_and_keep_equal_rows_in_order() {
        // Small values, so many rows tie; negative and extreme ones too.
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as i64
        };
        let n = 5000;
        let month: ArrayRef = Arc::new(Int32Array::from_iter_values((0..n).map(|_| (next() % 7) as i32 - 3)));
        let day: ArrayRef = Arc::new(Date32Array::from_iter_values((0..n).map(|_| (next() % 5) as i32 - 2)));
        let mut ids: Vec<i64> = (0..n).map(|_| next() % 11 - 5).collect();
        ids[0] = i64::MIN;
        ids[1] = i64::MAX;
        let id: ArrayRef = Arc::new(Int64Array::from(ids));
        for keys in [
            vec![month.clone(), id.clone()],
            vec![id.clone()],
            vec![day.clone(), month.clone()],
            vec![month.clone(), day.clone(), month.clone()],
        ] {
            let fast = integer_order(&keys).expect("integer keys take the packed sort");
            let slow = lex_order(&keys).unwrap();
            assert_eq!(keys_in(&fast, &keys), keys_in(&slow, &keys));
            // Equal keys: rows in their original order.
            for w in fast.values().windows(2) {
                if keys_in(&UInt32Array::from(vec![w[0]]), &keys)
                    == keys_in(&UInt32Array::from(vec![w[1]]), &keys)
                {
                    assert!(w[0] < w[1]);
                }
            }
        }
    }

    #[test]
    fn other_keys_are_left_to_lexsort() {
        let text: ArrayRef = Arc::new(StringArray::from(vec!["b", "a"]));
        let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(2), None]));
        let wide: Vec<ArrayRef> =
            (0..2).map(|_| Arc::new(Int64Array::from(vec![1, 0])) as ArrayRef).collect();
        assert!(integer_order(std::slice::from_ref(&text)).is_none());
        assert!(integer_order(std::slice::from_ref(&with_null)).is_none());
        assert!(integer_order(&wide).is_none(), "two longs and a row number do not fit in 128 bits");
        let order = order_of(&[with_null]).unwrap();
        assert_eq!(order.values().to_vec(), vec![1, 0], "nulls first");
    }
}
