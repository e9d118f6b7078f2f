//! The state lock: `<state>/state.lock`, an OS file lock held by every command that writes the
//! state dir (`apply`, `plan`, `render`, `certs generate`, `certs renew`) for as long as it
//! works, so that two of them never interleave their writes. The lock dies with the process,
//! so a crashed command never leaves a stale lock behind; the file keeps the holder's pid for
//! the error a second writer gets. Within one process the lock is re-entrant: taking it again
//! (e.g. `apply` locking, then planning with code that locks too) shares the held lock.
//!
//! It must not be used for anything but mutual exclusion: the pid in the file is informational.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

/// The lock file's name inside the state dir.
pub const LOCK_FILE: &str = "state.lock";

/// Held while it (or a clone taken by the same process) lives.
#[derive(Debug, Clone)]
pub struct StateLock {
    _file: Arc<File>,
}

/// The name `apply` has always used.
pub type ApplyLock = StateLock;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LockError {
    #[error("the state dir {} is in use: another kubeforge command (pid {holder}) holds its lock {}", dir.display(), path.display())]
    #[diagnostic(help(
        "wait for that command to finish, or stop it; the lock is released when it exits"
    ))]
    Held { dir: PathBuf, path: PathBuf, holder: String },
    #[error("cannot take the state lock {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Locks this process holds, by lock file path (re-entrance).
static HELD: Mutex<BTreeMap<PathBuf, Weak<File>>> = Mutex::new(BTreeMap::new());

impl StateLock {
    /// Takes the lock of `state_dir`, creating the dir (0700, it holds keys) when missing.
    pub fn acquire(state_dir: &Path) -> Result<StateLock, LockError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| LockError::Io { path, source }
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .map_err(io(state_dir))?;
        let dir = state_dir.canonicalize().map_err(io(state_dir))?;
        let path = dir.join(LOCK_FILE);
        let mut held = HELD.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(file) = held.get(&path).and_then(Weak::upgrade) {
            return Ok(StateLock { _file: file });
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                return Err(LockError::Held {
                    dir: state_dir.to_path_buf(),
                    path,
                    holder: if holder.is_empty() { "unknown".into() } else { holder },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        file.flush().map_err(io(&path))?;
        let file = Arc::new(file);
        held.retain(|_, f| f.strong_count() > 0);
        held.insert(path, Arc::downgrade(&file));
        Ok(StateLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_lock_is_reentrant_in_one_process_and_freed_when_the_last_holder_drops() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let second = StateLock::acquire(dir.path()).unwrap();
        drop(first);
        // Still held (by `second`): another open file description of the lock file cannot
        // take it, as another process could not.
        let other = File::open(dir.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(other.try_lock(), Err(std::fs::TryLockError::WouldBlock)));
        drop(second);
        other.try_lock().unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text, std::process::id().to_string());
    }

    #[test]
    fn a_lock_held_elsewhere_is_refused_naming_the_holder_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(LOCK_FILE);
        std::fs::write(&path, "4242").unwrap();
        // A lock taken through another open file description stands for another process.
        let elsewhere = File::open(&path).unwrap();
        elsewhere.try_lock().unwrap();
        let err = StateLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("(pid 4242)"), "{text}");
        assert!(text.contains(&path.canonicalize().unwrap().display().to_string()), "{text}");
        drop(elsewhere);
        StateLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_missing_state_dir_is_created_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join(".kubeforge/c1");
        let _lock = StateLock::acquire(&state).unwrap();
        let mode = std::fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let mode = std::fs::metadata(state.join(LOCK_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
    }
}
