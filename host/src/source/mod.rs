//! Where records come from. [`file`] reads NDJSON (a file or stdin) for batch mode.

pub mod file;

use std::collections::BTreeMap;

pub use file::FileSource;

use crate::change::RawBatch;
use crate::error::PipelineError;

/// A source of raw records, read in batches on the pipeline's worker thread.
pub trait Source: Send {
    /// Fills `out` (cleared first) with up to `max` records. `Ok(false)` means the input is over; an
    /// empty batch with `Ok(true)` means nothing arrived yet.
    fn next_batch(&mut self, out: &mut RawBatch, max: usize) -> Result<bool, PipelineError>;

    /// The stream name used in positions and dead letters.
    fn name(&self) -> &str;

    /// The table now durably holds everything before `positions` (stream → next offset); a source
    /// with its own acknowledgements (Kafka consumer groups) records them here, never earlier.
    fn committed(&mut self, positions: &BTreeMap<String, i64>) {
        let _ = positions;
    }
}
