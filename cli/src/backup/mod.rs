//! etcd backups on the operator machine and on nodes: stream a snapshot from one member,
//! compress it while it streams, check etcd's own integrity hash before keeping it, store it
//! atomically with a JSON sidecar, list, verify (restore into a throwaway etcd), prune, and
//! the status file of unattended runs. These are library functions shared by
//! `kubeforge backup …` and, later, `kubeforge restore` (which reuses [`snapshot`],
//! [`verify`] and [`sidecar`]).
//!
//! This module never prints: commands decide what to show. It never logs snapshot contents or
//! key material, and it never replaces or deletes a file it did not just create, except through
//! [`retention::prune`], which deletes whole backups (snapshot and sidecar together).

pub mod install;
pub mod retention;
pub mod sidecar;
pub mod snapshot;
pub mod source;
pub mod store;
pub mod verify;

use std::path::PathBuf;

pub use sidecar::Sidecar;
pub use snapshot::{IntegrityError, StoredSnapshot, TrailerCheck};
pub use store::{BackupEntry, RunStatus};
pub use verify::{EtcdTools, Verified};

/// File name suffix of a stored snapshot (zstd-compressed etcd snapshot).
pub const SNAPSHOT_SUFFIX: &str = ".db.zst";
/// File name suffix of its sidecar.
pub const SIDECAR_SUFFIX: &str = ".json";
/// The status file unattended runs keep in their destination.
pub const STATUS_FILE: &str = "kubeforge-backup-status.json";

/// Why a backup operation failed. Each message names the file, member or directory involved.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Etcd(#[from] crate::etcd::EtcdError),
    #[error("the snapshot streamed from {member} failed etcd's integrity check: {reason}")]
    Integrity { member: String, reason: IntegrityError },
    #[error("the sidecar {} is not a kubeforge backup sidecar: {detail}", path.display())]
    BadSidecar { path: PathBuf, detail: String },
    #[error("{0}")]
    Other(String),
}

impl BackupError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BackupError::Io { action, path: path.into(), source }
    }
}

/// Lower-case hex of a digest.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// UTC time as `YYYYMMDDTHHMMSSZ` (file names) and RFC 3339 (sidecars).
pub fn stamps(t: time::OffsetDateTime) -> (String, String) {
    let t = t.to_offset(time::UtcOffset::UTC);
    let compact = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    );
    let rfc = t
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| compact.clone());
    (compact, rfc)
}
