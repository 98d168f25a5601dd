//! Table maintenance: what keeps a streaming table small and fast to read, whatever its age.
//!
//! - **Compaction**: in each partition with at least `min_input_files` small data files, rewrites them
//!   into files of the target size, sorted by the table's sort order (one `replace` snapshot).
//! - **Snapshot expiry**: keeps the last `keep_last` snapshots of `main` that are younger than
//!   `max_snapshot_age` (always the current one, and every branch or tag head), then deletes the
//!   manifest lists, manifests and data files only the expired snapshots reached.
//! - **Orphans**: deletes files under the table's location that no metadata references (left by
//!   failed or killed attempts) once older than `orphan_min_age`.
//!
//! Manifest merging happens in every commit (see [`super::commit`]); old metadata files go as the
//! table properties `write.metadata.delete-after-commit.enabled` and
//! `write.metadata.previous-versions-max` say, and orphan removal takes any left behind.
//! Each step commits through the commit layer's compare-and-swap, recomputed on every attempt.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use arrow_array::{ArrayRef, RecordBatch, new_null_array};
use arrow_schema::SchemaRef;
use iceberg::TableUpdate;
use iceberg::spec::{DataContentType, DataFile, ManifestFile, SnapshotRef};
use iceberg::table::Table;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use serde::Serialize;

use super::catalog::Catalog;
use super::commit::{self, CommitMeta, Replace};
use super::mirror::read_deletes;
use super::storage::file_location_path;
use super::writer::{FileSettings, TableWriter};
use crate::error::SinkError;

/// What maintenance does and how often (`[maintenance]` in the config).
pub type MaintenancePolicy = crate::config::MaintenanceConfig;

/// What one maintenance run did to one table.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MaintenanceReport {
    pub table: String,
    pub compacted_partitions: usize,
    pub compacted_files_in: usize,
    pub compacted_files_out: usize,
    /// Position-delete files dropped because every file they pointed into was rewritten.
    pub delete_files_removed: usize,
    pub expired_snapshots: usize,
    pub deleted_files: usize,
    pub orphans_deleted: usize,
    pub snapshots: usize,
    pub metadata_files: usize,
}

impl MaintenanceReport {
    /// Whether the run changed nothing.
    pub fn is_empty(&self) -> bool {
        self.compacted_files_in == 0
            && self.expired_snapshots == 0
            && self.deleted_files == 0
            && self.orphans_deleted == 0
    }
}

impl fmt::Display for MaintenanceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: compacted {} files into {} in {} partitions ({} delete files dropped), expired {} snapshots ({} files deleted), {} orphans deleted; {} snapshots and {} metadata files remain",
            self.table,
            self.compacted_files_in,
            self.compacted_files_out,
            self.compacted_partitions,
            self.delete_files_removed,
            self.expired_snapshots,
            self.deleted_files,
            self.orphans_deleted,
            self.snapshots,
            self.metadata_files
        )
    }
}

fn catalog_err(context: String) -> impl FnOnce(iceberg::Error) -> SinkError {
    move |source| SinkError::Catalog { context, source: Box::new(source) }
}

/// Runs compaction, expiry and orphan removal on `table`.
pub async fn run(
    catalog: &Catalog,
    table: Table,
    policy: &MaintenancePolicy,
) -> Result<MaintenanceReport, SinkError> {
    let mut report = MaintenanceReport { table: table.identifier().to_string(), ..Default::default() };
    let table = compact(catalog, table, policy, &mut report).await?;
    let (table, reachable) = expire(catalog, table, policy, &mut report).await?;
    // One reachability pass serves expiry and orphan removal.
    let reachable = match reachable {
        Some(r) => r,
        None => reachable_files(&table).await?,
    };
    remove_orphans(&table, &reachable, Duration::from_secs(policy.orphan_min_age_seconds), &mut report);
    report.snapshots = table.metadata().snapshots().len();
    report.metadata_files = count_metadata_files(&table);
    Ok(report)
}

