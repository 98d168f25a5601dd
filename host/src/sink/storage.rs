//! The warehouse's local file system, made durable once per commit.
//!
//! Every file the host writes (data, delete and held-value files, manifests, manifest lists,
//! metadata) goes through [`WarehouseFs`]. A file is not synced when it is closed: the lane that
//! wrote it goes straight on to its next file. Its path is remembered instead, and
//! [`sync_written`] syncs every remembered file, and the directories that name them, before a
//! compare-and-swap publishes a snapshot ([`super::commit::cas`]). So a snapshot never names a file
//! that a power loss could take away, and metadata files are durable too.
//!
//! Syncing each file as it closed held a writing lane for the disk's flush: with a commit of a few
//! hundred partitions (one file each), lanes spent a third of their time waiting there.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, LocalFsStorage, OutputFile, Storage, StorageConfig,
    StorageFactory,
};
use iceberg::{Error, ErrorKind};
use serde::{Deserialize, Serialize};

use crate::error::SinkError;

/// Files written and closed since the last [`sync_written`], in this process.
static WRITTEN: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Files synced by [`sync_written`] in this process.
static SYNCED: AtomicU64 = AtomicU64::new(0);

/// Held while files are synced, so a commit that finds nothing left to sync (another took its files)
/// still waits until they are durable; holds the first failure, after which nothing is published.
static SYNCING: tokio::sync::Mutex<Option<String>> = tokio::sync::Mutex::const_new(None);

/// Files synced together by one blocking task.
const SYNC_CHUNK: usize = 64;

fn remember(path: PathBuf) {
    WRITTEN.lock().unwrap_or_else(|e| e.into_inner()).push(path);
}

/// The local path of a `file:` location (`file:///p`, `file:/p`); `None` for another scheme.
pub fn file_location_path(location: &str) -> Option<PathBuf> {
    let rest = location.strip_prefix("file:")?;
    Some(PathBuf::from(format!("/{}", rest.trim_start_matches('/'))))
}

/// `file:///p`, `file:/p` and `/p` as a local path.
pub fn local_path(path: &str) -> PathBuf {
    file_location_path(path).unwrap_or_else(|| PathBuf::from(path))
}

fn io_err(context: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Unexpected, format!("{context} {}: {e}", path.display()))
}

/// Files written and closed but not synced yet (they are synced by the next commit).
pub fn unsynced() -> Vec<PathBuf> {
    WRITTEN.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Files this process has synced, in all.
pub fn synced_total() -> u64 {
    SYNCED.load(Ordering::Relaxed)
}

/// Makes every file written since the last call durable, with the directories that name them:
/// called before a snapshot that may name them is published. Files deleted meanwhile are skipped.
pub async fn sync_written() -> Result<(), SinkError> {
    let mut syncing = SYNCING.lock().await;
    if let Some(message) = syncing.as_ref() {
        return Err(SinkError::Durability { message: message.clone() });
    }
    let files = std::mem::take(&mut *WRITTEN.lock().unwrap_or_else(|e| e.into_inner()));
    if files.is_empty() {
        return Ok(());
    }
    let count = files.len();
    let dirs: BTreeSet<PathBuf> = files.iter().filter_map(|f| f.parent().map(Path::to_path_buf)).collect();
    let mut tasks = Vec::new();
    for chunk in files.chunks(SYNC_CHUNK) {
        let chunk = chunk.to_vec();
        tasks.push(tokio::task::spawn_blocking(move || chunk.iter().try_for_each(|f| sync_path(f, false))));
    }
    let mut failed = None;
    for task in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failed = failed.or(Some(e.to_string())),
            Err(e) => failed = failed.or(Some(format!("the sync task failed: {e}"))),
        }
    }
    if failed.is_none() {
        let synced =
            tokio::task::spawn_blocking(move || dirs.iter().try_for_each(|d| sync_path(d, true))).await;
        failed = match synced {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(e) => Some(format!("the sync task failed: {e}")),
        };
    }
    match failed {
        None => {
            SYNCED.fetch_add(count as u64, Ordering::Relaxed);
            Ok(())
        }
        // A failed sync may have dropped the data it could not write: syncing again could then
        // succeed without it. Neither this snapshot nor any later one is published.
        Some(message) => {
            *syncing = Some(message.clone());
            Err(SinkError::Durability { message })
        }
    }
}

