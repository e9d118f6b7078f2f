//! A backup directory: the stored snapshots and their sidecars (listing, newest first), the
//! file names new backups get, and the status file of unattended runs (last success, last
//! failure). Never deletes anything (that is [`super::retention`]).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::sidecar::{Sidecar, sidecar_path};
use super::{BackupError, SNAPSHOT_SUFFIX, STATUS_FILE};

/// One stored backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupEntry {
    /// File name without `.db.zst`.
    pub name: String,
    pub path: PathBuf,
    pub size: u64,
    /// `None`: no sidecar, or an unreadable one (`sidecar_error` says which).
    pub sidecar: Option<Sidecar>,
    pub sidecar_error: Option<String>,
}

impl BackupEntry {
    /// Sort key: the sidecar's creation time, else the name (which starts with it too).
    pub fn created(&self) -> String {
        self.sidecar.as_ref().map(|s| s.created_at.clone()).unwrap_or_default()
    }

    /// Passed a restore test (`backup verify`).
    pub fn is_verified(&self) -> bool {
        self.sidecar.as_ref().is_some_and(|s| s.verified.is_some())
    }
}

/// The backups in `dir`, newest first. A missing directory has none.
pub fn list(dir: &Path) -> Result<Vec<BackupEntry>, BackupError> {
    let read = match std::fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(BackupError::io("list", dir, e)),
    };
    let mut entries = Vec::new();
    for item in read {
        let item = item.map_err(|e| BackupError::io("list", dir, e))?;
        let file_name = item.file_name().to_string_lossy().into_owned();
        let Some(name) = file_name.strip_suffix(SNAPSHOT_SUFFIX) else { continue };
        if file_name.starts_with('.') {
            continue;
        }
        let path = item.path();
        let size = item.metadata().map(|m| m.len()).unwrap_or_default();
        let side = sidecar_path(&path);
        let (sidecar, sidecar_error) = if side.exists() {
            match Sidecar::load(&side) {
                Ok(s) => (Some(s), None),
                Err(e) => (None, Some(e.to_string())),
            }
        } else {
            (None, Some("no sidecar (an interrupted backup?)".to_string()))
        };
        entries.push(BackupEntry { name: name.to_string(), path, size, sidecar, sidecar_error });
    }
    entries.sort_by(|a, b| (b.created(), &b.name).cmp(&(a.created(), &a.name)));
    Ok(entries)
}

/// Finds a backup by name (with or without `.db.zst`) in `dir`, or takes `name_or_path` as a
/// path when it names an existing file.
pub fn resolve(dir: &Path, name_or_path: &str) -> Result<PathBuf, BackupError> {
    let as_path = Path::new(name_or_path);
    if as_path.is_file() {
        return Ok(as_path.to_path_buf());
    }
    let base = name_or_path.strip_suffix(SNAPSHOT_SUFFIX).unwrap_or(name_or_path);
    let candidate = dir.join(format!("{base}{SNAPSHOT_SUFFIX}"));
    if candidate.is_file() {
        return Ok(candidate);
    }
    Err(BackupError::Other(format!(
        "no backup {name_or_path:?}: neither a file nor a backup in {} (see `kubeforge backup list`)",
        dir.display()
    )))
}

/// A free name `<prefix>-<stamp>[-n].db.zst` in `dir`.
pub fn new_name(dir: &Path, prefix: &str, stamp: &str) -> String {
    let mut n = 0;
    loop {
        let name = if n == 0 {
            format!("{prefix}-{stamp}{SNAPSHOT_SUFFIX}")
        } else {
            format!("{prefix}-{stamp}-{n}{SNAPSHOT_SUFFIX}")
        };
        if !dir.join(&name).exists() {
            return name;
        }
        n += 1;
    }
}

/// One outcome recorded in the status file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunOutcome {
    pub at: String,
    /// The snapshot written (success) or the failure's one-line reason.
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<i64>,
}

/// `<destination>/kubeforge-backup-status.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunStatus {
    pub last_success: Option<RunOutcome>,
    pub last_failure: Option<RunOutcome>,
    /// The result of the last run: `success` or `failure`.
    pub last_result: Option<String>,
}

impl RunStatus {
    pub fn load(dir: &Path) -> RunStatus {
        std::fs::read(dir.join(STATUS_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, dir: &Path) -> Result<PathBuf, BackupError> {
        let text = serde_json::to_string_pretty(self).unwrap_or_default() + "\n";
        super::snapshot::write_atomic(dir, STATUS_FILE, text.as_bytes())
    }
}
