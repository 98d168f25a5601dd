//! The snapshot operations the host commits: [`Append`] (new data files), [`RowDelta`] (new data files
//! and position-delete files in one snapshot) and [`Replace`] (rewritten files: compaction). Each
//! carries the table's other manifests forward and merges small ones, so a snapshot's manifest list
//! stays short however many commits came before.

use std::collections::{BTreeMap, HashSet};

use iceberg::spec::{
    DataContentType, DataFile, ManifestContentType, ManifestFile, ManifestStatus, Operation,
};
use iceberg::table::Table;

use super::{Attempt, AttemptError, SnapshotOperation, SummaryDelta, live_files, snapshots_since};
use crate::error::SinkError;

fn manifest_err(path: &str) -> impl FnOnce(iceberg::Error) -> SinkError {
    let context = format!("manifest {path}");
    move |source| SinkError::Catalog { context, source: Box::new(source) }
}

/// Writes `files` as added entries of new manifests (data and deletes apart). New files are always
/// written with the table's default partition spec.
async fn added_manifests(
    attempt: &mut Attempt<'_>,
    files: &[DataFile],
) -> Result<Vec<ManifestFile>, SinkError> {
    let spec_id = attempt.base.metadata().default_partition_spec_id();
    let mut by_content: BTreeMap<bool, Vec<&DataFile>> = BTreeMap::new();
    for f in files {
        by_content.entry(f.content_type() != DataContentType::Data).or_default().push(f);
    }
    let mut out = Vec::new();
    for (deletes, files) in by_content {
        let content = if deletes { ManifestContentType::Deletes } else { ManifestContentType::Data };
        let mut writer = attempt.manifest_writer(content, spec_id)?;
        for f in files {
            // A negative sequence number leaves it to be inherited from the manifest list.
            writer.add_file(f.clone(), -1).map_err(manifest_err("(new)"))?;
        }
        out.push(writer.write_manifest_file().await.map_err(manifest_err("(new)"))?);
    }
    Ok(out)
}

/// Manifest merging settings (Iceberg's `commit.manifest*` table properties).
struct MergePolicy {
    enabled: bool,
    min_count: usize,
    target_bytes: i64,
}

