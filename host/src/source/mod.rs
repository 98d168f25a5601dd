//! Where records come from. [`file`] reads NDJSON (a file or stdin) for batch mode.

pub mod file;

pub use file::FileSource;
