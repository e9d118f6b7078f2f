//! The local state dir on disk: created private (0700), its `pki/` folder loaded into and saved
//! from a `kubeforge_pki::Store`. Writes are atomic (a temp file, then a link or rename), keys
//! and kubeconfigs are 0600, and nothing is replaced silently: a file may only get new contents
//! when the caller names it (because the PKI report says it was reissued), the old contents are
//! kept under `pki-replaced/<time>/`, and a file that changed on disk since it was loaded is an
//! error. Files that leave the store are never deleted:
//! `retire_pki` moves them to `pki-replaced/` (a CA rotation's outgoing CA).

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

use kubeforge_pki::Store;
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

/// Folder of the PKI inside the state dir.
pub const PKI_DIR: &str = "pki";
/// Where replaced PKI files are kept, one timestamped folder per run.
pub const REPLACED_DIR: &str = "pki-replaced";

/// An opened (and existing) state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// What `save_pki` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SaveSummary {
    pub created: Vec<String>,
    pub replaced: Vec<String>,
    /// Where the previous contents of replaced files now are.
    pub backup_dir: Option<PathBuf>,
}

/// The mode a store file gets in the state dir: certificates 0644, everything else 0600.
pub fn file_mode(path: &str) -> u32 {
    if path.ends_with(".crt") { 0o644 } else { 0o600 }
}

fn private_dir(dir: &Path) -> miette::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot create {}", dir.display()))
}

/// The state dir's `.gitignore`: it holds CA keys and secrets, and by default sits beside the
/// spec, often inside the spec's git repository.
pub const GITIGNORE: &str = ".gitignore";
const GITIGNORE_TEXT: &str =
    "# kubeforge state: CA keys, secrets and host keys. Never commit it.\n*\n";

/// Whether a `.gitignore` ignores everything in its directory (a `*` or `/*` line, not undone
/// by a later `!` negation).
fn ignores_everything(text: &str) -> bool {
    let mut all = false;
    for line in text.lines().map(str::trim) {
        if line == "*" || line == "/*" {
            all = true;
        } else if line.starts_with('!') {
            all = false;
        }
    }
    all
}