impl MergePolicy {
    fn of(table: &Table) -> Self {
        let p = table.metadata().properties();
        Self {
            enabled: p.get("commit.manifest-merge.enabled").is_none_or(|v| !v.eq_ignore_ascii_case("false")),
            min_count: p
                .get("commit.manifest.min-count-to-merge")
                .and_then(|v| v.parse().ok())
                .unwrap_or(100),
            target_bytes: p
                .get("commit.manifest.target-size-bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(8 * 1024 * 1024),
        }
    }
}

/// Carries `manifests` forward, merging small ones of the same content and spec once there are at
/// least `commit.manifest.min-count-to-merge` of them (live entries become `EXISTING`; entries
/// deleted by earlier snapshots are dropped).
async fn merge(
    attempt: &mut Attempt<'_>,
    manifests: Vec<ManifestFile>,
) -> Result<Vec<ManifestFile>, SinkError> {
    let policy = MergePolicy::of(attempt.base);
    if !policy.enabled {
        return Ok(manifests);
    }
    let mut groups: BTreeMap<(bool, i32), Vec<ManifestFile>> = BTreeMap::new();
    for m in manifests {
        groups.entry((m.content == ManifestContentType::Deletes, m.partition_spec_id)).or_default().push(m);
    }
    let mut out = Vec::new();
    for ((deletes, spec_id), group) in groups {
        if group.len() < policy.min_count {
            out.extend(group);
            continue;
        }
        let (small, large): (Vec<_>, Vec<_>) =
            group.into_iter().partition(|m| m.manifest_length < policy.target_bytes);
        out.extend(large);
        // Bins of up to the target size, oldest first.
        let mut bin: Vec<ManifestFile> = Vec::new();
        let mut bin_bytes = 0;
        let content = if deletes { ManifestContentType::Deletes } else { ManifestContentType::Data };
        for m in small {
            bin_bytes += m.manifest_length;
            bin.push(m);
            if bin_bytes >= policy.target_bytes {
                out.push(merge_bin(attempt, content, spec_id, std::mem::take(&mut bin)).await?);
                bin_bytes = 0;
            }
        }
        match bin.len() {
            0 => {}
            1 => out.extend(bin),
            _ => out.push(merge_bin(attempt, content, spec_id, bin).await?),
        }
    }
    Ok(out)
}

async fn merge_bin(
    attempt: &mut Attempt<'_>,
    content: ManifestContentType,
    spec_id: i32,
    bin: Vec<ManifestFile>,
) -> Result<ManifestFile, SinkError> {
    let mut writer = attempt.manifest_writer(content, spec_id)?;
    for m in &bin {
        let manifest =
            m.load_manifest(attempt.base.file_io()).await.map_err(manifest_err(&m.manifest_path))?;
        for e in manifest.entries() {
            if e.status() == ManifestStatus::Deleted {
                continue;
            }
            let (Some(snapshot), Some(seq)) = (e.snapshot_id(), e.sequence_number()) else {
                return Err(SinkError::Shape {
                    table: attempt.base.identifier().to_string(),
                    message: format!(
                        "manifest {} has an entry without snapshot or sequence number",
                        m.manifest_path
                    ),
                });
            };
            writer
                .add_existing_file(e.data_file().clone(), snapshot, seq, e.file_sequence_number.or(Some(seq)))
                .map_err(manifest_err(&m.manifest_path))?;
        }
    }
    writer.write_manifest_file().await.map_err(manifest_err("(merged)"))
}

fn add_counts(d: &mut SummaryDelta, files: &[DataFile]) {
    for f in files {
        match f.content_type() {
            DataContentType::Data => {
                d.added_data_files += 1;
                d.added_records += f.record_count();
            }
            _ => {
                d.added_delete_files += 1;
                d.added_position_deletes += f.record_count();
            }
        }
        d.added_files_size += f.file_size_in_bytes();
    }
}

/// New data files.
#[derive(Debug, Clone, Default)]
pub struct Append {
    pub files: Vec<DataFile>,
}

impl SnapshotOperation for Append {
    fn operation(&self) -> Operation {
        Operation::Append
    }

    async fn manifests(&self, attempt: &mut Attempt<'_>) -> Result<Vec<ManifestFile>, AttemptError> {
        let parent = attempt.parent_manifests().await?;
        let mut out = added_manifests(attempt, &self.files).await?;
        out.extend(merge(attempt, parent).await?);
        Ok(out)
    }

    fn delta(&self) -> SummaryDelta {
        let mut d = SummaryDelta::default();
        add_counts(&mut d, &self.files);
        d
    }

    fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// New data files and position-delete files in one snapshot (upserts and deletes of a mirror table).
#[derive(Debug, Clone, Default)]
pub struct RowDelta {
    pub data: Vec<DataFile>,
    pub deletes: Vec<DataFile>,
    /// Data files the deletes point into: they must still be live in the base.
    pub referenced: Vec<String>,
    /// The snapshot the deletes were computed against.
    pub starting_snapshot: Option<i64>,
}

impl SnapshotOperation for RowDelta {
    fn operation(&self) -> Operation {
        match (self.data.is_empty(), self.deletes.is_empty()) {
            (_, true) => Operation::Append,
            (true, false) => Operation::Delete,
            (false, false) => Operation::Overwrite,
        }
    }

    async fn manifests(&self, attempt: &mut Attempt<'_>) -> Result<Vec<ManifestFile>, AttemptError> {
        let parent = attempt.parent_manifests().await?;
        if !self.referenced.is_empty() {
            // Only a snapshot that removes files (a rewrite) can take a referenced file away.
            let removing = snapshots_since(attempt.base, self.starting_snapshot)
                .is_none_or(|since| since.iter().any(|s| s.summary().operation != Operation::Append));
            if removing {
                let live = live_files(attempt.base, &parent, DataContentType::Data).await?;
                if let Some(gone) = self.referenced.iter().find(|r| !live.contains(*r)) {
                    return Err(AttemptError::Validation(format!(
                        "data file {gone} was removed by a concurrent commit (compaction?) after these deletes were computed"
                    )));
                }
            }
        }
        let mut out = added_manifests(attempt, &self.data).await?;
        out.extend(added_manifests(attempt, &self.deletes).await?);
        out.extend(merge(attempt, parent).await?);
        Ok(out)
    }

