//! Receiving a snapshot: etcd's stream (a bbolt database followed by a 32-byte sha256 of every
//! byte before it) is checked by [`TrailerCheck`] while it is compressed with zstd into a
//! temporary file in the destination directory; only a stream whose trailer matches is synced,
//! linked under its final name (never replacing an existing file) and its directory synced.
//! Anything else removes the temporary file. Memory stays flat: at most a few chunks of 32 KiB
//! are in flight between the network task and the two threads that check and write.
//!
//! Owns the on-disk format of a stored snapshot (zstd of etcd's stream, verbatim); does not
//! choose members or names (the caller does) and never reads or logs the snapshot's contents.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::BackupError;
use crate::etcd::EtcdClient;

/// etcd's trailer: sha256 of the database bytes.
const TRAILER: usize = 32;
/// bbolt pages: a database with a trailer is `n * 512 + 32` bytes (etcd's own test).
const PAGE: u64 = 512;
/// zstd level: the fastest regular level. etcd's pages compress well at it, and level 3 cost
/// about twice the CPU for a few percent smaller files.
const ZSTD_LEVEL: i32 = 1;
/// Chunks queued between two stages of [`save`].
const IN_FLIGHT: usize = 16;
/// Buffer in front of the stored file.
const WRITE_BUFFER: usize = 256 * 1024;

/// Why a snapshot stream or file is not an intact etcd snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntegrityError {
    #[error(
        "it is {size} bytes, not a whole number of 512-byte pages plus etcd's 32-byte sha256 \
         trailer: the snapshot is truncated or not an etcd snapshot"
    )]
    NoTrailer { size: u64 },
    #[error(
        "etcd's sha256 trailer does not match the data (trailer {expected}, data {found}): the \
         snapshot is corrupt"
    )]
    Mismatch { expected: String, found: String },
}

/// The database digest proven by the trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbDigest {
    /// Bytes of the database, without the trailer.
    pub db_size: u64,
    /// The sha256 (hex) etcd computed and the data matches.
    pub db_sha256: String,
}

/// Checks etcd's trailer incrementally: every byte but the last 32 seen so far is hashed.
#[derive(Debug, Clone, Default)]
pub struct TrailerCheck {
    hasher: Sha256,
    tail: Vec<u8>,
    total: u64,
}

impl TrailerCheck {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, chunk: &[u8]) {
        self.total += chunk.len() as u64;
        if chunk.len() >= TRAILER {
            self.hasher.update(&self.tail);
            let (body, tail) = chunk.split_at(chunk.len() - TRAILER);
            self.hasher.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(TRAILER);
            self.hasher.update(&self.tail[..excess]);
            self.tail.drain(..excess);
        }
    }

    /// Bytes seen so far.
    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn finish(self) -> Result<DbDigest, IntegrityError> {
        let size = self.total;
        if size < PAGE + TRAILER as u64 || !(size - TRAILER as u64).is_multiple_of(PAGE) {
            return Err(IntegrityError::NoTrailer { size });
        }
        let found = super::hex(&self.hasher.finalize());
        let expected = super::hex(&self.tail);
        if found != expected {
            return Err(IntegrityError::Mismatch { expected, found });
        }
        Ok(DbDigest { db_size: size - TRAILER as u64, db_sha256: found })
    }
}

/// A writer that hashes what passes through it (the stored file's sha256).
struct Hashing<W: Write> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A snapshot kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub path: PathBuf,
    /// sha256 (hex) of the stored (compressed) file.
    pub file_sha256: String,
    pub file_size: u64,
    pub db: DbDigest,
}

/// Removes a temporary file unless disarmed.
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Compresses a snapshot stream into `<dir>/<name>` through a temporary file. It does not
/// check etcd's trailer: [`save`] runs a [`TrailerCheck`] beside it and passes its result to
/// [`SnapshotFile::finish`].
pub struct SnapshotFile {
    dir: PathBuf,
    name: String,
    temp: TempFile,
    encoder: zstd::Encoder<'static, Hashing<BufWriter<File>>>,
}

