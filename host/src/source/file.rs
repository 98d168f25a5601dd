//! NDJSON records from a file or stdin, read in batches.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{PipelineHandle, Source};
use crate::change::RawBatch;
use crate::error::PipelineError;

/// Reads one record per line.
pub struct FileSource {
    reader: Box<dyn BufRead + Send>,
    name: Arc<str>,
    line: i64,
    done: bool,
    bytes_read: u64,
    total_bytes: Option<u64>,
    /// Bytes of the last full batch: the next one reserves as much up front instead of growing.
    last_batch_bytes: usize,
}

impl FileSource {
    /// Opens `path`, or stdin for `-`.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let (reader, name, total): (Box<dyn BufRead + Send>, String, Option<u64>) = if path == Path::new("-")
        {
            (Box::new(BufReader::with_capacity(1 << 20, std::io::stdin())), "stdin".into(), None)
        } else {
            let f = File::open(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot open input {}: {e}", path.display()))
            })?;
            let total = f.metadata().ok().map(|m| m.len());
            (Box::new(BufReader::with_capacity(1 << 20, f) as BufReader<File>), display_name(path), total)
        };
        Ok(Self {
            reader,
            name: Arc::from(name),
            line: 0,
            done: false,
            bytes_read: 0,
            total_bytes: total,
            last_batch_bytes: 0,
        })
    }

    /// A source over any reader (tests, benchmarks).
    pub fn from_reader(name: &str, reader: impl Read + Send + 'static) -> Self {
        Self {
            reader: Box::new(BufReader::with_capacity(1 << 20, reader)),
            name: Arc::from(name),
            line: 0,
            done: false,
            bytes_read: 0,
            total_bytes: None,
            last_batch_bytes: 0,
        }
    }

    /// Names the stream (`--source-id`): positions are recorded under this name, so the same data
    /// under another path, or stdin, resumes where it left off.
    pub fn with_name(mut self, name: &str) -> Self {
        self.name = Arc::from(name);
        self
    }

    /// Skips lines up to (not including) line `next` without handing them over.
    fn skip_to(&mut self, next: i64) -> std::io::Result<()> {
        let mut line = Vec::with_capacity(4096);
        while self.line + 1 < next && self.next_line(&mut line)? {}
        Ok(())
    }

    /// Reads the next line into `line` (without its line break); false at end of input.
    fn next_line(&mut self, line: &mut Vec<u8>) -> std::io::Result<bool> {
        line.clear();
        self.append_line(line)
    }

    /// Appends the next line to `buf` (without its line break); false at end of input.
    fn append_line(&mut self, buf: &mut Vec<u8>) -> std::io::Result<bool> {
        let start = buf.len();
        let n = self.reader.read_until(b'\n', buf)?;
        if n == 0 {
            self.done = true;
            return Ok(false);
        }
        self.bytes_read += n as u64;
        self.line += 1;
        while buf.len() > start && matches!(buf.last(), Some(b'\n' | b'\r')) {
            buf.pop();
        }
        Ok(true)
    }

    /// Bytes read so far, and the input size when known.
    pub fn progress(&self) -> (u64, Option<u64>) {
        (self.bytes_read, self.total_bytes)
    }

    /// Fills `out` (cleared first) with up to `max` records. Returns false at end of input.
    pub fn read_batch(&mut self, out: &mut RawBatch, max: usize) -> std::io::Result<bool> {
        out.clear();
        if out.streams.is_empty() {
            out.streams.push(self.name.clone());
        }
        // Lines are read straight into the batch, which has room for as many bytes as the last one.
        out.reserve(self.last_batch_bytes + self.last_batch_bytes / 8);
        while out.len() < max && !self.done && self.append_line(&mut out.buf)? {
            out.ends.push(out.buf.len());
            out.stream.push(0);
            out.offsets.push(self.line);
        }
        if out.len() == max {
            self.last_batch_bytes = out.buf.len();
        }
        Ok(!out.is_empty())
    }
}

impl Source for FileSource {
    /// Resumes after the lines the table already holds for this stream.
    fn start(&mut self, handle: Arc<dyn PipelineHandle>) -> Result<(), PipelineError> {
        let held = handle.table_positions().map_err(PipelineError::Source)?;
        if let Some(&next) = held.get(&*self.name)
            && next > 1
        {
            self.skip_to(next)?;
            handle.already_held(self.line as u64);
            tracing::info!(
                source = %self.name,
                lines = next - 1,
                "resuming: the table already holds the first lines of this input"
            );
        }
        Ok(())
    }

    fn next_batch(&mut self, out: &mut RawBatch, max: usize) -> Result<bool, PipelineError> {
        Ok(self.read_batch(out, max)?)
    }

    fn progress(&self) -> Option<(u64, Option<u64>)> {
        Some(FileSource::progress(self))
    }

    fn name(&self) -> &str {
        &self.name
    }
}

fn display_name(path: &Path) -> String {
    std::fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path)).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_lines_with_numbers() {
        let mut s = FileSource::from_reader("mem", &b"a\r\nb\n\nc"[..]);
        let mut r = RawBatch::default();
        assert!(s.read_batch(&mut r, 2).unwrap());
        assert_eq!((r.record(0), r.record(1)), (&b"a"[..], &b"b"[..]));
        assert!(s.read_batch(&mut r, 2).unwrap());
        assert_eq!(r.len(), 2);
        assert_eq!(r.record(1), b"c");
        assert_eq!(r.position(1), "mem:4");
        assert!(!s.read_batch(&mut r, 2).unwrap());
    }
}
