//! The apply lock: `<state>/apply.lock`, held (an OS file lock) for the whole run so that two
//! applies on one cluster cannot interleave. The lock dies with the process, so a crashed apply
//! never leaves a stale lock behind; the file keeps the holder's pid for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while it lives.
#[derive(Debug)]
pub struct ApplyLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "another kubeforge apply holds {path} (pid {holder}); wait for it to finish, or stop it"
    )]
    Held { path: PathBuf, holder: String },
    #[error("cannot open the lock file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ApplyLock {
    pub fn acquire(state_dir: &Path) -> Result<ApplyLock, LockError> {
        let path = state_dir.join("apply.lock");
        let io = |source| LockError::Io { path: path.clone(), source };
        std::fs::create_dir_all(state_dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                return Err(LockError::Held {
                    path,
                    holder: if holder.is_empty() { "unknown".into() } else { holder },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(ApplyLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = ApplyLock::acquire(dir.path()).unwrap();
        let err = ApplyLock::acquire(dir.path()).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        ApplyLock::acquire(dir.path()).unwrap();
    }
}
