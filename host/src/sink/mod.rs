//! The Iceberg side: catalog, table shape, data files and commits.
//!
//! [`catalog`] opens the SQL catalog, [`table`] creates and evolves tables from their definition,
//! [`writer`] turns Arrow batches into Parquet data files, [`commit`] is the one seam through which
//! data files become snapshots (today `fast_append`; a row-delta commit joins it for mirror tables),
//! and [`dead_letter`] lands rejected records in their own table.

pub mod catalog;
pub mod commit;
pub mod dead_letter;
pub mod table;
pub mod writer;

use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::config::SinkConfig;

/// Parquet writer properties from the sink config (compression is always explicit).
pub fn parquet_properties(cfg: &SinkConfig) -> Result<WriterProperties, String> {
    let compression = match cfg.compression.to_ascii_lowercase().as_str() {
        "zstd" => Compression::ZSTD(
            ZstdLevel::try_new(cfg.zstd_level).map_err(|e| format!("zstd level {}: {e}", cfg.zstd_level))?,
        ),
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "uncompressed" | "none" => Compression::UNCOMPRESSED,
        other => {
            return Err(format!("unknown compression `{other}` (zstd, snappy, lz4, uncompressed)"));
        }
    };
    Ok(WriterProperties::builder().set_compression(compression).build())
}

/// The Iceberg table property naming the codec, so other writers use the same.
pub fn compression_property(cfg: &SinkConfig) -> (String, String) {
    let codec = match cfg.compression.to_ascii_lowercase().as_str() {
        "lz4" => "lz4".to_string(),
        "none" => "uncompressed".to_string(),
        other => other.to_string(),
    };
    ("write.parquet.compression-codec".into(), codec)
}