/// Syncs one file (its data) or directory (its entries); a file that is gone is skipped.
fn sync_path(path: &Path, dir: bool) -> Result<(), Error> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("opening", path, e)),
    };
    let synced = if dir { file.sync_all() } else { file.sync_data() };
    synced.map_err(|e| io_err("syncing", path, e))
}

/// The local file system of a warehouse: [`LocalFsStorage`], except that written files are synced
/// by [`sync_written`] before a commit rather than each when it closes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarehouseFs {
    inner: LocalFsStorage,
}

#[async_trait]
#[typetag::serde]
impl Storage for WarehouseFs {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        self.inner.exists(path).await
    }

    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        self.inner.metadata(path).await
    }

    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        self.inner.read(path).await
    }

    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        self.inner.reader(path).await
    }

    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        self.inner.write(path, bs).await?;
        remember(local_path(path));
        Ok(())
    }

    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        let path = local_path(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io_err("creating directory", parent, e))?;
        }
        let file = std::fs::File::create(&path).map_err(|e| io_err("creating", &path, e))?;
        Ok(Box::new(WarehouseFile { file: Some(file), path }))
    }

    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        self.inner.delete(path).await
    }

    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        self.inner.delete_prefix(path).await
    }

    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        self.inner.delete_stream(paths).await
    }

    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }

    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

/// A file being written: remembered for [`sync_written`] when it closes.
#[derive(Debug)]
struct WarehouseFile {
    file: Option<std::fs::File>,
    path: PathBuf,
}

#[async_trait]
impl FileWrite for WarehouseFile {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| Error::new(ErrorKind::DataInvalid, "writing to a closed file"))?;
        file.write_all(&bs).map_err(|e| io_err("writing", &self.path, e))
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        let file =
            self.file.take().ok_or_else(|| Error::new(ErrorKind::DataInvalid, "file already closed"))?;
        drop(file);
        remember(std::mem::take(&mut self.path));
        Ok(())
    }
}

/// Builds [`WarehouseFs`] for the catalogs' tables.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WarehouseFsFactory;

#[typetag::serde]
impl StorageFactory for WarehouseFsFactory {
    fn build(&self, _config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(WarehouseFs::default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_uris_are_local_paths() {
        assert_eq!(local_path("file:///w/t/data/a.parquet"), PathBuf::from("/w/t/data/a.parquet"));
        assert_eq!(local_path("file:/w/t/a"), PathBuf::from("/w/t/a"));
        assert_eq!(local_path("/w/t/a"), PathBuf::from("/w/t/a"));
        assert_eq!(
            file_location_path("file:///w/t/data/a.parquet"),
            Some(PathBuf::from("/w/t/data/a.parquet"))
        );
        assert_eq!(file_location_path("file:/w/t/m.json"), Some(PathBuf::from("/w/t/m.json")));
        assert_eq!(file_location_path("s3://b/k"), None);
        assert_eq!(file_location_path("/w/t/a"), None);
    }

    #[tokio::test]
    async fn written_files_are_synced_once_and_deleted_ones_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let io = iceberg::io::FileIOBuilder::new(Arc::new(WarehouseFsFactory)).build();
        let kept = format!("file://{}/data/kept.bin", dir.path().display());
        let gone = format!("file://{}/data/gone.bin", dir.path().display());
        for p in [&kept, &gone] {
            let mut w = io.new_output(p).unwrap().writer().await.unwrap();
            w.write(Bytes::from_static(b"rows")).await.unwrap();
            w.close().await.unwrap();
        }
        io.new_output(format!("file://{}/m.json", dir.path().display()))
            .unwrap()
            .write(Bytes::from("{}"))
            .await
            .unwrap();
        std::fs::remove_file(local_path(&gone)).unwrap();
        sync_written().await.unwrap();
        assert!(!WRITTEN.lock().unwrap().contains(&local_path(&kept)), "synced files are forgotten");
        assert_eq!(std::fs::read(local_path(&kept)).unwrap(), b"rows");
    }
}
