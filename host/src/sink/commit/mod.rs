//! The commit layer: how data and delete files become an Iceberg snapshot, exactly once.
//!
//! [`commit`] is the one loop every snapshot the host writes goes through. Each attempt:
//! 1. waits for its turn among this host's commits to the table ([`Catalog::committing`]), then takes
//!    a base (the table as last seen; as the catalog holds it now after a lost race or when another
//!    commit of this host landed since),
//! 2. checks the fence against that base: no other writer may already hold this commit's records,
//! 3. lets the [`SnapshotOperation`] write its manifests against that base (and validate it),
//! 4. writes the manifest list and publishes the snapshot with a compare-and-swap ([`cas`]) that
//!    succeeds only if the catalog still points at that very base,
//! 5. classifies the outcome: committed; conflict (another writer won: drop this attempt's metadata
//!    files, reload, go to 1 — nothing is re-applied blindly, the fence runs again); rejected; or
//!    unknown (stop: the caller must not guess).
//!
//! Data and delete files are written once; only metadata is rewritten per attempt.
//!
//! Every snapshot carries, in its summary, a commit id, the pipeline id, the chain identity and the
//! **complete** position map of every pipeline writing the table (`cdc-host.positions.<pipeline>`:
//! stream → next offset), so resuming reads the current snapshot only, and only the current lineage
//! of `main` counts.

pub mod cas;
mod ops;
pub mod rest;
pub mod sql;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use iceberg::TableUpdate;
use iceberg::spec::{
    DataContentType, FormatVersion, MAIN_BRANCH, ManifestContentType, ManifestFile, ManifestListWriter,
    ManifestWriter, ManifestWriterBuilder, Operation, Snapshot, SnapshotReference, SnapshotRetention,
    Summary,
};
use iceberg::table::Table;
pub use ops::{Append, Replace, RowDelta};

use self::cas::SwapOutcome;
use super::catalog::Catalog;
use crate::error::SinkError;

/// Snapshot summary key of the commit id.
pub const COMMIT_ID: &str = "cdc-host.commit-id";
/// Snapshot summary key of the pipeline id.
pub const PIPELINE_ID: &str = "cdc-host.pipeline-id";
/// Snapshot summary key of the chain identity (`name@version#hash,...`).
pub const CHAIN: &str = "cdc-host.chain";
/// Prefix of the snapshot summary keys holding each pipeline's positions.
pub const POSITIONS_PREFIX: &str = "cdc-host.positions.";

/// Snapshot summary key naming the file of large values a mirror keeps for keys its chain left out
/// (see `sink::mirror::held`); carried forward like the positions.
pub const HELD_VALUES: &str = "cdc-host.mirror.held-values";

/// Stream → next offset to read.
pub type Positions = BTreeMap<String, i64>;

/// Snapshot summary key of the source positions of one pipeline (JSON: stream → next offset).
pub fn positions_key(pipeline_id: &str) -> String {
    format!("{POSITIONS_PREFIX}{pipeline_id}")
}

/// The newest snapshot of `main`'s lineage that carries positions (usually the current one; other
/// engines' snapshots carry none and are walked past).
fn positions_snapshot(table: &Table) -> Option<&Snapshot> {
    let metadata = table.metadata();
    let mut next = metadata.current_snapshot();
    while let Some(s) = next {
        if s.summary().additional_properties.keys().any(|k| k.starts_with(POSITIONS_PREFIX)) {
            return Some(s);
        }
        next = s.parent_snapshot_id().and_then(|p| metadata.snapshot_by_id(p));
    }
    None
}

/// The positions `table` holds for `pipeline_id`: read from the newest snapshot of `main` that
/// carries positions (every snapshot the host writes carries the complete map).
pub fn committed_positions(table: &Table, pipeline_id: &str) -> Positions {
    let key = positions_key(pipeline_id);
    positions_snapshot(table)
        .and_then(|s| s.summary().additional_properties.get(&key))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The value of summary key `key` in the newest snapshot of `main` the host wrote (one carrying
/// positions).
pub fn carried_value<'a>(table: &'a Table, key: &str) -> Option<&'a str> {
    positions_snapshot(table).and_then(|s| s.summary().additional_properties.get(key)).map(String::as_str)
}