/// The live entries of a snapshot's manifests: (content, file).
async fn live_entries(table: &Table, snapshot: &SnapshotRef) -> Result<Vec<(i32, DataFile)>, SinkError> {
    let mut out = Vec::new();
    for m in manifests_of(table, snapshot).await? {
        let manifest = m
            .load_manifest(table.file_io())
            .await
            .map_err(catalog_err(format!("reading {}", m.manifest_path)))?;
        let spec = m.partition_spec_id;
        out.extend(manifest.entries().iter().filter(|e| e.is_alive()).map(|e| (spec, e.data_file().clone())));
    }
    Ok(out)
}

async fn manifests_of(table: &Table, snapshot: &SnapshotRef) -> Result<Vec<ManifestFile>, SinkError> {
    let list = table
        .manifest_list_reader(snapshot)
        .load()
        .await
        .map_err(catalog_err(format!("reading manifest list {}", snapshot.manifest_list())))?;
    Ok(list.consume_entries().into_iter().collect())
}

/// Rewrites small data files, partition by partition.
async fn compact(
    catalog: &Catalog,
    table: Table,
    policy: &MaintenancePolicy,
    report: &mut MaintenanceReport,
) -> Result<Table, SinkError> {
    let Some(current) = table.metadata().current_snapshot().cloned() else { return Ok(table) };
    let files = live_entries(&table, &current).await?;
    if files.iter().any(|(_, f)| f.content_type() == DataContentType::EqualityDeletes) {
        return Ok(table);
    }
    // Position deletes (a mirror table): data file → deleted positions, and the files each delete
    // file points into.
    let mut deleted: HashMap<String, HashSet<u64>> = HashMap::new();
    let mut delete_files: Vec<(DataFile, HashSet<String>)> = Vec::new();
    for (_, f) in files.iter().filter(|(_, f)| f.content_type() == DataContentType::PositionDeletes) {
        let mut targets = HashSet::new();
        for (path, pos) in read_deletes(&table, f.file_path()).await? {
            deleted.entry(path.clone()).or_default().insert(pos);
            targets.insert(path);
        }
        delete_files.push((f.clone(), targets));
    }
    // Per partition: its data files; those with deletes or small are rewritten when the partition
    // has enough small files or enough deleted rows.
    let mut partitions: BTreeMap<(i32, String), Vec<DataFile>> = BTreeMap::new();
    for (spec_id, f) in files.iter().filter(|(_, f)| f.content_type() == DataContentType::Data) {
        partitions.entry((*spec_id, format!("{:?}", f.partition()))).or_default().push(f.clone());
    }
    let mut budget = policy.max_compaction_bytes;
    let mut removed = Vec::new();
    let mut added = Vec::new();
    let props = WriterProperties::builder()
        .set_compression(parquet::basic::Compression::ZSTD(
            parquet::basic::ZstdLevel::try_new(3).expect("level"),
        ))
        .build();
    for ((spec_id, _), all) in partitions {
        if spec_id != table.metadata().default_partition_spec_id() {
            continue;
        }
        let small = all.iter().filter(|f| f.file_size_in_bytes() < policy.small_file_bytes).count();
        let rows: u64 = all.iter().map(|f| f.record_count()).sum();
        let gone: u64 = all.iter().map(|f| deleted.get(f.file_path()).map_or(0, |d| d.len() as u64)).sum();
        let many_deleted = gone > 0 && gone as f64 >= policy.max_deleted_fraction * rows.max(1) as f64;
        if small < policy.min_input_files && !many_deleted {
            continue;
        }
        let group: Vec<DataFile> = all
            .into_iter()
            .filter(|f| {
                f.file_size_in_bytes() < policy.small_file_bytes
                    || (many_deleted && deleted.contains_key(f.file_path()))
            })
            .collect();
        if group.len() < 2 && !group.iter().any(|f| deleted.contains_key(f.file_path())) {
            continue;
        }
        let bytes: u64 = group.iter().map(|f| f.file_size_in_bytes()).sum();
        if bytes > budget {
            break;
        }
        budget -= bytes;
        // The group is in memory already: one write-out, one sorted file per partition.
        // Compacted files are at rest: zstd, whatever their size.
        let settings = FileSettings {
            props: props.clone(),
            small_props: props.clone(),
            target_file_size: policy.target_file_size_bytes,
            buffer_bytes: usize::MAX,
        };
        let mut writer = TableWriter::new(&table, settings).await?;
        let schema = writer.arrow_schema().clone();
        let mut batches = Vec::new();
        for f in &group {
            let rows = read_data_file(&table, f.file_path(), &schema).await?;
            match deleted.get(f.file_path()) {
                None => batches.extend(rows),
                Some(gone) => batches.extend(without_positions(&table, rows, gone)?),
            }
        }
        for rows in batches {
            writer.write(rows).await?;
        }
        let new_files = writer.close().await?;
        report.compacted_partitions += 1;
        report.compacted_files_in += group.len();
        report.compacted_files_out += new_files.len();
        removed.extend(group);
        added.extend(new_files);
    }
    // Delete files that point only into rewritten files go with them.
    let rewritten: HashSet<&str> = removed.iter().map(|f| f.file_path()).collect();
    let obsolete: Vec<DataFile> = delete_files
        .into_iter()
        .filter(|(_, targets)| targets.iter().all(|t| rewritten.contains(t.as_str())))
        .map(|(f, _)| f)
        .collect();
    report.delete_files_removed += obsolete.len();
    removed.extend(obsolete);
    if removed.is_empty() {
        return Ok(table);
    }
    let op = Replace { removed, added: added.clone(), starting_snapshot: Some(current.snapshot_id()) };
    let meta = CommitMeta {
        properties: [("cdc-host.maintenance".to_string(), "compaction".to_string())].into(),
        ..Default::default()
    };
    match commit::commit(catalog, table.clone(), &op, &meta).await {
        Ok(c) => Ok(c.table),
        Err(e) => {
            for f in &added {
                let _ = table.file_io().delete(f.file_path()).await;
            }
            match e {
                // The table moved under the rewrite: nothing landed, try again next run.
                SinkError::Validation { .. } | SinkError::Conflicts { .. } => {
                    tracing::info!(error = %e, "compaction skipped");
                    report.compacted_partitions = 0;
                    report.compacted_files_in = 0;
                    report.compacted_files_out = 0;
                    report.delete_files_removed = 0;
                    catalog.load(table.identifier()).await
                }
                e => Err(e),
            }
        }
    }
}

