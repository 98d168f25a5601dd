//! The files of a mirror commit: data files whose row positions are known (each row's key is filed
//! at its position), position-delete files (format v2, sorted by path and position, one per
//! partition of the data files they point into), and reading committed files back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow_array::{Array, BooleanArray, Int64Array, RecordBatch, RecordBatchReader, StringArray};
use iceberg::arrow::schema_to_arrow_schema;
use iceberg::spec::{
    DataContentType, DataFile, DataFileFormat, NestedField, PartitionKey, PrimitiveType, Schema, Struct, Type,
};
use iceberg::table::Table;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use iceberg::writer::file_writer::location_generator::{DefaultFileNameGenerator, DefaultLocationGenerator};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::SinkError;
use crate::sink::writer::{FileSettings, RowOrder, write_runs};

/// Field ids of the position-delete schema (Iceberg spec, reserved).
const FILE_PATH_ID: i32 = 2147483546;
const POS_ID: i32 = 2147483545;

pub(super) fn write_err(table: &Table) -> impl Fn(iceberg::Error) -> SinkError + '_ {
    move |source| SinkError::Write { table: table.identifier().to_string(), source: Box::new(source) }
}

fn shape(table: &Table, message: String) -> SinkError {
    SinkError::Shape { table: table.identifier().to_string(), message }
}

/// Writes the rows `keep` selects of `batches` (in the table's current Arrow schema; one mask per
/// batch) as data files of the default spec, ordered by partition and sort order; returns the files
/// and, per selected row (in batch and row order), the file (index into the files) and position it
/// landed at.
pub async fn write_data(
    table: &Table,
    settings: &FileSettings,
    batches: Arc<Vec<RecordBatch>>,
    keep: &[BooleanArray],
) -> Result<(Vec<DataFile>, Vec<(u32, u64)>), SinkError> {
    let err = write_err(table);
    let Some(first) = batches.first() else { return Ok((Vec::new(), Vec::new())) };
    let order = RowOrder::new(table, &first.schema()).map_err(&err)?;
    let runs = order.runs_of(&batches, Some(keep)).map_err(&err)?;
    let data_files = settings.data_files(table, &batches).map_err(&err)?;
    // Each selected row's ordinal, by (batch, row).
    let mut ordinals: Vec<Vec<u32>> = Vec::with_capacity(keep.len());
    let mut n = 0u32;
    for mask in keep {
        ordinals.push(
            (0..mask.len())
                .map(|r| {
                    let o = n;
                    n += u32::from(mask.value(r));
                    o
                })
                .collect(),
        );
    }
    let numbers: Vec<Vec<u32>> = runs
        .iter()
        .map(|run| run.rows.iter().map(|&(b, r)| ordinals[b as usize][r as usize]).collect())
        .collect();
    drop(ordinals);
    let written = write_runs(Arc::new(data_files), batches, runs).await.map_err(&err)?;
    let unplaced = (u32::MAX, u64::MAX);
    let mut placed = vec![unplaced; n as usize];
    let mut files = Vec::new();
    for (written, numbers) in written.into_iter().zip(numbers) {
        // A run's files are in the order they were rolled: positions run on across them.
        let mut numbers = numbers.into_iter();
        for f in written {
            let idx = files.len() as u32;
            for pos in 0..f.record_count() {
                let n = numbers.next().ok_or_else(|| shape(table, "more rows written than given".into()))?;
                let slot = &mut placed[n as usize];
                if *slot != unplaced {
                    return Err(shape(table, "a row was written twice".into()));
                }
                *slot = (idx, pos);
            }
            files.push(f);
        }
        if numbers.next().is_some() {
            return Err(shape(table, "fewer rows written than given".into()));
        }
    }
    Ok((files, placed))
}

/// The Iceberg schema of position-delete files.
fn delete_schema() -> Result<Schema, iceberg::Error> {
    Schema::builder()
        .with_fields(vec![
            NestedField::required(FILE_PATH_ID, "file_path", Type::Primitive(PrimitiveType::String)).into(),
            NestedField::required(POS_ID, "pos", Type::Primitive(PrimitiveType::Long)).into(),
        ])
        .build()
}

/// Positions to delete in one data file, with the partition the file belongs to.
pub struct FileDeletes {
    pub spec_id: i32,
    pub partition: Struct,
    pub positions: BTreeSet<u64>,
}

/// Writes position-delete files: one per partition (of the referenced data files), rows sorted by
/// (path, position).
pub async fn write_deletes(
    table: &Table,
    settings: &FileSettings,
    deletes: &BTreeMap<Arc<str>, FileDeletes>,
) -> Result<Vec<DataFile>, SinkError> {
    let started = std::time::Instant::now();
    let written = write_delete_files(table, settings, deletes).await;
    crate::metrics::stage_time(crate::metrics::Stage::Write, started.elapsed());
    written
}

