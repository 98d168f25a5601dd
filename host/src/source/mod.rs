//! Where records come from: [`file`] reads NDJSON (a file or stdin), [`kafka`] consumes Debezium
//! topics.

pub mod file;
pub mod kafka;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use file::FileSource;

use crate::change::RawBatch;
use crate::error::PipelineError;

/// Why a [`PipelineHandle::flush`] did not commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlushError {
    /// The pipeline has already stopped: its last commit holds what it took (a failure that
    /// stopped it is reported by the pipeline itself).
    Stopped,
    /// The commit failed.
    Failed(String),
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushError::Stopped => f.write_str("the pipeline has stopped"),
            FlushError::Failed(e) => f.write_str(e),
        }
    }
}

/// What a source may ask of the running pipeline (from its own thread).
pub trait PipelineHandle: Send + Sync {
    /// Commits everything handed to the pipeline so far; returns when the commit is done.
    fn flush(&self) -> Result<(), FlushError>;
    /// The positions (stream → next offset) the table holds for this pipeline, read fresh.
    fn table_positions(&self) -> Result<BTreeMap<String, i64>, String>;
    /// Whether [`Self::table_positions`] are the lowest of several tables' positions, some of which
    /// may not know a stream the others fed from: a consumer then starts each partition at the
    /// lower of that and its group's committed offset (acknowledged only once every table held it).
    fn several_tables(&self) -> bool {
        false
    }
    /// The source skipped `records` records the table already held (resuming an input).
    fn already_held(&self, records: u64) {
        let _ = records;
    }
}

/// A source of raw records, read in batches on the pipeline's worker thread.
pub trait Source: Send {
    /// Called once on the worker thread before the first batch.
    fn start(&mut self, handle: Arc<dyn PipelineHandle>) -> Result<(), PipelineError> {
        let _ = handle;
        Ok(())
    }

    /// Fills `out` (cleared first) with up to `max` records. `Ok(false)` means the input is over; an
    /// empty batch with `Ok(true)` means nothing arrived yet.
    fn next_batch(&mut self, out: &mut RawBatch, max: usize) -> Result<bool, PipelineError>;

    /// The stream name used in positions and dead letters.
    fn name(&self) -> &str;

    /// Bytes read so far and the input's size, for sources that know them (files).
    fn progress(&self) -> Option<(u64, Option<u64>)> {
        None
    }

    /// The table now durably holds everything before `positions` (stream → next offset); a source
    /// with its own acknowledgements (Kafka consumer groups) records them here, never earlier.
    fn committed(&mut self, positions: &BTreeMap<String, i64>) {
        let _ = positions;
    }
}
