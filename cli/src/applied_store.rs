//! `<state>/applied.json`: reading the last applied generation and writing the next one after
//! a successful run. It owns the file's I/O only — what goes in it is
//! `kubeforge_playbooks::applied` — and writes atomically (a temp file in the same directory,
//! fsynced, renamed over the old one, the directory fsynced), under the state lock, so a reader
//! sees the old generation or the new one, never a partial file.
//!
//! Only a run that succeeded on every host writes a generation. A failed or interrupted run
//! keeps the previous one: its hosts may hold some of the new files and not others, and the
//! record must only say "the hosts hold exactly this" when that was checked by the run finishing.
//! The next plan still compares against the hosts' own facts, so nothing is lost by keeping it.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use kubeforge_playbooks::applied::{Applied, FORMAT};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::render::RenderTree;
use miette::{IntoDiagnostic as _, WrapErr as _, miette};

/// The file's name in the state dir.
pub const APPLIED_FILE: &str = "applied.json";

fn path(state_root: &Path) -> PathBuf {
    state_root.join(APPLIED_FILE)
}

/// The last applied generation; `None` before the first successful run.
pub fn load(state_root: &Path) -> miette::Result<Option<Applied>> {
    let path = path(state_root);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e)
                .into_diagnostic()
                .wrap_err_with(|| format!("reading {}", path.display()));
        }
    };
    let applied: Applied = serde_json::from_slice(&bytes).map_err(|e| {
        miette!(
            help = "the file is only a record of the last apply: move it aside and plan again \
                    (the next successful apply writes a new one)",
            "{} is not a valid applied-state record: {e}",
            path.display()
        )
    })?;
    if applied.format > FORMAT {
        return Err(miette!(
            help = "use the kubeforge version that wrote it, or a newer one",
            "{} has format {}, newer than this kubeforge understands ({FORMAT})",
            path.display(),
            applied.format
        ));
    }
    Ok(Some(applied))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    crate::backup::hex(&sha2::Sha256::digest(bytes))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// What a finished run passes to [`after_run`].
pub struct RunOutcome<'a> {
    pub succeeded: bool,
    pub cluster: &'a Cluster,
    pub tree: &'a RenderTree,
    pub operation: &'a str,
    pub phases: Vec<String>,
    /// Hosts that left the spec and that the run cleaned (`Plan::departed_cleaned`): the
    /// record forgets them.
    pub departed_cleaned: Vec<String>,
}

/// Records the run's generation when it succeeded; otherwise leaves the previous one (see the
/// module doc). Returns the generation written, if any.
pub fn after_run(state_root: &Path, outcome: RunOutcome<'_>) -> miette::Result<Option<Applied>> {
    if !outcome.succeeded {
        return Ok(None);
    }
    let state = crate::state::StateDir::open(state_root)?;
    let _lock = state.lock()?;
    let previous = load(state_root)?;
    let mut next = Applied::next(
        previous.as_ref(),
        outcome.cluster,
        outcome.tree,
        outcome.operation,
        &outcome.phases,
        now_rfc3339(),
        sha256_hex,
    );
    next.forget_departed(&outcome.departed_cleaned);
    write(state_root, &next)?;
    Ok(Some(next))
}

/// After a successful reset: the reset hosts leave the record (a new generation), or, for the
/// whole cluster, the record is moved aside to `applied.json.reset-<stamp>` (kept, like the
/// hosts' data). Returns what happened, for the report; `None` when the record did not list
/// them (nothing to change: a reset run again writes no new generation).
pub fn after_reset(
    state_root: &Path,
    hosts: &[String],
    stamp: &str,
) -> miette::Result<Option<String>> {
    let state = crate::state::StateDir::open(state_root)?;
    let _lock = state.lock()?;
    let Some(previous) = load(state_root)? else {
        return Ok(None);
    };
    if hosts.is_empty() {
        let aside = state_root.join(format!("{APPLIED_FILE}.reset-{stamp}"));
        fs::rename(path(state_root), &aside)
            .into_diagnostic()
            .wrap_err_with(|| format!("moving {} aside", path(state_root).display()))?;
        return Ok(Some(format!("the applied-state record was moved to {}", aside.display())));
    }
    let listed = |h: &String| previous.hosts.contains_key(h) || previous.departed.contains_key(h);
    if !hosts.iter().any(listed) {
        return Ok(None);
    }
    let next = previous.without_hosts(hosts, "reset", now_rfc3339());
    write(state_root, &next)?;
    Ok(Some(format!("applied generation {} no longer lists {}", next.generation, hosts.join(", "))))
}

