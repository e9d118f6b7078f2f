//! The JSON sidecar beside each stored snapshot (`<name>.json` for `<name>.db.zst`): where the
//! snapshot came from and what it holds, and the sha256 of the stored file that `verify`
//! checks first. Holds no key material and no snapshot contents (key *count* only).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{BackupError, SIDECAR_SUFFIX, SNAPSHOT_SUFFIX};

/// Format version of the sidecar.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SidecarMember {
    /// Hex, as etcdctl prints it.
    pub id: String,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_learner: bool,
}

/// What a `backup verify` proved (a restore into a throwaway etcd).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyRecord {
    pub at: String,
    pub revision: i64,
    pub key_count: u64,
    /// The etcd version that restored and served it.
    pub etcd_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Sidecar {
    pub format: u32,
    /// The spec's cluster name, when the backup was made with a spec.
    pub cluster: Option<String>,
    /// etcd's cluster id (hex).
    pub cluster_id: String,
    /// The member the snapshot was streamed from (host name, or the endpoint's host).
    pub member: String,
    pub member_id: String,
    pub endpoint: String,
    pub etcd_version: String,
    /// The keyspace revision read just before the snapshot started (the snapshot holds this
    /// revision or a later one).
    pub revision: i64,
    /// Live keys counted just before the snapshot started.
    pub key_count: u64,
    pub members: Vec<SidecarMember>,
    /// sha256 of the spec file the backup was made with.
    pub spec_sha256: Option<String>,
    /// The stored file's name (in the same directory), size and sha256.
    pub file: String,
    pub file_size: u64,
    pub file_sha256: String,
    pub compression: String,
    /// The etcd database inside: its size and the sha256 etcd appended (and was checked).
    pub db_size: u64,
    pub db_sha256: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// `kubeforge backup create` or `kubeforge backup run`.
    pub created_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<VerifyRecord>,
}

impl Sidecar {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default() + "\n"
    }

    pub fn load(path: &Path) -> Result<Sidecar, BackupError> {
        let text = std::fs::read(path).map_err(|e| BackupError::io("read", path, e))?;
        let sidecar: Sidecar = serde_json::from_slice(&text).map_err(|e| {
            BackupError::BadSidecar { path: path.to_path_buf(), detail: e.to_string() }
        })?;
        if sidecar.format != FORMAT {
            return Err(BackupError::BadSidecar {
                path: path.to_path_buf(),
                detail: format!("format {} (this kubeforge reads {FORMAT})", sidecar.format),
            });
        }
        Ok(sidecar)
    }

    /// Writes the sidecar for the snapshot at `snapshot` atomically.
    pub fn save_beside(&self, snapshot: &Path) -> Result<PathBuf, BackupError> {
        let path = sidecar_path(snapshot);
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        super::snapshot::write_atomic(dir, name, self.to_json().as_bytes())
    }
}

/// `<dir>/<name>.json` for `<dir>/<name>.db.zst` (or `<file>.json` for any other name).
pub fn sidecar_path(snapshot: &Path) -> PathBuf {
    let name = snapshot.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let base = name.strip_suffix(SNAPSHOT_SUFFIX).unwrap_or(name);
    snapshot.with_file_name(format!("{base}{SIDECAR_SUFFIX}"))
}
