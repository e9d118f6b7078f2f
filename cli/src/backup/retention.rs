//! Retention: which backups `prune --keep N` and unattended runs delete. The newest `keep`
//! backups stay, and so does the newest one a restore test verified, whatever its age; a
//! snapshot and its sidecar are deleted together. Entries without a readable sidecar are
//! never counted nor deleted (they may be a backup being written, or need a human).

use std::path::PathBuf;

use super::BackupError;
use super::store::{BackupEntry, list};

/// The entries to delete from `entries` (newest first, as [`list`] returns them).
pub fn to_delete(entries: &[BackupEntry], keep: usize) -> Vec<&BackupEntry> {
    let complete: Vec<&BackupEntry> = entries.iter().filter(|e| e.sidecar.is_some()).collect();
    let newest_verified = complete.iter().find(|e| e.is_verified()).map(|e| e.name.clone());
    complete
        .into_iter()
        .skip(keep.max(1))
        .filter(|e| Some(&e.name) != newest_verified.as_ref())
        .collect()
}

/// Deletes what [`to_delete`] picks in `dir`; returns the deleted snapshot paths.
pub fn prune(dir: &std::path::Path, keep: usize) -> Result<Vec<PathBuf>, BackupError> {
    if keep == 0 {
        return Err(BackupError::Other(
            "--keep 0 would delete every backup; keep at least 1".to_string(),
        ));
    }
    let entries = list(dir)?;
    let mut deleted = Vec::new();
    for entry in to_delete(&entries, keep) {
        let side = super::sidecar::sidecar_path(&entry.path);
        // The snapshot first: a sidecar without its snapshot is never mistaken for a backup.
        std::fs::remove_file(&entry.path).map_err(|e| BackupError::io("delete", &entry.path, e))?;
        std::fs::remove_file(&side).map_err(|e| BackupError::io("delete", &side, e))?;
        deleted.push(entry.path.clone());
    }
    if !deleted.is_empty() {
        super::snapshot::sync_dir(dir)?;
    }
    Ok(deleted)
}