impl SnapshotFile {
    /// Creates `<dir>/.<name>.tmp-<pid>` (0600); `dir` is created (0700) when missing.
    pub fn create(dir: &Path, name: &str) -> Result<SnapshotFile, BackupError> {
        create_dir(dir)?;
        let temp_path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let file = open_new(&temp_path)?;
        let temp = TempFile(Some(temp_path.clone()));
        let sink = Hashing {
            inner: BufWriter::with_capacity(WRITE_BUFFER, file),
            hasher: Sha256::new(),
            written: 0,
        };
        let encoder = zstd::Encoder::new(sink, ZSTD_LEVEL)
            .map_err(|e| BackupError::io("start compressing into", &temp_path, e))?;
        Ok(SnapshotFile { dir: dir.to_path_buf(), name: name.to_string(), temp, encoder })
    }

    pub fn write_chunk(&mut self, chunk: &[u8]) -> Result<(), BackupError> {
        let path = self.temp.0.clone().unwrap_or_default();
        self.encoder.write_all(chunk).map_err(|e| BackupError::io("write the snapshot to", path, e))
    }

    /// Makes the file durable under its final name once `db` (the trailer check's result over
    /// the same bytes) proved the stream intact: flush, fsync, link to `<dir>/<name>` (fails
    /// rather than replace an existing file), fsync the dir. A failed check removes the file.
    pub fn finish(
        self,
        member: &str,
        db: Result<DbDigest, IntegrityError>,
    ) -> Result<StoredSnapshot, BackupError> {
        let SnapshotFile { dir, name, mut temp, encoder } = self;
        let db =
            db.map_err(|reason| BackupError::Integrity { member: member.to_string(), reason })?;
        let temp_path = temp.0.clone().unwrap_or_default();
        let io = |action: &'static str| {
            let p = temp_path.clone();
            move |e| BackupError::io(action, p, e)
        };
        let mut sink = encoder.finish().map_err(io("finish compressing"))?;
        sink.flush().map_err(io("write the snapshot to"))?;
        let Hashing { inner, hasher, written } = sink;
        let file = inner
            .into_inner()
            .map_err(|e| BackupError::io("write the snapshot to", &temp_path, e.into_error()))?;
        file.sync_all().map_err(io("sync"))?;
        drop(file);
        let final_path = dir.join(&name);
        std::fs::hard_link(&temp_path, &final_path)
            .map_err(|e| BackupError::io("store the snapshot as", &final_path, e))?;
        // The final name holds the data now; dropping the guard removes the temporary name.
        drop(temp.0.take().map(std::fs::remove_file));
        sync_dir(&dir)?;
        Ok(StoredSnapshot {
            path: final_path,
            file_sha256: super::hex(&hasher.finalize()),
            file_size: written,
            db,
        })
    }
}

