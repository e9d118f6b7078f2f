//! The one restart rule every phase uses: a running service is restarted (or reloaded) when
//! the files it loaded at its last (re)start differ from the files it will find after this run,
//! whichever run changed them. Each (re)start is followed by a record on the host,
//! `/var/lib/kubeforge/loaded/<unit>`, listing the sha256 of every file the service read; the
//! planner compares that record with what the selected phases leave on disk. So a run that
//! stops after putting a renewed certificate or a changed config (a failure elsewhere, Ctrl-C,
//! `apply --until pki`) is completed by the next one, which finds the record stale, instead of
//! leaving the old certificate served forever. Pure: reads facts, returns steps.

use super::files::{Wanted, put_file, sha256_hex};
use super::types::Step;
use super::{Phase, PlanInput};
use crate::facts::HostFacts;

/// Where the records live on a host.
pub(crate) const LOADED_DIR: &str = "/var/lib/kubeforge/loaded";

/// The record of `unit` on a host.
pub(crate) fn record_path(unit: &str) -> String {
    format!("{LOADED_DIR}/{unit}")
}

/// The record of the control-plane static pods (run by the kubelet, restarted through the CRI).
pub(crate) const STATIC_PODS: &str = "static-pods";

/// What a service reads at start, with the digest each file will have after this run.
pub(crate) struct Loads {
    /// The systemd unit whose activity says the service runs.
    pub unit: &'static str,
    /// The record's name under [`LOADED_DIR`] (the unit's, except for the static pods).
    pub record: &'static str,
    /// `(path, sha256)`; `None` when the file will not exist.
    pub files: Vec<(String, Option<String>)>,
}

impl Loads {
    pub(crate) fn new(unit: &'static str) -> Self {
        Loads { unit, record: unit, files: Vec::new() }
    }

    /// Processes that `unit` runs (the kubelet's static pods), recorded as `record`.
    pub(crate) fn run_by(unit: &'static str, record: &'static str) -> Self {
        Loads { unit, record, files: Vec::new() }
    }

    /// A file of the render tree: the tree's digest when this run puts it (its phase is
    /// selected), else what the host has now.
    pub(crate) fn file(
        mut self,
        input: PlanInput<'_>,
        host: &str,
        facts: &HostFacts,
        path: &str,
    ) -> Self {
        let owner_selected = !super::pki::owns(path) || input.selection.contains(Phase::Pki);
        let from_tree = input.tree.hosts.get(host).and_then(|t| t.get(path));
        let sha = match from_tree {
            Some(file) if owner_selected => Some(sha256_hex(&file.contents)),
            _ => on_host(facts, path),
        };
        self.files.push((path.to_string(), sha));
        self
    }

    /// A binary from the artifact source: its catalogued digest when this run pushes it, else
    /// what the host has now.
    pub(crate) fn binary(
        mut self,
        input: PlanInput<'_>,
        facts: &HostFacts,
        name: &str,
        dest: &str,
    ) -> Self {
        let sha =
            input.artifacts.get(name).map(|a| a.sha256.clone()).or_else(|| on_host(facts, dest));
        self.files.push((dest.to_string(), sha));
        self
    }

    /// The record's bytes: one `sha256  path` line per file, in path order.
    pub(crate) fn record(&self) -> Vec<u8> {
        let mut lines: Vec<String> = self
            .files
            .iter()
            .map(|(path, sha)| format!("{}  {path}\n", sha.as_deref().unwrap_or("absent")))
            .collect();
        lines.sort_by(|a, b| a.split_once("  ").map(|x| x.1).cmp(&b.split_once("  ").map(|x| x.1)));
        lines.concat().into_bytes()
    }

    /// Why the running service must be restarted, or `None`: it is not running (starting it
    /// loads the files anyway), or its record matches.
    pub(crate) fn stale(&self, facts: &HostFacts) -> Option<String> {
        if !facts.units.get(self.unit).is_some_and(|u| u.is_active()) {
            return None;
        }
        // kubeforge gives the service no file here (containerd on an etcd-only host): nothing
        // it loaded can be out of date, and a restart would only disturb the host's own setup.
        if self.files.is_empty() {
            return None;
        }
        // A file this run changes (even back to what the record says: the file on the host may
        // have been edited and loaded by hand).
        let changed_now: Vec<&str> = self
            .files
            .iter()
            .filter(|(path, sha)| *sha != on_host(facts, path))
            .map(|(path, _)| path.as_str())
            .collect();
        if !changed_now.is_empty() {
            return Some(format!("{} changes in this run", changed_now.join(", ")));
        }
        let path = record_path(self.record);
        let Some(recorded) = facts.files.get(&path).and_then(|f| f.contents()) else {
            return Some(format!(
                "there is no record of the files the running {} loaded ({path})",
                self.record
            ));
        };
        let recorded = String::from_utf8_lossy(recorded);
        let old: Vec<&str> = recorded.lines().collect();
        let wanted = self.record();
        let wanted = String::from_utf8_lossy(&wanted);
        let changed: Vec<&str> = wanted
            .lines()
            .filter(|l| !old.contains(l))
            .filter_map(|l| l.split_once("  ").map(|(_, p)| p))
            .collect();
        match changed.is_empty() && old.len() == wanted.lines().count() {
            true => None,
            false => Some(format!(
                "it still runs with the files it loaded before {} changed",
                if changed.is_empty() { "its file list".to_string() } else { changed.join(", ") }
            )),
        }
    }

    /// The step that records what the service loaded, after its (re)start; `None` when the
    /// host's record already says so.
    pub(crate) fn record_step(&self, host: &str, facts: &HostFacts) -> Option<Step> {
        let record = self.record();
        let path = record_path(self.record);
        let wanted = Wanted { path: &path, contents: &record, mode: 0o644, secret: false };
        put_file(host, facts, wanted).map(Step::PutFile)
    }
}

fn on_host(facts: &HostFacts, path: &str) -> Option<String> {
    facts.files.get(path).and_then(|f| f.sha256()).map(String::from)
}

/// The records a host's probe reads (every unit kubeforge restarts).
pub(crate) fn probe_paths() -> impl Iterator<Item = String> {
    super::PROBED_UNITS.iter().chain(&[STATIC_PODS]).map(|u| record_path(u))
}
