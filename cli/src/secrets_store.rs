//! The cluster secrets file `<state>/secrets.json` (mode 0600, state dir 0700): read it, or create
//! it exactly once from the OS RNG. An existing file is never replaced or rewritten; a damaged or
//! too-open one is an error that says how to fix it. Secret values never appear in messages.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use kubeforge_playbooks::secrets::ClusterSecrets;
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

/// File name of the secrets inside the state dir.
pub const SECRETS_FILE: &str = "secrets.json";

/// Reads `<state>/secrets.json`, or generates and writes it when it does not exist yet.
pub fn load_or_create(state_dir: &Path) -> miette::Result<ClusterSecrets> {
    let path = state_dir.join(SECRETS_FILE);
    match fs::symlink_metadata(&path) {
        Ok(_) => load(&path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => create(state_dir, &path),
        Err(e) => Err(e)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot inspect the secrets file {}", path.display())),
    }
}

fn load(path: &Path) -> miette::Result<ClusterSecrets> {
    let meta = fs::symlink_metadata(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot inspect the secrets file {}", path.display()))?;
    if !meta.file_type().is_file() {
        return Err(miette!(
            help = "move it aside; kubeforge only reads a regular file there",
            "{} is not a regular file",
            path.display()
        ));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(miette!(
            help = format!(
                "run `chmod 600 {}` (and consider the keys exposed: rotate them)",
                path.display()
            ),
            "the secrets file {} is readable by other users (mode {mode:04o})",
            path.display()
        ));
    }
    let bytes = fs::read(path)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot read the secrets file {}", path.display()))?;
    let secrets: ClusterSecrets = serde_json::from_slice(&bytes).map_err(|e| {
        // Only the position: serde_json messages may quote the offending (secret) value.
        miette!(
            help = "restore it from a backup of the state dir; kubeforge will not replace it, \
                    because Secrets in etcd are encrypted with the key it holds",
            "the secrets file {} is damaged ({:?} error at line {} column {})",
            path.display(),
            e.classify(),
            e.line(),
            e.column()
        )
    })?;
    secrets.check().map_err(|e| {
        miette!(
            help = "restore it from a backup of the state dir",
            "the secrets file {} is not usable: {e}",
            path.display()
        )
    })?;
    Ok(secrets)
}

fn create(state_dir: &Path, path: &Path) -> miette::Result<ClusterSecrets> {
    ensure_state_dir(state_dir)?;
    let secrets = ClusterSecrets::generate(aws_lc_rs::rand::fill)
        .map_err(|_| miette!("the operating system's random generator failed"))?;
    let json = serde_json::to_vec_pretty(&secrets).into_diagnostic()?;

    // Write a private temp file, then hard-link it into place: the link fails if another process
    // created secrets.json meanwhile, so an existing file is never replaced, and a crash leaves
    // either no secrets.json or a complete one.
    let tmp = temp_path(state_dir);
    let written = write_private(&tmp, &json);
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            if let Ok(dir) = fs::File::open(state_dir) {
                let _ = dir.sync_all();
            }
            Ok(secrets)
        }
        // Lost a race with another kubeforge: use what it wrote.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load(path),
        Err(e) => Err(e)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot write the secrets file {}", path.display())),
    }
}

fn ensure_state_dir(state_dir: &Path) -> miette::Result<()> {
    if !state_dir.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(state_dir)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot create the state dir {}", state_dir.display()))?;
    }
    // The state dir holds keys: make sure it is private even if someone else created it.
    let mode = fs::metadata(state_dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot inspect the state dir {}", state_dir.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
            .into_diagnostic()
            .wrap_err_with(|| {
                format!("cannot make the state dir {} private", state_dir.display())
            })?;
    }
    Ok(())
}

fn temp_path(state_dir: &Path) -> PathBuf {
    state_dir.join(format!(".{SECRETS_FILE}.tmp.{}", std::process::id()))
}

fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_once_then_reads_the_same_secrets() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state").join("demo");
        let first = load_or_create(&state).unwrap();
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(SECRETS_FILE)), 0o600);
        let second = load_or_create(&state).unwrap();
        assert_eq!(first, second);
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&state).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from(SECRETS_FILE)]);
    }

    #[test]
    fn two_clusters_get_different_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let a = load_or_create(&tmp.path().join("a")).unwrap();
        let b = load_or_create(&tmp.path().join("b")).unwrap();
        assert_ne!(a.encryption_keys[0].secret, b.encryption_keys[0].secret);
    }

    #[test]
    fn damaged_file_is_an_error_and_is_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(SECRETS_FILE);
        write_private(&path, b"{not json").unwrap();
        let err = format!("{:?}", load_or_create(tmp.path()).unwrap_err());
        assert!(err.contains("damaged"), "{err}");
        assert_eq!(fs::read(&path).unwrap(), b"{not json");
    }

    #[test]
    fn world_readable_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let _ = load_or_create(tmp.path()).unwrap();
        let path = tmp.path().join(SECRETS_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = format!("{:?}", load_or_create(tmp.path()).unwrap_err());
        assert!(err.contains("readable by other users"), "{err}");
        assert!(err.contains("chmod 600"), "{err}");
    }
}