async fn write_delete_files(
    table: &Table,
    settings: &FileSettings,
    deletes: &BTreeMap<Arc<str>, FileDeletes>,
) -> Result<Vec<DataFile>, SinkError> {
    let err = write_err(table);
    let metadata = table.metadata();
    let schema = Arc::new(delete_schema().map_err(&err)?);
    let arrow_schema = Arc::new(schema_to_arrow_schema(&schema).map_err(&err)?);
    type Group<'a> = Vec<(&'a Arc<str>, &'a FileDeletes)>;
    let mut groups: BTreeMap<(i32, String), Group<'_>> = BTreeMap::new();
    for (path, d) in deletes {
        // Struct has no order: group by its debug form (stable within a run).
        groups.entry((d.spec_id, format!("{:?}", d.partition))).or_default().push((path, d));
    }
    let mut out = Vec::new();
    for ((spec_id, _), files) in groups {
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| {
            shape(table, format!("partition spec {spec_id} is not in the table's metadata"))
        })?;
        let partition = files[0].1.partition.clone();
        let pk = (!spec.is_unpartitioned()).then(|| {
            PartitionKey::new((**spec).clone(), metadata.current_schema().clone(), partition.clone())
        });
        let mut paths = Vec::new();
        let mut positions = Vec::new();
        // `deletes` is a BTreeMap: paths come sorted, and so do each file's positions.
        for (path, d) in &files {
            for &p in &d.positions {
                paths.push(path.as_ref());
                positions.push(p as i64);
            }
        }
        let positions_len = positions.len();
        let batch = RecordBatch::try_new(
            arrow_schema.clone(),
            vec![Arc::new(StringArray::from(paths)), Arc::new(Int64Array::from(positions))],
        )
        .map_err(|e| shape(table, format!("position deletes: {e}")))?;
        let names = DefaultFileNameGenerator::new(
            format!("cdc-deletes-{}", uuid::Uuid::new_v4()),
            None,
            DataFileFormat::Parquet,
        );
        let location = DefaultLocationGenerator::new(metadata).map_err(&err)?;
        let mut writer = RollingFileWriterBuilder::new(
            ParquetWriterBuilder::new(settings.props_for(positions_len).clone(), schema.clone()),
            usize::MAX,
            table.file_io().clone(),
            location,
            names,
        )
        .build();
        writer.write(&pk, &batch).await.map_err(&err)?;
        for mut b in writer.close().await.map_err(&err)? {
            b.content(DataContentType::PositionDeletes);
            b.partition(partition.clone());
            b.partition_spec_id(spec_id);
            if files.len() == 1 {
                b.referenced_data_file(Some(files[0].0.to_string()));
            }
            out.push(b.build().map_err(|e| shape(table, format!("delete file: {e}")))?);
        }
    }
    Ok(out)
}

/// Reads the columns `names` of a committed Parquet file (those it has), whole.
pub async fn read_columns(table: &Table, path: &str, names: &[&str]) -> Result<RecordBatch, SinkError> {
    let err = |e: String| shape(table, format!("reading {path}: {e}"));
    let bytes = read_bytes(table, path).await.map_err(err)?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| err(e.to_string()))?;
    let roots: Vec<usize> = builder
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| names.contains(&f.name().as_str()))
        .map(|(i, _)| i)
        .collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader =
        builder.with_projection(mask).with_batch_size(64 * 1024).build().map_err(|e| err(e.to_string()))?;
    let schema = reader.schema();
    let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().map_err(|e| err(e.to_string()))?;
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| err(e.to_string()))
}

/// The whole file at `path`, through the table's file IO.
pub async fn read_bytes(table: &Table, path: &str) -> Result<bytes::Bytes, String> {
    let input = table.file_io().new_input(path).map_err(|e| e.to_string())?;
    input.read().await.map_err(|e| e.to_string())
}

/// The (path, position) rows of a position-delete file.
pub async fn read_deletes(table: &Table, path: &str) -> Result<Vec<(String, u64)>, SinkError> {
    let batch = read_columns(table, path, &["file_path", "pos"]).await?;
    let bad = || shape(table, format!("{path} is not a position-delete file"));
    let paths = batch.column_by_name("file_path").ok_or_else(bad)?;
    let paths = arrow_cast::cast(paths, &arrow_schema::DataType::Utf8).map_err(|_| bad())?;
    let paths = paths.as_any().downcast_ref::<StringArray>().ok_or_else(bad)?;
    let pos = batch.column_by_name("pos").ok_or_else(bad)?;
    let pos = pos.as_any().downcast_ref::<Int64Array>().ok_or_else(bad)?;
    Ok((0..batch.num_rows()).map(|i| (paths.value(i).to_string(), pos.value(i) as u64)).collect())
}