/// `batches` (a data file's rows in order) without the rows at positions `gone`.
fn without_positions(
    table: &Table,
    batches: Vec<RecordBatch>,
    gone: &HashSet<u64>,
) -> Result<Vec<RecordBatch>, SinkError> {
    let mut out = Vec::with_capacity(batches.len());
    let mut start = 0u64;
    for b in batches {
        let n = b.num_rows() as u64;
        let keep: arrow_array::BooleanArray = (start..start + n).map(|p| Some(!gone.contains(&p))).collect();
        start += n;
        out.push(arrow_select::filter::filter_record_batch(&b, &keep).map_err(|e| SinkError::Shape {
            table: table.identifier().to_string(),
            message: format!("applying position deletes: {e}"),
        })?);
    }
    Ok(out)
}

/// Reads a data file's rows in `schema` (columns matched by Iceberg field id; columns the file
/// predates are null).
async fn read_data_file(
    table: &Table,
    path: &str,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>, SinkError> {
    let name = table.identifier().to_string();
    let input = table.file_io().new_input(path).map_err(catalog_err(format!("opening {path}")))?;
    let bytes = input.read().await.map_err(catalog_err(format!("reading {path}")))?;
    let shape = |e: &dyn fmt::Display| SinkError::Shape {
        table: name.clone(),
        message: format!("reading {path}: {e}"),
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .map_err(|e| shape(&e))?
        .build()
        .map_err(|e| shape(&e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| shape(&e))?;
        let file_schema = batch.schema();
        let columns = schema
            .fields()
            .iter()
            .map(|field| {
                let id = field.metadata().get("PARQUET:field_id");
                let found = file_schema
                    .fields()
                    .iter()
                    .position(|f| f.metadata().get("PARQUET:field_id") == id && id.is_some())
                    .or_else(|| file_schema.index_of(field.name()).ok());
                match found {
                    Some(i) if batch.column(i).data_type() == field.data_type() => batch.column(i).clone(),
                    Some(i) => arrow_cast::cast(batch.column(i), field.data_type())
                        .unwrap_or_else(|_| new_null_array(field.data_type(), batch.num_rows())),
                    None => new_null_array(field.data_type(), batch.num_rows()),
                }
            })
            .collect::<Vec<ArrayRef>>();
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(|e| shape(&e))?);
    }
    Ok(out)
}

/// Snapshots to keep: the newest `keep_last` of `main` younger than the max age (the current one
/// always), and the head of every other branch or tag.
fn retained(table: &Table, policy: &MaintenancePolicy) -> HashSet<i64> {
    let metadata = table.metadata();
    let now = chrono::Utc::now().timestamp_millis();
    let max_age = policy.max_snapshot_age_seconds.saturating_mul(1000) as i64;
    let mut keep = HashSet::new();
    let mut next = metadata.current_snapshot();
    let mut n = 0;
    while let Some(s) = next {
        let young = now - s.timestamp_ms() <= max_age;
        if n == 0 || (n < policy.keep_last.max(1) && young) {
            keep.insert(s.snapshot_id());
        } else {
            break;
        }
        n += 1;
        next = s.parent_snapshot_id().and_then(|p| metadata.snapshot_by_id(p));
    }
    keep.extend(metadata_refs(table));
    keep
}

fn metadata_refs(table: &Table) -> HashSet<i64> {
    // Branch and tag heads, read from the serialized metadata (refs are not exposed otherwise).
    serde_json::to_value(table.metadata())
        .ok()
        .and_then(|v| v.get("refs").cloned())
        .and_then(|r| r.as_object().cloned())
        .map(|refs| refs.values().filter_map(|r| r.get("snapshot-id").and_then(|i| i.as_i64())).collect())
        .unwrap_or_default()
}

/// Expires snapshots the policy does not keep, then deletes the files only they reached.
async fn expire(
    catalog: &Catalog,
    table: Table,
    policy: &MaintenancePolicy,
    report: &mut MaintenanceReport,
) -> Result<(Table, Option<HashSet<String>>), SinkError> {
    let before = table.clone();
    let after = commit::update_metadata(catalog, table, |base| {
        let keep = retained(base, policy);
        let ids: Vec<i64> =
            base.metadata().snapshots().map(|s| s.snapshot_id()).filter(|id| !keep.contains(id)).collect();
        Ok(if ids.is_empty() { Vec::new() } else { vec![TableUpdate::RemoveSnapshots { snapshot_ids: ids }] })
    })
    .await?;
    let kept: HashSet<i64> = after.metadata().snapshots().map(|s| s.snapshot_id()).collect();
    let gone: Vec<&SnapshotRef> =
        before.metadata().snapshots().filter(|s| !kept.contains(&s.snapshot_id())).collect();
    if gone.is_empty() {
        return Ok((after, None));
    }
    report.expired_snapshots = gone.len();
    // Only once the expiry landed: files reachable from any kept snapshot stay.
    let reachable = reachable_files(&after).await?;
    let mut candidates = HashSet::new();
    for s in gone {
        candidates.insert(s.manifest_list().to_string());
        let Ok(manifests) = manifests_of(&before, s).await else { continue };
        for m in manifests {
            if let Ok(manifest) = m.load_manifest(before.file_io()).await {
                candidates.extend(manifest.entries().iter().map(|e| e.file_path().to_string()));
            }
            candidates.insert(m.manifest_path);
        }
    }
    for path in candidates.difference(&reachable) {
        if after.file_io().delete(path).await.is_ok() {
            report.deleted_files += 1;
        }
    }
    Ok((after, Some(reachable)))
}

/// Every file the table's metadata references: metadata files, manifest lists, manifests, live data
/// and delete files, statistics, a mirror's held values.
async fn reachable_files(table: &Table) -> Result<HashSet<String>, SinkError> {
    let metadata = table.metadata();
    let mut out = HashSet::new();
    if let Some(l) = table.metadata_location() {
        out.insert(l.to_string());
    }
    out.extend(metadata.metadata_log().iter().map(|l| l.metadata_file.clone()));
    let mut seen_manifests = HashSet::new();
    for s in metadata.snapshots() {
        out.insert(s.manifest_list().to_string());
        if let Some(held) = s.summary().additional_properties.get(commit::HELD_VALUES)
            && !held.is_empty()
        {
            out.insert(held.clone());
        }
        for m in manifests_of(table, s).await? {
            if !seen_manifests.insert(m.manifest_path.clone()) {
                continue;
            }
            let manifest = m
                .load_manifest(table.file_io())
                .await
                .map_err(catalog_err(format!("reading {}", m.manifest_path)))?;
            // An entry deleted in a kept snapshot no longer reaches its file.
            out.extend(manifest.entries().iter().filter(|e| e.is_alive()).map(|e| e.file_path().to_string()));
            out.insert(m.manifest_path);
        }
    }
    if let Ok(v) = serde_json::to_value(metadata) {
        for key in ["statistics", "partition-statistics"] {
            if let Some(list) = v.get(key).and_then(|l| l.as_array()) {
                out.extend(
                    list.iter()
                        .filter_map(|s| s.get("statistics-path").and_then(|p| p.as_str()).map(String::from)),
                );
            }
        }
    }
    Ok(out)
}

fn normalize(location: &str) -> String {
    file_location_path(location).map_or_else(|| location.to_string(), |p| p.display().to_string())
}

/// Deletes files under the table's location that nothing references, once older than `min_age`.
/// Only local (`file:`) warehouses are listed.
fn remove_orphans(
    table: &Table,
    reachable: &HashSet<String>,
    min_age: Duration,
    report: &mut MaintenanceReport,
) {
    let Some(root) = file_location_path(table.metadata().location()) else { return };
    let reachable: HashSet<String> = reachable.iter().map(|l| normalize(l)).collect();
    let now = SystemTime::now();
    let mut stack = vec![root.join("data"), root.join("metadata")];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(path);
                continue;
            }
            let old = meta
                .modified()
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age >= min_age);
            if !old || is_referenced(&path, &reachable) {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                report.orphans_deleted += 1;
            }
        }
    }
}

/// Whether `path` (or, for a checksum file `.x.crc`, its `x`) is referenced.
fn is_referenced(path: &Path, reachable: &HashSet<String>) -> bool {
    let p = path.display().to_string();
    if reachable.contains(&p) {
        return true;
    }
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if let Some(base) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".crc")) {
        return reachable.contains(&path.with_file_name(base).display().to_string());
    }
    false
}

/// Files in the table's metadata directory (local warehouses).
fn count_metadata_files(table: &Table) -> usize {
    file_location_path(table.metadata().location())
        .and_then(|root| std::fs::read_dir(root.join("metadata")).ok())
        .map_or(0, |entries| entries.flatten().count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_files_of_referenced_files_are_referenced() {
        let reachable: HashSet<String> = ["/w/t/metadata/x.json".to_string()].into();
        assert!(is_referenced(Path::new("/w/t/metadata/.x.json.crc"), &reachable));
        assert!(!is_referenced(Path::new("/w/t/metadata/y.json"), &reachable));
    }
}