    fn delta(&self) -> SummaryDelta {
        let mut d = SummaryDelta::default();
        add_counts(&mut d, &self.data);
        add_counts(&mut d, &self.deletes);
        d
    }

    fn is_empty(&self) -> bool {
        self.data.is_empty() && self.deletes.is_empty()
    }
}

/// Files rewritten into others with the same rows (compaction): removed and added in one snapshot.
#[derive(Debug, Clone, Default)]
pub struct Replace {
    /// Data and delete files to remove (they must still be live).
    pub removed: Vec<DataFile>,
    pub added: Vec<DataFile>,
    /// The snapshot the rewrite read: no delete file may have been added since.
    pub starting_snapshot: Option<i64>,
}

impl SnapshotOperation for Replace {
    fn operation(&self) -> Operation {
        Operation::Replace
    }

    async fn manifests(&self, attempt: &mut Attempt<'_>) -> Result<Vec<ManifestFile>, AttemptError> {
        let new_deletes = snapshots_since(attempt.base, self.starting_snapshot).is_none_or(|since| {
            since.iter().any(|s| {
                s.summary().additional_properties.get("added-delete-files").is_some_and(|n| n != "0")
                    || s.summary().operation == Operation::Replace
            })
        });
        if new_deletes {
            return Err(AttemptError::Validation(
                "the table changed under the rewrite (new deletes or another rewrite); it will be retried at the next maintenance"
                    .into(),
            ));
        }
        let removed: HashSet<&str> = self.removed.iter().map(|f| f.file_path()).collect();
        let mut found = HashSet::new();
        let mut out = added_manifests(attempt, &self.added).await?;
        for m in attempt.parent_manifests().await? {
            let manifest =
                m.load_manifest(attempt.base.file_io()).await.map_err(manifest_err(&m.manifest_path))?;
            let touches = manifest.entries().iter().any(|e| e.is_alive() && removed.contains(e.file_path()));
            if !touches {
                out.push(m);
                continue;
            }
            let mut writer = attempt.manifest_writer(m.content, m.partition_spec_id)?;
            for e in manifest.entries() {
                if !e.is_alive() {
                    continue;
                }
                let seq = e.sequence_number().unwrap_or(m.sequence_number);
                let file_seq = e.file_sequence_number.or(Some(seq));
                let snapshot = e.snapshot_id().unwrap_or(m.added_snapshot_id);
                if removed.contains(e.file_path()) {
                    found.insert(e.file_path().to_string());
                    writer
                        .add_delete_file(e.data_file().clone(), seq, file_seq)
                        .map_err(manifest_err(&m.manifest_path))?;
                } else {
                    writer
                        .add_existing_file(e.data_file().clone(), snapshot, seq, file_seq)
                        .map_err(manifest_err(&m.manifest_path))?;
                }
            }
            out.push(writer.write_manifest_file().await.map_err(manifest_err(&m.manifest_path))?);
        }
        if let Some(gone) = self.removed.iter().find(|f| !found.contains(f.file_path())) {
            return Err(AttemptError::Validation(format!(
                "file {} is no longer in the table (a concurrent rewrite?)",
                gone.file_path()
            )));
        }
        Ok(out)
    }

    fn delta(&self) -> SummaryDelta {
        let mut d = SummaryDelta::default();
        add_counts(&mut d, &self.added);
        for f in &self.removed {
            match f.content_type() {
                DataContentType::Data => {
                    d.deleted_data_files += 1;
                    d.deleted_records += f.record_count();
                }
                _ => {
                    d.removed_delete_files += 1;
                    d.removed_position_deletes += f.record_count();
                }
            }
            d.removed_files_size += f.file_size_in_bytes();
        }
        d
    }

    fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }
}
