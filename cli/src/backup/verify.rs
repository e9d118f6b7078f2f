//! Verifying a stored backup on the operator machine, cheapest check first: the stored file's
//! sha256 against its sidecar; decompression with etcd's integrity trailer checked on the way;
//! then a restore into a throwaway data dir with the etcd release's own tool (`etcdutl` from
//! 3.5, `etcdctl` for 3.4) and a throwaway etcd started on free loopback ports, whose revision
//! and key count are reported. Everything temporary lives in one directory that is removed
//! afterwards, also on failure; the etcd process is killed when verification ends.
//!
//! Reusable by `restore` ([`check_and_decompress`] gives a checked raw snapshot). Never prints.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::sidecar::{Sidecar, sidecar_path};
use super::snapshot::{DbDigest, TrailerCheck};
use crate::etcd::{Endpoint, EtcdClient, Timeouts};

/// Why a backup failed verification.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(
        "{} does not match its sidecar: sha256 {found}, the sidecar recorded {expected}; the \
         file changed or is damaged since it was written",
        path.display()
    )]
    Checksum { path: PathBuf, expected: String, found: String },
    #[error(
        "{} does not match its sidecar: {found} bytes, the sidecar recorded {expected}; the file \
         is truncated or was changed",
        path.display()
    )]
    Size { path: PathBuf, expected: u64, found: u64 },
    #[error("{} cannot be decompressed (truncated or damaged zstd data): {detail}", path.display())]
    Decompress { path: PathBuf, detail: String },
    #[error("{} is not an intact etcd snapshot: {reason}", path.display())]
    Integrity { path: PathBuf, reason: super::IntegrityError },
    #[error("{tool} refused to restore {}: {detail}", path.display())]
    Restore { path: PathBuf, tool: String, detail: String },
    #[error("the throwaway etcd restored from {} did not serve: {detail}", path.display())]
    Serve { path: PathBuf, detail: String },
    #[error(transparent)]
    Backup(#[from] super::BackupError),
}

/// The etcd release's binaries used to restore and serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdTools {
    pub etcd: PathBuf,
    /// `etcdutl` (3.5+) or `etcdctl` (3.4; run with `ETCDCTL_API=3`).
    pub restore_tool: PathBuf,
}

impl EtcdTools {
    /// From a directory holding `etcd` and `etcdutl` or `etcdctl`.
    pub fn from_dir(dir: &Path) -> Option<EtcdTools> {
        let etcd = dir.join("etcd");
        let restore_tool =
            ["etcdutl", "etcdctl"].iter().map(|t| dir.join(t)).find(|p| p.is_file())?;
        etcd.is_file().then_some(EtcdTools { etcd, restore_tool })
    }

    fn tool_name(&self) -> String {
        self.restore_tool.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }
}

/// What a verification proved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verified {
    pub path: PathBuf,
    pub checked_against_sidecar: bool,
    pub db_size: u64,
    pub db_sha256: String,
    pub revision: i64,
    pub key_count: u64,
    pub etcd_version: String,
    pub restored_with: String,
}

/// A directory removed on drop.
pub struct ScratchDir(PathBuf);

