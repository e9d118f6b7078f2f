//! The audit log: `<state>/audit/<timestamp>.jsonl`, one JSON line per remote operation (command
//! argv, exit status, duration; file path and size for uploads). Never file contents or stdin, so
//! secrets cannot reach it; secret files are logged by path only.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// One remote operation.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    /// Seconds since the Unix epoch, with milliseconds.
    pub at: f64,
    pub host: String,
    pub phase: String,
    pub step: String,
    /// `run`, `probe` (an `unless` or gate probe), `put`, `push`.
    pub op: &'static str,
    /// The command's argv, or the destination path for `put`/`push`.
    pub target: Vec<String>,
    /// Exit status for commands; `None` when the command never finished (transport error).
    pub exit_status: Option<i32>,
    pub duration_ms: u64,
    /// `written`, `unchanged`, `metadata-changed`, or the transport error.
    pub result: String,
}

/// Appends records to one file; writes are serialised and flushed per line.
#[derive(Debug)]
pub struct AuditLog {
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

impl AuditLog {
    /// Creates `<state>/audit/<name>.jsonl` (0600; the directory 0700).
    pub fn create(state_dir: &Path, name: &str) -> std::io::Result<AuditLog> {
        let dir = state_dir.join("audit");
        std::fs::create_dir_all(&dir)?;
        set_mode(&dir, 0o700)?;
        let path = dir.join(format!("{name}.jsonl"));
        let file = OpenOptions::new().create_new(true).append(true).open(&path)?;
        set_mode(&path, 0o600)?;
        Ok(AuditLog { path: Some(path), file: Mutex::new(Some(file)) })
    }

    /// A log that records nothing (for tests that do not look at it).
    pub fn disabled() -> AuditLog {
        AuditLog { path: None, file: Mutex::new(None) }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn record(&self, record: &AuditRecord) {
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(file), Ok(line)) = (guard.as_mut(), serde_json::to_string(record)) {
            // An audit write failure must not abort a half-done apply; it is reported by tracing.
            if let Err(e) = writeln!(file, "{line}").and_then(|_| file.flush()) {
                tracing::warn!("audit log write failed: {e}");
            }
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// Seconds since the epoch, for records.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as f64 / 1000.0)
        .unwrap_or(0.0)
}

/// A record of a backup operation (`backup create`, `verify`, `prune`): on which member or
/// host, the file path, the outcome. Never snapshot contents or key material.
pub fn backup_record(
    host: &str,
    step: &str,
    target: Vec<String>,
    started: std::time::Instant,
    result: String,
) -> AuditRecord {
    AuditRecord {
        at: now_secs(),
        host: host.to_string(),
        phase: "backup".to_string(),
        step: step.to_string(),
        op: "backup",
        target,
        exit_status: None,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        result,
    }
}