/// Writes `applied` atomically (temp + fsync + rename + directory fsync), mode 0600.
pub fn write(state_root: &Path, applied: &Applied) -> miette::Result<()> {
    let target = path(state_root);
    let mut bytes = serde_json::to_vec_pretty(applied).into_diagnostic()?;
    bytes.push(b'\n');
    let tmp = state_root.join(format!(".{APPLIED_FILE}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, &target)?;
        fs::File::open(state_root)?.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e).into_diagnostic().wrap_err_with(|| {
            format!("writing {} (the previous generation is unchanged)", target.display())
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/stacked.yaml");
        crate::spec_file::load(&spec).unwrap()
    }

    fn tree(c: &Cluster) -> RenderTree {
        let mut tree = RenderTree::default();
        for h in &c.hosts {
            let file = kubeforge_playbooks::render::NodeFile {
                contents: h.name.as_bytes().to_vec(),
                mode: 0o644,
                secret: false,
            };
            tree.insert(&h.name, "/etc/kubeforge/x", file).unwrap();
        }
        tree
    }

    fn outcome<'a>(c: &'a Cluster, t: &'a RenderTree, succeeded: bool) -> RunOutcome<'a> {
        RunOutcome {
            succeeded,
            cluster: c,
            tree: t,
            operation: "apply",
            phases: vec![],
            departed_cleaned: vec![],
        }
    }

    #[test]
    fn successful_runs_count_generations_up_and_a_failed_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let (c, t) = (cluster(), tree(&cluster()));
        assert_eq!(load(&root).unwrap(), None);
        // A failed first run writes nothing at all.
        assert!(after_run(&root, outcome(&c, &t, false)).unwrap().is_none());
        assert!(!root.join(APPLIED_FILE).exists());
        let first = after_run(&root, outcome(&c, &t, true)).unwrap().unwrap();
        assert_eq!(first.generation, 1);
        let second = after_run(&root, outcome(&c, &t, true)).unwrap().unwrap();
        assert_eq!(second.generation, 2);
        let before = fs::read(root.join(APPLIED_FILE)).unwrap();
        assert!(after_run(&root, outcome(&c, &t, false)).unwrap().is_none());
        assert_eq!(fs::read(root.join(APPLIED_FILE)).unwrap(), before, "failed run kept it");
        let loaded = load(&root).unwrap().unwrap();
        assert_eq!(loaded, second);
        let h = &c.hosts[0];
        assert_eq!(loaded.hosts[&h.name].files["/etc/kubeforge/x"], sha256_hex(h.name.as_bytes()));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(root.join(APPLIED_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn the_file_is_replaced_whole_and_no_temp_file_is_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let (c, t) = (cluster(), tree(&cluster()));
        after_run(&root, outcome(&c, &t, true)).unwrap();
        // A crashed writer's partial temp file is neither read nor in the way.
        let stale = root.join(format!(".{APPLIED_FILE}.tmp-{}", std::process::id()));
        fs::write(&stale, b"{\"format\": 1, \"gener").unwrap();
        assert_eq!(load(&root).unwrap().unwrap().generation, 1);
        after_run(&root, outcome(&c, &t, true)).unwrap();
        assert_eq!(load(&root).unwrap().unwrap().generation, 2);
        let leftovers: Vec<_> = fs::read_dir(&root)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        // A write that cannot complete (the target is a directory) keeps the old generation.
        let blocked = dir.path().join("blocked");
        fs::create_dir_all(blocked.join(APPLIED_FILE).join("x")).unwrap();
        let next = load(&root).unwrap().unwrap();
        assert!(write(&blocked, &next).is_err());
        assert!(fs::read_dir(&blocked).unwrap().count() == 1, "temp file removed after failure");
    }

    #[test]
    fn a_corrupt_or_newer_record_is_refused_with_advice() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(APPLIED_FILE), b"{not json").unwrap();
        let err = format!("{:?}", load(dir.path()).unwrap_err());
        assert!(err.contains("not a valid applied-state record"), "{err}");
        let (c, t) = (cluster(), tree(&cluster()));
        let mut newer = Applied::next(None, &c, &t, "apply", &[], "t".into(), sha256_hex);
        newer.format = FORMAT + 1;
        write(dir.path(), &newer).unwrap();
        let err = format!("{:?}", load(dir.path()).unwrap_err());
        assert!(err.contains("newer than this kubeforge"), "{err}");
    }

    #[test]
    fn a_reset_drops_its_hosts_once_and_a_whole_reset_moves_the_record_aside() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("state");
        let (c, t) = (cluster(), tree(&cluster()));
        after_run(&root, outcome(&c, &t, true)).unwrap();
        let host = c.hosts.last().unwrap().name.clone();
        let note = after_reset(&root, std::slice::from_ref(&host), "S").unwrap().unwrap();
        assert!(note.contains("generation 2 no longer lists"), "{note}");
        let record = load(&root).unwrap().unwrap();
        assert!(!record.hosts.contains_key(&host) && record.departed(&c).is_empty());
        // Reset again: nothing listed, no new generation.
        assert_eq!(after_reset(&root, std::slice::from_ref(&host), "S").unwrap(), None);
        assert_eq!(load(&root).unwrap().unwrap().generation, 2);
        // The whole cluster: the record is kept aside, and the next apply starts at 1.
        assert!(after_reset(&root, &[], "S").unwrap().unwrap().contains("moved"));
        assert!(root.join(format!("{APPLIED_FILE}.reset-S")).exists());
        assert_eq!(load(&root).unwrap(), None);
        assert_eq!(after_run(&root, outcome(&c, &t, true)).unwrap().unwrap().generation, 1);
    }
}
