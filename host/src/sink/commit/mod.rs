//! The one seam through which data files become an Iceberg snapshot.
//!
//! Every commit carries, in its snapshot summary, a unique commit id, the pipeline id, the transform
//! chain that produced the rows, and the source positions the rows reach. A commit whose outcome is
//! unknown (an error after the request may have landed) is resolved by reading the table back and
//! looking for the commit id before trying again.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use iceberg::Catalog;
use iceberg::spec::DataFile;
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};

use crate::error::SinkError;

/// Snapshot summary key of the commit id.
pub const COMMIT_ID: &str = "cdc-host.commit-id";
/// Snapshot summary key of the pipeline id.
pub const PIPELINE_ID: &str = "cdc-host.pipeline-id";
/// Snapshot summary key of the chain identity (`name@version#hash,...`).
pub const CHAIN: &str = "cdc-host.chain";

/// Snapshot summary key of the source positions of one pipeline (JSON: stream → next offset).
pub fn positions_key(pipeline_id: &str) -> String {
    format!("cdc-host.positions.{pipeline_id}")
}

/// How data files are committed. Append-only today; mirror tables add a row-delta mode here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// `fast_append` of new data files.
    Append,
}

/// What one commit carries.
#[derive(Debug, Default)]
pub struct CommitRequest {
    pub data_files: Vec<DataFile>,
    pub pipeline_id: String,
    pub chain: String,
    /// Stream → next offset to read, for every stream whose rows this commit holds.
    pub positions: BTreeMap<String, i64>,
    /// Stream → first offset of this commit's rows: the commit is refused if the table already holds
    /// positions beyond them (another host committed the same records).
    pub starts: BTreeMap<String, i64>,
}

const ATTEMPTS: u32 = 5;

/// Commits `req` to `table`, retrying retryable failures with backoff, and returns the new table.
pub async fn commit(
    catalog: &dyn Catalog,
    table: Table,
    mode: CommitMode,
    req: CommitRequest,
) -> Result<Table, SinkError> {
    let name = table.identifier().to_string();
    let commit_id = uuid::Uuid::new_v4().to_string();
    let mut props = HashMap::from([
        (COMMIT_ID.to_string(), commit_id.clone()),
        (PIPELINE_ID.to_string(), req.pipeline_id.clone()),
        (CHAIN.to_string(), req.chain.clone()),
    ]);
    if !req.positions.is_empty() {
        props.insert(
            positions_key(&req.pipeline_id),
            serde_json::to_string(&req.positions).expect("positions serialize"),
        );
    }
    let mut table = table;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if !req.starts.is_empty() {
            // Fencing needs what the catalog holds now, not this writer's last view of the table.
            table = catalog.load_table(table.identifier()).await.map_err(|source| SinkError::Catalog {
                context: format!("reloading {name} before committing"),
                source: Box::new(source),
            })?;
        }
        let overlap = overlaps(&table, &req.pipeline_id, &req.starts);
        if !overlap.is_empty() {
            return Err(SinkError::Fenced { table: name, streams: overlap.join(", ") });
        }
        let result = match mode {
            CommitMode::Append => {
                let tx = Transaction::new(&table);
                let action = tx
                    .fast_append()
                    .with_check_duplicate(false)
                    .set_snapshot_properties(props.clone())
                    .add_data_files(req.data_files.clone());
                match action.apply(tx) {
                    Ok(tx) => tx.commit(catalog).await,
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(t) => return Ok(t),
            Err(source) => {
                let err = SinkError::Commit { table: name.clone(), source: Box::new(source) };
                // Whatever the error, the request may have landed: look before retrying.
                if let Ok(fresh) = catalog.load_table(table.identifier()).await {
                    if has_commit(&fresh, &commit_id) {
                        tracing::warn!(table = %name, error = %err, "commit reported an error but it landed");
                        return Ok(fresh);
                    }
                    table = fresh;
                }
                if !err.is_retryable() || attempt >= ATTEMPTS {
                    return Err(err);
                }
                let wait = Duration::from_millis(100 * 2u64.pow(attempt));
                tracing::warn!(table = %name, attempt, error = %err, wait_ms = wait.as_millis() as u64, "commit failed; retrying");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// Whether a snapshot of `table` carries `commit_id`.
pub fn has_commit(table: &Table, commit_id: &str) -> bool {
    table
        .metadata()
        .snapshots()
        .any(|s| s.summary().additional_properties.get(COMMIT_ID).is_some_and(|c| c == commit_id))
}

/// The source positions the table holds for `pipeline_id`: for every stream, the position recorded
/// by the newest snapshot that names it (a commit records only the streams whose rows it holds).
pub fn committed_positions(table: &Table, pipeline_id: &str) -> BTreeMap<String, i64> {
    let key = positions_key(pipeline_id);
    let mut snapshots: Vec<_> = table.metadata().snapshots().collect();
    snapshots.sort_by_key(|s| std::cmp::Reverse(s.sequence_number()));
    let mut out = BTreeMap::new();
    for s in snapshots {
        let Some(v) = s.summary().additional_properties.get(&key) else { continue };
        let Ok(p) = serde_json::from_str::<BTreeMap<String, i64>>(v) else { continue };
        for (stream, next) in p {
            out.entry(stream).or_insert(next);
        }
    }
    out
}

/// Streams whose rows another writer already committed past where this commit's rows start.
fn overlaps(table: &Table, pipeline_id: &str, starts: &BTreeMap<String, i64>) -> Vec<String> {
    let held = committed_positions(table, pipeline_id);
    starts
        .iter()
        .filter(|(s, start)| held.get(*s).is_some_and(|h| h > start))
        .map(|(s, start)| format!("{s} (table at {}, rows start at {start})", held[s]))
        .collect()
}