/// Every pipeline's positions as the table holds them (summary key → JSON), and the mirror's held
/// values, carried forward into each new snapshot.
fn inherited_positions(table: &Table) -> HashMap<String, String> {
    positions_snapshot(table)
        .map(|s| {
            s.summary()
                .additional_properties
                .iter()
                .filter(|(k, _)| k.starts_with(POSITIONS_PREFIX) || *k == HELD_VALUES)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether a snapshot of `table` carries `commit_id`.
pub fn has_commit(table: &Table, commit_id: &str) -> bool {
    table
        .metadata()
        .snapshots()
        .any(|s| s.summary().additional_properties.get(COMMIT_ID).is_some_and(|c| c == commit_id))
}

/// The positions one commit reaches, and where its records start: the commit is refused if the base
/// already holds positions past those starts (another writer committed the same records).
#[derive(Debug, Clone, Default)]
pub struct Fence {
    pub pipeline_id: String,
    /// Stream → first offset of this commit's records.
    pub starts: Positions,
    /// Stream → next offset after this commit's records.
    pub positions: Positions,
}

impl Fence {
    /// Streams whose records the base already holds past where this commit's start.
    fn overlaps(&self, held: &Positions) -> Vec<String> {
        self.starts
            .iter()
            .filter(|(s, start)| held.get(*s).is_some_and(|h| h > start))
            .map(|(s, start)| format!("{s} (table at {}, these records start at {start})", held[s]))
            .collect()
    }
}

/// What the snapshot summary says besides the operation's own counts.
#[derive(Debug, Clone, Default)]
pub struct CommitMeta {
    pub pipeline_id: String,
    pub chain: String,
    /// Extra summary properties.
    pub properties: HashMap<String, String>,
    /// Checked against every base an attempt builds on; its positions are merged into the map.
    pub fence: Option<Fence>,
}

/// A landed commit.
#[derive(Debug)]
pub struct Committed {
    pub table: Table,
    pub snapshot_id: i64,
    /// The complete positions of the committing pipeline after this commit.
    pub positions: Positions,
    /// Attempts it took (1 = no lost race).
    pub attempts: u32,
}

/// How often and how long to retry lost races (`commit.retry.*` table properties override these).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub min_wait: Duration,
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { attempts: 10, min_wait: Duration::from_millis(50), max_wait: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    fn for_table(table: &Table) -> Self {
        let props = table.metadata().properties();
        let get = |k: &str| props.get(k).and_then(|v| v.parse::<u64>().ok());
        let d = Self::default();
        Self {
            attempts: get("commit.retry.num-retries").map_or(d.attempts, |n| n as u32 + 1),
            min_wait: get("commit.retry.min-wait-ms").map_or(d.min_wait, Duration::from_millis),
            max_wait: get("commit.retry.max-wait-ms").map_or(d.max_wait, Duration::from_millis),
        }
    }

    fn wait(&self, attempt: u32) -> Duration {
        let exp = self.min_wait.saturating_mul(1 << attempt.min(16));
        let jitter = Duration::from_millis(u64::from(uuid::Uuid::new_v4().as_u64_pair().0 as u16 % 50));
        exp.min(self.max_wait) + jitter
    }
}

/// Why an attempt could not produce its manifests.
#[derive(Debug)]
pub enum AttemptError {
    /// The base no longer allows the change (e.g. a file to rewrite is gone): never retried.
    Validation(String),
    Sink(SinkError),
}

impl From<SinkError> for AttemptError {
    fn from(e: SinkError) -> Self {
        AttemptError::Sink(e)
    }
}

/// Counts a snapshot operation adds to and removes from the table, for the summary.
#[derive(Debug, Clone, Copy, Default)]
pub struct SummaryDelta {
    pub added_data_files: u64,
    pub added_records: u64,
    pub added_files_size: u64,
    pub deleted_data_files: u64,
    pub deleted_records: u64,
    pub removed_files_size: u64,
    pub added_delete_files: u64,
    pub added_position_deletes: u64,
    pub removed_delete_files: u64,
    pub removed_position_deletes: u64,
}

/// One kind of snapshot (append, row delta, replace): the manifests of the new snapshot against a
/// base. Files it adds are written before the commit starts; manifests are rewritten per attempt.
pub trait SnapshotOperation: Send + Sync {
    fn operation(&self) -> Operation;
    /// The complete manifest list of the new snapshot, built on `attempt.base` (validating it).
    fn manifests(
        &self,
        attempt: &mut Attempt<'_>,
    ) -> impl Future<Output = Result<Vec<ManifestFile>, AttemptError>> + Send;
    /// What the snapshot adds and removes.
    fn delta(&self) -> SummaryDelta;
    /// Whether there is anything to commit besides positions.
    fn is_empty(&self) -> bool;
}

/// One attempt at a snapshot: its base, ids, and the metadata files it wrote (deleted if it loses).
pub struct Attempt<'a> {
    pub base: &'a Table,
    pub snapshot_id: i64,
    pub sequence_number: i64,
    commit_id: &'a str,
    number: u32,
    manifests_written: u32,
    /// Metadata files this attempt wrote.
    written: Vec<String>,
}

impl<'a> Attempt<'a> {
    fn new(base: &'a Table, commit_id: &'a str, number: u32) -> Self {
        let metadata = base.metadata();
        let mut snapshot_id = random_id();
        while metadata.snapshot_by_id(snapshot_id).is_some() {
            snapshot_id = random_id();
        }
        Self {
            base,
            snapshot_id,
            sequence_number: metadata.next_sequence_number(),
            commit_id,
            number,
            manifests_written: 0,
            written: Vec::new(),
        }
    }

    fn err(&self, context: &str) -> impl FnOnce(iceberg::Error) -> SinkError {
        let context = format!("{context} for {}", self.base.identifier());
        move |source| SinkError::Catalog { context, source: Box::new(source) }
    }

    /// The manifests of the base's current snapshot (none for an empty table).
    pub async fn parent_manifests(&self) -> Result<Vec<ManifestFile>, SinkError> {
        let Some(current) = self.base.metadata().current_snapshot() else { return Ok(Vec::new()) };
        let list = self
            .base
            .manifest_list_reader(current)
            .load()
            .await
            .map_err(self.err("reading the current manifest list"))?;
        Ok(list.consume_entries().into_iter().collect())
    }

    /// A writer for a new manifest of this snapshot, for partition spec `spec_id`.
    pub fn manifest_writer(
        &mut self,
        content: ManifestContentType,
        spec_id: i32,
    ) -> Result<ManifestWriter, SinkError> {
        let metadata = self.base.metadata();
        let spec = metadata.partition_spec_by_id(spec_id).ok_or_else(|| SinkError::Shape {
            table: self.base.identifier().to_string(),
            message: format!("partition spec {spec_id} is not in the table's metadata"),
        })?;
        self.manifests_written += 1;
        let path = format!(
            "{}/metadata/{}-a{}-m{}.avro",
            metadata.location(),
            self.commit_id,
            self.number,
            self.manifests_written
        );
        let output = self.base.file_io().new_output(&path).map_err(self.err("creating a manifest"))?;
        self.written.push(path);
        let builder = ManifestWriterBuilder::new(
            output,
            Some(self.snapshot_id),
            metadata.current_schema().clone(),
            spec.as_ref().clone(),
        );
        Ok(match (metadata.format_version(), content) {
            (FormatVersion::V1, _) => builder.build_v1(),
            (FormatVersion::V2, ManifestContentType::Data) => builder.build_v2_data(),
            (FormatVersion::V2, ManifestContentType::Deletes) => builder.build_v2_deletes(),
            (FormatVersion::V3, ManifestContentType::Data) => builder.build_v3_data(),
            (FormatVersion::V3, ManifestContentType::Deletes) => builder.build_v3_deletes(),
        })
    }

    async fn write_manifest_list(&mut self, manifests: Vec<ManifestFile>) -> Result<String, SinkError> {
        let metadata = self.base.metadata();
        let path = format!(
            "{}/metadata/snap-{}-{}-{}.avro",
            metadata.location(),
            self.snapshot_id,
            self.number,
            self.commit_id
        );
        let output = self.base.file_io().new_output(&path).map_err(self.err("creating the manifest list"))?;
        self.written.push(path.clone());
        let writer = output.writer().await.map_err(self.err("creating the manifest list"))?;
        let parent = metadata.current_snapshot_id();
        let mut list = match metadata.format_version() {
            FormatVersion::V1 => ManifestListWriter::v1(writer, self.snapshot_id, parent),
            _ => ManifestListWriter::v2(writer, self.snapshot_id, parent, self.sequence_number),
        };
        list.add_manifests(manifests.into_iter()).map_err(self.err("writing the manifest list"))?;
        list.close().await.map_err(self.err("writing the manifest list"))?;
        Ok(path)
    }

    /// Deletes the metadata files of an attempt that did not land.
    async fn discard(self) {
        for path in &self.written {
            let _ = self.base.file_io().delete(path).await;
        }
    }
}

fn random_id() -> i64 {
    let (a, b) = uuid::Uuid::new_v4().as_u64_pair();
    ((a ^ b) & (i64::MAX as u64)) as i64
}

/// Commits `op` to the table, starting from `base` (the caller's last view; a stale one only costs
/// one lost race). See the module docs for the loop.
pub async fn commit<O: SnapshotOperation>(
    catalog: &Catalog,
    base: Table,
    op: &O,
    meta: &CommitMeta,
) -> Result<Committed, SinkError> {
    let started = std::time::Instant::now();
    let result = commit_attempts(catalog, base, op, meta).await;
    crate::metrics::stage_time(crate::metrics::Stage::Commit, started.elapsed());
    result
}

async fn commit_attempts<O: SnapshotOperation>(
    catalog: &Catalog,
    base: Table,
    op: &O,
    meta: &CommitMeta,
) -> Result<Committed, SinkError> {
    let ident = base.identifier().clone();
    let name = ident.to_string();
    let commit_id = uuid::Uuid::new_v4().to_string();
    let retry = RetryPolicy::for_table(&base);
    let mut base = base;
    let mut attempt_no = 0;
    loop {
        attempt_no += 1;
        let mut turn = catalog.committing(&ident).await;
        if turn.is_stale(&base) {
            base = catalog.load(&ident).await?;
        }
        let held = committed_positions(&base, &meta.pipeline_id);
        let mut positions = held.clone();
        if let Some(fence) = &meta.fence {
            let overlap = fence.overlaps(&held);
            if !overlap.is_empty() {
                return Err(SinkError::Fenced { table: name, streams: overlap.join(", ") });
            }
            for (s, &next) in &fence.positions {
                let e = positions.entry(s.clone()).or_insert(next);
                *e = (*e).max(next);
            }
        }
        let mut attempt = Attempt::new(&base, &commit_id, attempt_no);
        let manifests = match op.manifests(&mut attempt).await {
            Ok(m) => m,
            Err(e) => {
                attempt.discard().await;
                let e = match e {
                    AttemptError::Validation(message) => {
                        return Err(SinkError::Validation { table: name, message });
                    }
                    AttemptError::Sink(e) => e,
                };
                // The base's manifests can be gone when the table moved on and a snapshot expiry
                // (maintenance, here or elsewhere) deleted them: a lost race too.
                if attempt_no < retry.attempts
                    && let Ok(now) = catalog.load(&ident).await
                    && now.metadata_location() != base.metadata_location()
                {
                    tracing::info!(table = %name, attempt = attempt_no, error = %e, "the table moved while this commit read it; rebuilding on the new table state");
                    base = now;
                    continue;
                }
                return Err(e);
            }
        };
        let manifest_list = match attempt.write_manifest_list(manifests).await {
            Ok(p) => p,
            Err(e) => {
                attempt.discard().await;
                return Err(e);
            }
        };
        let mut properties = inherited_positions(&base);
        properties.extend(meta.properties.clone());
        properties.insert(COMMIT_ID.into(), commit_id.clone());
        if !meta.pipeline_id.is_empty() {
            properties.insert(PIPELINE_ID.into(), meta.pipeline_id.clone());
        }
        if !meta.chain.is_empty() {
            properties.insert(CHAIN.into(), meta.chain.clone());
        }
        if meta.fence.is_some() {
            properties.insert(
                positions_key(&meta.pipeline_id),
                serde_json::to_string(&positions).expect("positions"),
            );
        }
        summarize(&base, op.delta(), &mut properties);
        let snapshot = Snapshot::builder()
            .with_snapshot_id(attempt.snapshot_id)
            .with_parent_snapshot_id(base.metadata().current_snapshot_id())
            .with_sequence_number(attempt.sequence_number)
            .with_timestamp_ms(
                chrono::Utc::now().timestamp_millis().max(base.metadata().last_updated_ms() + 1),
            )
            .with_manifest_list(manifest_list)
            .with_schema_id(base.metadata().current_schema_id())
            .with_summary(Summary { operation: op.operation(), additional_properties: properties })
            .build();
        let snapshot_id = attempt.snapshot_id;
        let updates = vec![
            TableUpdate::AddSnapshot { snapshot },
            TableUpdate::SetSnapshotRef {
                ref_name: MAIN_BRANCH.to_string(),
                reference: SnapshotReference::new(snapshot_id, SnapshotRetention::branch(None, None, None)),
            },
        ];
        crate::fault::point("before-swap");
        let outcome = match catalog.cas().swap(&base, updates).await {
            Ok(o) => o,
            Err(e) => {
                // Nothing was sent (the metadata file could not be written): safe to drop.
                attempt.discard().await;
                return Err(e);
            }
        };
        match outcome {
            SwapOutcome::Committed(table) => {
                turn.landed(&table);
                crate::fault::point("after-swap");
                return Ok(Committed { table, snapshot_id, positions, attempts: attempt_no });
            }
            SwapOutcome::Conflict(reason) => {
                attempt.discard().await;
                if attempt_no >= retry.attempts {
                    return Err(SinkError::Conflicts { table: name, attempts: attempt_no, last: reason });
                }
                let wait = retry.wait(attempt_no);
                tracing::info!(table = %name, attempt = attempt_no, reason = %reason, wait_ms = wait.as_millis() as u64, "lost a commit race; rebuilding on the new table state");
                drop(turn);
                tokio::time::sleep(wait).await;
                base = catalog.load(&ident).await?;
            }
            SwapOutcome::Rejected(message) => {
                attempt.discard().await;
                return Err(SinkError::Rejected { table: name, message });
            }
            SwapOutcome::Unknown(message) => {
                // The files may be referenced by a landed snapshot: leave them.
                return Err(SinkError::CommitUnknown { table: name, commit_id, message });
            }
        }
    }
}

/// Adds the operation's counts and the table totals (parent totals plus this snapshot's changes).
fn summarize(base: &Table, d: SummaryDelta, props: &mut HashMap<String, String>) {
    let parent = base.metadata().current_snapshot().map(|s| &s.summary().additional_properties);
    let total = |key: &str| parent.and_then(|p| p.get(key)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    let mut set = |k: &str, v: u64| {
        props.insert(k.to_string(), v.to_string());
    };
    let counts = [
        ("added-data-files", d.added_data_files),
        ("added-records", d.added_records),
        ("added-files-size", d.added_files_size),
        ("deleted-data-files", d.deleted_data_files),
        ("deleted-records", d.deleted_records),
        ("removed-files-size", d.removed_files_size),
        ("added-delete-files", d.added_delete_files),
        ("added-position-deletes", d.added_position_deletes),
        ("removed-delete-files", d.removed_delete_files),
        ("removed-position-deletes", d.removed_position_deletes),
    ];
    for (k, v) in counts {
        if v > 0 {
            set(k, v);
        }
    }
    let totals = [
        ("total-records", d.added_records, d.deleted_records),
        ("total-data-files", d.added_data_files, d.deleted_data_files),
        ("total-delete-files", d.added_delete_files, d.removed_delete_files),
        ("total-files-size", d.added_files_size, d.removed_files_size),
        ("total-position-deletes", d.added_position_deletes, d.removed_position_deletes),
    ];
    for (k, add, remove) in totals {
        set(k, (total(k) + add).saturating_sub(remove));
    }
    set("total-equality-deletes", total("total-equality-deletes"));
}

/// The live entries' file paths of data manifests `manifests` (content `Data` or `Deletes`).
pub(crate) async fn live_files(
    table: &Table,
    manifests: &[ManifestFile],
    content: DataContentType,
) -> Result<HashSet<String>, SinkError> {
    let mut out = HashSet::new();
    for m in manifests {
        let want = matches!(
            (m.content, content),
            (ManifestContentType::Data, DataContentType::Data)
                | (ManifestContentType::Deletes, DataContentType::PositionDeletes)
        );
        if !want {
            continue;
        }
        let manifest = m.load_manifest(table.file_io()).await.map_err(|source| SinkError::Catalog {
            context: format!("reading manifest {}", m.manifest_path),
            source: Box::new(source),
        })?;
        out.extend(manifest.entries().iter().filter(|e| e.is_alive()).map(|e| e.file_path().to_string()));
    }
    Ok(out)
}

/// Snapshots of `main` after `since` (exclusive) up to the head, newest first; `None` if `since` is
/// not an ancestor of the head (history was rewritten or expired).
pub(crate) fn snapshots_since(table: &Table, since: Option<i64>) -> Option<Vec<&Snapshot>> {
    let metadata = table.metadata();
    let mut out = Vec::new();
    let mut next = metadata.current_snapshot();
    while let Some(s) = next {
        if Some(s.snapshot_id()) == since {
            return Some(out);
        }
        out.push(s.as_ref());
        next = s.parent_snapshot_id().and_then(|p| metadata.snapshot_by_id(p));
    }
    since.is_none().then_some(out)
}

/// Commits a metadata-only change (schema, properties, snapshot expiry): `updates` is recomputed from
/// each base an attempt builds on, so a lost race never re-applies a stale change.
pub async fn update_metadata<F>(catalog: &Catalog, base: Table, updates: F) -> Result<Table, SinkError>
where
    F: Fn(&Table) -> Result<Vec<TableUpdate>, SinkError>,
{
    let ident = base.identifier().clone();
    let name = ident.to_string();
    let retry = RetryPolicy::for_table(&base);
    let mut base = base;
    for attempt in 1.. {
        let mut turn = catalog.committing(&ident).await;
        if turn.is_stale(&base) {
            base = catalog.load(&ident).await?;
        }
        let changes = updates(&base)?;
        if changes.is_empty() {
            return Ok(base);
        }
        match catalog.cas().swap(&base, changes).await? {
            SwapOutcome::Committed(table) => {
                turn.landed(&table);
                return Ok(table);
            }
            SwapOutcome::Conflict(reason) => {
                if attempt >= retry.attempts {
                    return Err(SinkError::Conflicts { table: name, attempts: attempt, last: reason });
                }
                drop(turn);
                tokio::time::sleep(retry.wait(attempt)).await;
                base = catalog.load(&ident).await?;
            }
            SwapOutcome::Rejected(message) => return Err(SinkError::Rejected { table: name, message }),
            SwapOutcome::Unknown(message) => {
                return Err(SinkError::CommitUnknown {
                    table: name,
                    commit_id: "(metadata update)".into(),
                    message,
                });
            }
        }
    }
    unreachable!("the retry loop returns")
}
