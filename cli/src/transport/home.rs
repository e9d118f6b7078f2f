//! `~/` in the spec's local path fields (`ssh.identityFile`, `ssh.knownHostsFile`,
//! `ssh.bastion.identityFile`): expanded from the operator's `$HOME`, as OpenSSH does for its own
//! files. This module owns the one pure function that does it ([`expand`], HOME passed in) and
//! the single place that reads HOME from the environment ([`home_from_env`]). It never touches
//! the file system. `~user` is refused (validation refuses it first; this is the second line),
//! and a `~` path is never used literally: with HOME unset or empty the caller gets an error
//! naming the host and the spec field, so no `./~` directory or key lookup can come of it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a spec path could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host}: {field} `{path}` {reason}", path = path.display())]
pub struct SpecPathError {
    /// The spec host the path belongs to.
    pub host: String,
    /// The spec field, e.g. `spec.ssh.identityFile`.
    pub field: &'static str,
    pub path: PathBuf,
    pub reason: Unexpandable,
}

/// What is wrong with the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unexpandable {
    #[error(
        "starts with `~`, but HOME is not set (or is empty), so it cannot be expanded; set HOME or write an absolute path"
    )]
    NoHome,
    #[error(
        "starts with `~`, but HOME (`{0}`) is not an absolute path; set HOME to your home directory or write an absolute path"
    )]
    RelativeHome(PathBuf),
    #[error("uses `~user`, which kubeforge does not expand; write `~/…` or an absolute path")]
    OtherUser,
}

/// `$HOME`, or `None` when it is unset or empty.
pub fn home_from_env() -> Option<PathBuf> {
    std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from)
}

/// Expands a leading `~` (`~` alone, or `~/rest`) with `home`; other paths are returned as they
/// are. `home` must be absolute; `None` or empty means HOME is unset.
pub fn expand(path: &Path, home: Option<&Path>) -> Result<PathBuf, Unexpandable> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.first() != Some(&b'~') {
        return Ok(path.to_path_buf());
    }
    let rest = match bytes.get(1) {
        None => &[][..],
        Some(b'/') => &bytes[1..],
        Some(_) => return Err(Unexpandable::OtherUser),
    };
    let home = home.filter(|h| !h.as_os_str().is_empty()).ok_or(Unexpandable::NoHome)?;
    if !home.is_absolute() {
        return Err(Unexpandable::RelativeHome(home.to_path_buf()));
    }
    // `~//x` is `$HOME/x`: joining an absolute rest would drop HOME.
    let rest: &[u8] = {
        let start = rest.iter().position(|b| *b != b'/').unwrap_or(rest.len());
        &rest[start..]
    };
    Ok(if rest.is_empty() { home.to_path_buf() } else { home.join(OsStr::from_bytes(rest)) })
}

/// [`expand`] for one spec field of one host, with the error naming both.
pub fn expand_field(
    host: &str,
    field: &'static str,
    path: &Path,
    home: Option<&Path>,
) -> Result<PathBuf, SpecPathError> {
    expand(path, home).map_err(|reason| SpecPathError {
        host: host.to_string(),
        field,
        path: path.to_path_buf(),
        reason,
    })
}

/// True when `path` still begins with a literal `~` component: it was never expanded, and using
/// it would mean a directory called `~` in the current directory.
pub fn is_unexpanded(path: &Path) -> bool {
    path.as_os_str().as_bytes().first() == Some(&b'~')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(path: &str, home: Option<&str>) -> PathBuf {
        expand(Path::new(path), home.map(Path::new)).unwrap()
    }

    fn err(path: &str, home: Option<&str>) -> Unexpandable {
        expand(Path::new(path), home.map(Path::new)).unwrap_err()
    }

    #[test]
    fn tilde_slash_is_home() {
        assert_eq!(
            ok("~/.ssh/id_ed25519", Some("/home/op")),
            Path::new("/home/op/.ssh/id_ed25519")
        );
        assert_eq!(ok("~/.ssh/id", Some("/home/op/")), Path::new("/home/op/.ssh/id"));
        assert_eq!(ok("~//x", Some("/h")), Path::new("/h/x"), "never drops HOME");
        assert_eq!(ok("~", Some("/h")), Path::new("/h"));
        assert_eq!(ok("~/", Some("/h")), Path::new("/h"));
    }

    #[test]
    fn other_paths_are_untouched_and_need_no_home() {
        for p in ["/etc/kh", "keys/id", "./~/x", "a/~/b", "/~"] {
            assert_eq!(ok(p, None), Path::new(p));
        }
    }

    #[test]
    fn no_home_other_users_and_relative_home_are_refused() {
        assert_eq!(err("~/.ssh/id", None), Unexpandable::NoHome);
        assert_eq!(err("~/.ssh/id", Some("")), Unexpandable::NoHome);
        assert_eq!(err("~", None), Unexpandable::NoHome);
        assert_eq!(err("~bob/.ssh/id", Some("/h")), Unexpandable::OtherUser);
        assert_eq!(err("~/x", Some("rel/home")), Unexpandable::RelativeHome("rel/home".into()));
    }

    #[test]
    fn the_error_names_host_field_and_path() {
        let e = expand_field("cp1", "spec.ssh.knownHostsFile", Path::new("~/.ssh/kh"), None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "cp1: spec.ssh.knownHostsFile `~/.ssh/kh` starts with `~`, but HOME is not set (or is \
             empty), so it cannot be expanded; set HOME or write an absolute path"
        );
    }

    #[test]
    fn unexpanded_paths_are_recognised() {
        assert!(is_unexpanded(Path::new("~/x")));
        assert!(is_unexpanded(Path::new("~")));
        assert!(!is_unexpanded(Path::new("/home/x/~")));
    }
}