/// Writes the state dir's `.gitignore` (`*`) when it has none. An existing one is never
/// replaced: one that does not ignore everything is reported (the operator chose it).
fn ensure_gitignore(root: &Path) -> miette::Result<()> {
    let path = root.join(GITIGNORE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            if !ignores_everything(&text) {
                tracing::warn!(
                    "{} does not ignore everything; the state dir holds CA keys and secrets: \
                     add a line `*` so git never commits them",
                    path.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            match write_new(&path, GITIGNORE_TEXT.as_bytes(), 0o644) {
                Ok(()) => Ok(()),
                // Another command created it meanwhile.
                Err(_) if path.is_file() => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => {
            Err(e).into_diagnostic().wrap_err_with(|| format!("cannot read {}", path.display()))
        }
    }
}

impl StateDir {
    /// Opens the state dir, creating it 0700 when missing and tightening it to 0700 when it is
    /// open to other users (it holds keys).
    pub fn open(root: &Path) -> miette::Result<StateDir> {
        private_dir(root)?;
        let mode = fs::metadata(root)
            .into_diagnostic()
            .wrap_err_with(|| format!("cannot inspect the state dir {}", root.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            fs::set_permissions(root, fs::Permissions::from_mode(0o700))
                .into_diagnostic()
                .wrap_err_with(|| {
                    format!("cannot make the state dir {} private", root.display())
                })?;
            tracing::warn!(
                "state dir {} was mode {:04o}; set it to 0700",
                root.display(),
                mode & 0o777
            );
        }
        ensure_gitignore(root)?;
        Ok(StateDir { root: root.to_path_buf() })
    }

    /// Takes the state lock (`<state>/state.lock`) for as long as the returned guard lives.
    /// Every command that writes the state dir holds it; a second writer gets an error naming
    /// the holder's pid and the lock file. Re-entrant within one process.
    pub fn lock(&self) -> miette::Result<crate::exec::lock::StateLock> {
        Ok(crate::exec::lock::StateLock::acquire(&self.root)?)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn pki_dir(&self) -> PathBuf {
        self.root.join(PKI_DIR)
    }

    /// Every regular file under `pki/` (temp files starting with `.` skipped).
    pub fn load_pki(&self) -> miette::Result<Store> {
        let mut store = Store::new();
        let dir = self.pki_dir();
        if dir.exists() {
            load_dir(&dir, "", &mut store)?;
        }
        Ok(store)
    }

    /// Writes `new` over `old` (what `load_pki` returned). New files are created; files whose
    /// contents differ are replaced only when listed in `may_replace`, after their old contents
    /// are copied to `pki-replaced/<time>/`.
    pub fn save_pki(
        &self,
        old: &Store,
        new: &Store,
        may_replace: &BTreeSet<String>,
    ) -> miette::Result<SaveSummary> {
        let mut summary = SaveSummary::default();
        let refused: Vec<&String> = new
            .iter()
            .filter(|(p, b)| old.get(*p).is_some_and(|o| o != *b) && !may_replace.contains(*p))
            .map(|(p, _)| p)
            .collect();
        if !refused.is_empty() {
            return Err(miette!(
                "internal error: kubeforge tried to replace {} without reporting why; nothing was written",
                refused.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let pki = self.pki_dir();
        private_dir(&pki)?;
        let stamp = crate::state::run_stamp();
        let backup_root = self.root.join(REPLACED_DIR).join(stamp);
        for (rel, bytes) in new {
            let target = pki.join(checked_rel(rel)?);
            match old.get(rel) {
                Some(previous) if previous == bytes => {}
                Some(previous) => {
                    let on_disk = fs::read(&target).into_diagnostic().wrap_err_with(|| {
                        format!("cannot read {} before replacing it", target.display())
                    })?;
                    if &on_disk != previous {
                        return Err(miette!(
                            help = "run the command again so it sees the current file",
                            "{} changed on disk while kubeforge was running; not replaced",
                            target.display()
                        ));
                    }
                    let backup = backup_root.join(checked_rel(rel)?);
                    write_new(&backup, previous, file_mode(rel))?;
                    replace(&target, bytes, file_mode(rel))?;
                    summary.replaced.push(rel.clone());
                    summary.backup_dir = Some(backup_root.clone());
                }
                None => {
                    write_new(&target, bytes, file_mode(rel)).wrap_err_with(|| {
                        format!("{rel} appeared in the state dir while kubeforge was running; not replaced")
                    })?;
                    summary.created.push(rel.clone());
                }
            }
        }
        Ok(summary)
    }
}

impl StateDir {
    /// Moves files that left the store (a finished CA rotation's outgoing CA) to
    /// `pki-replaced/<time>/`: copied there first, then removed from `pki/`. A file whose
    /// contents differ from `old` (changed on disk meanwhile) is refused, not moved.
    pub fn retire_pki(&self, old: &Store, paths: &[String]) -> miette::Result<Option<PathBuf>> {
        if paths.is_empty() {
            return Ok(None);
        }
        let stamp = format!("{}-retired", crate::state::run_stamp());
        let backup_root = self.root.join(REPLACED_DIR).join(stamp);
        for rel in paths {
            let target = self.pki_dir().join(checked_rel(rel)?);
            let Ok(on_disk) = fs::read(&target) else { continue };
            if old.get(rel) != Some(&on_disk) {
                return Err(miette!(
                    help = "run the command again so it sees the current file",
                    "{} changed on disk while kubeforge was running; not moved",
                    target.display()
                ));
            }
            write_new(&backup_root.join(checked_rel(rel)?), &on_disk, file_mode(rel))?;
            fs::remove_file(&target)
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot remove {}", target.display()))?;
            sync_parent(&target);
        }
        Ok(Some(backup_root))
    }
}

fn load_dir(dir: &Path, prefix: &str, store: &mut Store) -> miette::Result<()> {
    let entries = fs::read_dir(dir)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.into_diagnostic()?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(miette!(
                "{}: file name is not UTF-8; rename or remove it",
                entry.path().display()
            ));
        };
        if name.starts_with('.') {
            continue;
        }
        let rel = if prefix.is_empty() { name.to_string() } else { format!("{prefix}/{name}") };
        let kind = entry.file_type().into_diagnostic()?;
        if kind.is_dir() {
            load_dir(&entry.path(), &rel, store)?;
        } else if kind.is_file() {
            let bytes = fs::read(entry.path())
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read {}", entry.path().display()))?;
            store.insert(rel, bytes);
        } else {
            return Err(miette!(
                help = "kubeforge only reads regular files in the state dir; replace the link with the file",
                "{} is not a regular file",
                entry.path().display()
            ));
        }
    }
    Ok(())
}

/// A store path as a relative file path, refusing anything that could leave the folder.
pub fn checked_rel(rel: &str) -> miette::Result<PathBuf> {
    let path = Path::new(rel);
    let ok = !rel.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    if ok {
        Ok(path.to_path_buf())
    } else {
        Err(miette!("internal error: unsafe store path {rel:?}"))
    }
}

fn temp_beside(target: &Path) -> PathBuf {
    let name = target.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    target.with_file_name(format!(".{name}.tmp.{}", std::process::id()))
}

fn write_temp(target: &Path, bytes: &[u8], mode: u32) -> miette::Result<PathBuf> {
    if let Some(parent) = target.parent() {
        private_dir(parent)?;
    }
    let tmp = temp_beside(target);
    let _ = fs::remove_file(&tmp);
    let write = || -> io::Result<()> {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    write().into_diagnostic().wrap_err_with(|| format!("cannot write {}", tmp.display()))?;
    Ok(tmp)
}

fn sync_parent(target: &Path) {
    if let Some(dir) = target.parent().and_then(|p| fs::File::open(p).ok()) {
        let _ = dir.sync_all();
    }
}

/// Creates `target` atomically; fails if it already exists.
pub fn write_new(target: &Path, bytes: &[u8], mode: u32) -> miette::Result<()> {
    let tmp = write_temp(target, bytes, mode)?;
    let linked = fs::hard_link(&tmp, target);
    let _ = fs::remove_file(&tmp);
    linked.into_diagnostic().wrap_err_with(|| format!("cannot create {}", target.display()))?;
    sync_parent(target);
    Ok(())
}

/// Replaces (or creates) `target` atomically.
pub fn replace(target: &Path, bytes: &[u8], mode: u32) -> miette::Result<()> {
    let tmp = write_temp(target, bytes, mode)?;
    fs::rename(&tmp, target)
        .into_diagnostic()
        .wrap_err_with(|| format!("cannot replace {}", target.display()))?;
    sync_parent(target);
    Ok(())
}

/// `YYYYMMDDTHHMMSSZ-<pid>` (UTC): names one run's audit log and the replaced files it kept,
/// unique per process even within a second.
pub fn run_stamp() -> String {
    let (compact, _) = crate::backup::stamps(time::OffsetDateTime::now_utc());
    format!("{compact}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(items: &[(&str, &str)]) -> Store {
        items.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect()
    }

    #[test]
    fn open_writes_a_gitignore_that_ignores_everything_and_never_replaces_one() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(".kubeforge/c1");
        StateDir::open(&root).unwrap();
        let text = fs::read_to_string(root.join(GITIGNORE)).unwrap();
        assert!(ignores_everything(&text), "{text}");
        assert!(text.lines().any(|l| l == "*"), "{text}");

        // The operator's own files are left as they are, whatever they say.
        for own in ["/*\n", "*.key\n", "*\n!pki\n"] {
            fs::write(root.join(GITIGNORE), own).unwrap();
            StateDir::open(&root).unwrap();
            assert_eq!(fs::read_to_string(root.join(GITIGNORE)).unwrap(), own);
        }
        assert!(ignores_everything("# x\n/*\n"));
        assert!(!ignores_everything("*.key\n"));
        assert!(!ignores_everything("*\n!pki\n"));
    }

    #[test]
    fn save_creates_private_files_and_load_reads_them_back() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(&tmp.path().join("s")).unwrap();
        assert_eq!(fs::metadata(state.root()).unwrap().permissions().mode() & 0o777, 0o700);
        let new = store(&[("ca.crt", "C"), ("ca.key", "K"), ("nodes/w1/kubelet.conf", "Q")]);
        let summary = state.save_pki(&Store::new(), &new, &BTreeSet::new()).unwrap();
        assert_eq!(summary.created.len(), 3);
        let mode =
            |p: &str| fs::metadata(state.pki_dir().join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            (mode("ca.crt"), mode("ca.key"), mode("nodes/w1/kubelet.conf")),
            (0o644, 0o600, 0o600)
        );
        assert_eq!(state.load_pki().unwrap(), new);
    }

    #[test]
    fn replacing_needs_permission_keeps_a_backup_and_detects_concurrent_edits() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        let v1 = store(&[("a.crt", "one")]);
        state.save_pki(&Store::new(), &v1, &BTreeSet::new()).unwrap();
        let v2 = store(&[("a.crt", "two")]);
        let err = state.save_pki(&v1, &v2, &BTreeSet::new()).unwrap_err();
        assert!(err.to_string().contains("without reporting why"), "{err}");
        assert_eq!(fs::read(state.pki_dir().join("a.crt")).unwrap(), b"one");

        let allowed: BTreeSet<String> = ["a.crt".to_string()].into();
        let summary = state.save_pki(&v1, &v2, &allowed).unwrap();
        assert_eq!(fs::read(state.pki_dir().join("a.crt")).unwrap(), b"two");
        assert_eq!(fs::read(summary.backup_dir.unwrap().join("a.crt")).unwrap(), b"one");

        // Someone edits the file after it was loaded: refused.
        fs::write(state.pki_dir().join("a.crt"), "edited").unwrap();
        let v3 = store(&[("a.crt", "three")]);
        let err = state.save_pki(&v2, &v3, &allowed).unwrap_err();
        assert!(err.to_string().contains("changed on disk"), "{err}");
        // A file that appeared meanwhile is not overwritten either.
        fs::write(state.pki_dir().join("b.crt"), "theirs").unwrap();
        assert!(state.save_pki(&Store::new(), &store(&[("b.crt", "ours")]), &allowed).is_err());
        assert_eq!(fs::read(state.pki_dir().join("b.crt")).unwrap(), b"theirs");
    }

    #[test]
    fn retiring_moves_files_to_the_replaced_folder_and_refuses_changed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::open(dir.path()).unwrap();
        let old = store(&[("etcd/ca-prev.crt", "old ca"), ("etcd/ca-prev.key", "old key")]);
        state.save_pki(&Store::new(), &old, &BTreeSet::new()).unwrap();
        let paths = vec!["etcd/ca-prev.crt".to_string(), "etcd/ca-prev.key".to_string()];
        let kept = state.retire_pki(&old, &paths).unwrap().expect("a backup folder");
        assert!(state.load_pki().unwrap().is_empty());
        assert_eq!(fs::read(kept.join("etcd/ca-prev.key")).unwrap(), b"old key");
        assert!(kept.starts_with(dir.path().join(REPLACED_DIR)));
        // A file changed on disk since it was loaded stays where it is.
        state.save_pki(&Store::new(), &old, &BTreeSet::new()).unwrap();
        fs::write(state.pki_dir().join("etcd/ca-prev.crt"), "edited").unwrap();
        assert!(state.retire_pki(&old, &paths).is_err());
        assert_eq!(fs::read(state.pki_dir().join("etcd/ca-prev.crt")).unwrap(), b"edited");
    }

    #[test]
    fn unsafe_paths_and_symlinks_are_refused() {
        assert!(checked_rel("../x").is_err());
        assert!(checked_rel("/etc/x").is_err());
        assert!(checked_rel("nodes/a/b.crt").is_ok());
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::open(tmp.path()).unwrap();
        fs::create_dir_all(state.pki_dir()).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", state.pki_dir().join("ca.crt")).unwrap();
        assert!(state.load_pki().is_err());
    }

    #[test]
    fn open_tightens_a_world_readable_state_dir() {
        let tmp = tempfile::tempdir().unwrap();
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(tmp.path()).unwrap();
        assert_eq!(fs::metadata(tmp.path()).unwrap().permissions().mode() & 0o777, 0o700);
    }
}