impl ScratchDir {
    pub fn new(purpose: &str) -> Result<ScratchDir, super::BackupError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let path = std::env::temp_dir()
            .join(format!("kubeforge-{purpose}-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path)
            .map_err(|e| super::BackupError::io("create the directory", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700));
        Ok(ScratchDir(path))
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The stored file's size and sha256 against its sidecar (when it has one); returns the
/// sidecar.
pub fn check_against_sidecar(path: &Path) -> Result<Option<Sidecar>, VerifyError> {
    let side = sidecar_path(path);
    if !side.exists() {
        return Ok(None);
    }
    let sidecar = Sidecar::load(&side)?;
    let size = std::fs::metadata(path).map_err(|e| super::BackupError::io("read", path, e))?.len();
    if size != sidecar.file_size {
        return Err(VerifyError::Size {
            path: path.to_path_buf(),
            expected: sidecar.file_size,
            found: size,
        });
    }
    let mut file = File::open(path).map_err(|e| super::BackupError::io("read", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(|e| super::BackupError::io("read", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let found = super::hex(&hasher.finalize());
    if found != sidecar.file_sha256 {
        return Err(VerifyError::Checksum {
            path: path.to_path_buf(),
            expected: sidecar.file_sha256.clone(),
            found,
        });
    }
    Ok(Some(sidecar))
}

/// Decompresses `path` into `out` (a raw etcd snapshot, 0600), checking etcd's trailer on the
/// way; `out` is removed when the check fails.
pub fn check_and_decompress(path: &Path, out: &Path) -> Result<DbDigest, VerifyError> {
    let input = File::open(path).map_err(|e| super::BackupError::io("read", path, e))?;
    let mut decoder = zstd::Decoder::new(BufReader::new(input))
        .map_err(|e| VerifyError::Decompress { path: path.to_path_buf(), detail: e.to_string() })?;
    let result = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(out)
            .map_err(|e| super::BackupError::io("create", out, e))?;
        let mut writer = BufWriter::new(file);
        let mut check = TrailerCheck::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = decoder.read(&mut buf).map_err(|e| VerifyError::Decompress {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
            if n == 0 {
                break;
            }
            check.update(&buf[..n]);
            writer.write_all(&buf[..n]).map_err(|e| super::BackupError::io("write", out, e))?;
        }
        writer.flush().map_err(|e| super::BackupError::io("write", out, e))?;
        check.finish().map_err(|reason| VerifyError::Integrity { path: path.to_path_buf(), reason })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(out);
    }
    result
}

fn free_port() -> Result<u16, VerifyError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| VerifyError::Serve { path: PathBuf::new(), detail: e.to_string() })
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Runs every check on `path` and restores it into a throwaway etcd; see the module doc.
pub async fn verify(path: &Path, tools: &EtcdTools) -> Result<Verified, VerifyError> {
    let sidecar = check_against_sidecar(path)?;
    let scratch = ScratchDir::new("verify")?;
    let raw = scratch.path().join("snapshot.db");
    let (src, dst) = (path.to_path_buf(), raw.clone());
    let db = tokio::task::spawn_blocking(move || check_and_decompress(&src, &dst))
        .await
        .map_err(|e| super::BackupError::Other(e.to_string()))??;

    let data_dir = scratch.path().join("data");
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let peer = format!("http://127.0.0.1:{peer_port}");
    let client_url = format!("http://127.0.0.1:{client_port}");
    let name = "kubeforge-verify";
    let token = format!("kubeforge-verify-{}", std::process::id());
    let tool = tools.tool_name();
    let restore_log = scratch.path().join("restore.log");
    let log = File::create(&restore_log)
        .map_err(|e| super::BackupError::io("create", &restore_log, e))?;
    let status = tokio::process::Command::new(&tools.restore_tool)
        .env("ETCDCTL_API", "3")
        .arg("snapshot")
        .arg("restore")
        .arg(&raw)
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--name={name}"))
        .arg(format!("--initial-cluster={name}={peer}"))
        .arg(format!("--initial-cluster-token={token}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .status();
    let status = tokio::time::timeout(Duration::from_secs(300), status)
        .await
        .map_err(|_| VerifyError::Restore {
            path: path.to_path_buf(),
            tool: tool.clone(),
            detail: "no result within 300 s".into(),
        })?
        .map_err(|e| VerifyError::Restore {
            path: path.to_path_buf(),
            tool: tool.clone(),
            detail: format!("cannot run {}: {e}", tools.restore_tool.display()),
        })?;
    if !status.success() {
        return Err(VerifyError::Restore {
            path: path.to_path_buf(),
            tool,
            detail: format!("{status}: {}", tail(&restore_log, 5)),
        });
    }
    // The raw copy is no longer needed; free the space before etcd starts.
    let _ = std::fs::remove_file(&raw);

    let etcd_log = scratch.path().join("etcd.log");
    let log =
        File::create(&etcd_log).map_err(|e| super::BackupError::io("create", &etcd_log, e))?;
    let mut child = tokio::process::Command::new(&tools.etcd)
        .arg(format!("--name={name}"))
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster={name}={peer}"))
        .arg(format!("--initial-cluster-token={token}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| VerifyError::Serve {
            path: path.to_path_buf(),
            detail: format!("cannot run {}: {e}", tools.etcd.display()),
        })?;
    let endpoint = Endpoint::new("throwaway etcd", client_url);
    let timeouts = Timeouts {
        connect: Duration::from_secs(2),
        request: Duration::from_secs(5),
        reconfigure: Duration::from_secs(5),
    };
    let start = Instant::now();
    let result = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break Err(format!("etcd exited ({status}): {}", tail(&etcd_log, 5)));
        }
        let attempt = async {
            let client = EtcdClient::connect(&endpoint, None, timeouts).await?;
            let keyspace = client.keyspace().await?;
            let status = client.status().await?;
            Ok::<_, crate::etcd::EtcdError>((keyspace, status))
        };
        match attempt.await {
            Ok(ok) => break Ok(ok),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                break Err(format!("{e}; log: {}", tail(&etcd_log, 5)));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    };
    let _ = child.kill().await;
    let (keyspace, status) =
        result.map_err(|detail| VerifyError::Serve { path: path.to_path_buf(), detail })?;
    drop(scratch);
    Ok(Verified {
        path: path.to_path_buf(),
        checked_against_sidecar: sidecar.is_some(),
        db_size: db.db_size,
        db_sha256: db.db_sha256,
        revision: keyspace.revision,
        key_count: keyspace.key_count,
        etcd_version: status.version,
        restored_with: tool_label(tools),
    })
}

fn tool_label(tools: &EtcdTools) -> String {
    tools.restore_tool.display().to_string()
}

/// Records a successful verification in the backup's sidecar (when it has one).
pub fn record(path: &Path, verified: &Verified, at: &str) -> Result<(), super::BackupError> {
    let side = sidecar_path(path);
    if !side.exists() {
        return Ok(());
    }
    let mut sidecar = Sidecar::load(&side)?;
    sidecar.verified = Some(super::sidecar::VerifyRecord {
        at: at.to_string(),
        revision: verified.revision,
        key_count: verified.key_count,
        etcd_version: verified.etcd_version.clone(),
    });
    sidecar.save_beside(path).map(|_| ())
}