/// Streams a snapshot from `client`'s member into `<dir>/<name>`. Three stages run at once,
/// joined by bounded channels so that memory stays flat (at most `2 * IN_FLIGHT` chunks of
/// etcd's 32 KiB): the network side on the async task, etcd's trailer check (sha256 of the
/// raw stream) on one thread, compression, the stored file's sha256 and the write on another.
/// `progress` is called with (bytes received, bytes etcd says remain).
pub async fn save(
    client: &EtcdClient,
    dir: &Path,
    name: &str,
    idle: Duration,
    mut progress: impl FnMut(u64, u64),
) -> Result<StoredSnapshot, BackupError> {
    let member = client.endpoint().name.clone();
    let file = SnapshotFile::create(dir, name)?;
    let mut stream = client.snapshot(idle).await?;
    let (file_tx, mut file_rx) = tokio::sync::mpsc::channel::<Arc<Vec<u8>>>(IN_FLIGHT);
    let (check_tx, mut check_rx) = tokio::sync::mpsc::channel::<Arc<Vec<u8>>>(IN_FLIGHT);
    let writer = std::thread::spawn(move || -> Result<SnapshotFile, BackupError> {
        let mut file = file;
        while let Some(chunk) = file_rx.blocking_recv() {
            file.write_chunk(&chunk)?;
        }
        Ok(file)
    });
    let checker = std::thread::spawn(move || {
        let mut check = TrailerCheck::new();
        while let Some(chunk) = check_rx.blocking_recv() {
            check.update(&chunk);
        }
        check
    });
    let mut received = 0u64;
    let mut stream_error = None;
    loop {
        match stream.next_chunk().await {
            Ok(Some((chunk, remaining))) => {
                received += chunk.len() as u64;
                progress(received, remaining);
                let chunk = Arc::new(chunk);
                if check_tx.send(chunk.clone()).await.is_err() {
                    break; // the checker panicked; reported below
                }
                if file_tx.send(chunk).await.is_err() {
                    break; // the writer failed; its error is reported below
                }
            }
            Ok(None) => break,
            Err(e) => {
                stream_error = Some(e);
                break;
            }
        }
    }
    drop((file_tx, check_tx));
    drop(stream);
    let joined = tokio::task::spawn_blocking(move || (writer.join(), checker.join()))
        .await
        .map_err(|e| BackupError::Other(format!("the snapshot writer stopped: {e}")))?;
    let panicked = || BackupError::Other("the snapshot writer panicked".into());
    let file = joined.0.map_err(|_| panicked())??;
    let check = joined.1.map_err(|_| panicked())?;
    if let Some(e) = stream_error {
        return Err(e.into());
    }
    tokio::task::spawn_blocking(move || file.finish(&member, check.finish()))
        .await
        .map_err(|e| BackupError::Other(format!("the snapshot writer stopped: {e}")))?
}

pub(crate) fn create_dir(dir: &Path) -> Result<(), BackupError> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| BackupError::io("create the directory", dir, e))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| BackupError::io("set the mode of", dir, e))
}

fn open_new(path: &Path) -> Result<File, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BackupError::io("create", path, e))
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| BackupError::io("sync the directory", dir, e))
}

/// Writes `bytes` to `<dir>/<name>` atomically (temp, fsync, rename, fsync dir), replacing it.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, BackupError> {
    let temp_path = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&temp_path);
    let guard = TempFile(Some(temp_path.clone()));
    let mut file = open_new(&temp_path)?;
    file.write_all(bytes)
        .and_then(|_| file.sync_all())
        .map_err(|e| BackupError::io("write", &temp_path, e))?;
    let target = dir.join(name);
    std::fs::rename(&temp_path, &target).map_err(|e| BackupError::io("rename into", &target, e))?;
    std::mem::forget(guard);
    sync_dir(dir)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot_bytes(pages: usize) -> Vec<u8> {
        let mut db: Vec<u8> = (0..pages * 512).map(|i| (i * 7 % 251) as u8).collect();
        let sum = Sha256::digest(&db);
        db.extend_from_slice(&sum);
        db
    }

    #[test]
    fn trailer_check_accepts_any_chunking_and_refuses_damage() {
        let good = snapshot_bytes(9);
        for size in [1, 5, 31, 32, 33, 100, 4096, good.len()] {
            let mut c = TrailerCheck::new();
            good.chunks(size).for_each(|ch| c.update(ch));
            let d = c.finish().unwrap();
            assert_eq!(d.db_size, 9 * 512);
        }
        let mut flipped = good.clone();
        flipped[700] ^= 1;
        let mut c = TrailerCheck::new();
        c.update(&flipped);
        assert!(matches!(c.finish(), Err(IntegrityError::Mismatch { .. })));
        let mut c = TrailerCheck::new();
        c.update(&good[..good.len() - 1]);
        assert!(matches!(c.finish(), Err(IntegrityError::NoTrailer { .. })));
    }
}
