//! Operations: every command that changes hosts is one, and the operation is an input of the
//! planner (`plan(op, input)`), not a branch in the CLI. An operation says which phases it can
//! run and which command resumes it; each one is planned into the same `Plan`, shown the same
//! way and run by the same executor. `apply` is the first; `restore` (`super::restore`) is
//! planned beside it, and upgrade, CA rotation and reset will be too. Pure data: no I/O here.

use serde::Serialize;

use super::Phase;

/// What a run is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Operation {
    /// Converge the hosts to the spec, phase by phase.
    Apply,
    /// Replace etcd's data on every member with a verified snapshot (a new cluster with the
    /// spec's members and a new token), with the kube-apiservers stopped meanwhile.
    Restore { snapshot: RestoreSnapshot },
    /// Return hosts to the state before kubeforge (`super::reset`): the named ones, or every
    /// spec host when `hosts` is empty.
    #[serde(rename_all = "camelCase")]
    Reset {
        hosts: Vec<String>,
        /// The spec file the operator passed (`-f`), for the command that resumes the run.
        spec_file: String,
        /// `YYYYMMDDTHHMMSSZ` of this reset: it names the directories data is kept in.
        stamp: String,
    },
    /// Move the running cluster to the spec's versions (`super::upgrade`): etcd members one
    /// at a time, then control planes, then kubelets in batches of `max_unavailable`.
    Upgrade {
        /// The spec file the operator passed (`-f`), for the command that resumes the run.
        spec_file: String,
        max_unavailable: usize,
    },
}

/// The snapshot a restore puts on every member, as the CLI verified it before planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSnapshot {
    /// What the operator named with `--from`: a backup name or a path.
    pub from: String,
    /// The spec file the operator passed (`-f`), for the command that resumes the run.
    pub spec_file: String,
    /// The verified, decompressed snapshot on the operator's machine (etcd's own format, with
    /// its sha256 trailer, which `snapshot restore` checks again on each member).
    pub local_path: String,
    /// sha256 of that whole file; each member's copy is checked against it after the push.
    pub sha256: String,
    /// The revision the snapshot holds: the restored members must serve exactly this one.
    pub revision: i64,
    /// `YYYYMMDDTHHMMSSZ` of this restore. It names the new cluster token and the directories
    /// the old data is kept in, so two restores never share either.
    pub stamp: String,
}

impl Operation {
    /// The command's name as the CLI spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Operation::Apply => "apply",
            Operation::Restore { .. } => "restore",
            Operation::Reset { .. } => "reset",
            Operation::Upgrade { .. } => "upgrade",
        }
    }

    /// The phases this operation can run, in order (`--until`/`--skip-phases` select among
    /// them for `apply`; a restore always runs all of its own).
    pub fn phases(&self) -> &'static [Phase] {
        match self {
            Operation::Apply => &Phase::ALL,
            Operation::Restore { .. } => &[Phase::Preflight, Phase::Etcd],
            Operation::Reset { .. } => &[Phase::Etcd, Phase::Os],
            Operation::Upgrade { .. } => &super::upgrade::PHASES,
        }
    }

    /// The command an operator runs again to finish an interrupted or failed run: each
    /// operation resumes from what the hosts and the state dir show (a restore starts over
    /// from the same snapshot: the data it moved aside stays where it is).
    pub fn rerun(&self) -> String {
        match self {
            Operation::Apply => "kubeforge apply".to_string(),
            Operation::Restore { snapshot } => {
                format!("kubeforge restore -f {} --from {}", snapshot.spec_file, snapshot.from)
            }
            Operation::Reset { hosts, spec_file, .. } if hosts.is_empty() => {
                format!("kubeforge reset -f {spec_file}")
            }
            Operation::Reset { hosts, spec_file, .. } => {
                format!("kubeforge reset -f {spec_file} --hosts {}", hosts.join(","))
            }
            // Members already on the target version are skipped: a re-run continues.
            Operation::Upgrade { spec_file, .. } => {
                format!("kubeforge upgrade apply -f {spec_file}")
            }
        }
    }

    /// Whether the first failure stops the whole run (no later phase starts on any host): an
    /// upgrade must not move kubelets past a control plane that failed (or was rolled back),
    /// nor start anything after a preflight gate said no. Other operations let the hosts that
    /// did not fail go on.
    pub fn stops_at_first_failure(&self) -> bool {
        matches!(self, Operation::Upgrade { .. })
    }

    /// Whether planning reads etcd's member list and health first (`cli::observe`). `apply`
    /// plans membership changes from it; a restore replaces the cluster, so it must be
    /// plannable when no member answers at all.
    pub fn observes_etcd(&self) -> bool {
        match self {
            Operation::Apply | Operation::Upgrade { .. } => true,
            Operation::Restore { .. } => false,
            // Removing reset members from etcd needs the member list; a whole-cluster reset
            // must work when no member answers.
            Operation::Reset { hosts, .. } => !hosts.is_empty(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_runs_every_phase_and_resumes_with_apply() {
        assert_eq!(Operation::Apply.phases(), &Phase::ALL);
        assert_eq!(Operation::Apply.rerun(), "kubeforge apply");
        assert!(Operation::Apply.observes_etcd());
        let json = serde_json::to_value(Operation::Apply).unwrap();
        assert_eq!(json, serde_json::json!({ "kind": "apply" }));
    }

    #[test]
    fn restore_resumes_from_the_same_snapshot_and_plans_without_etcd_answering() {
        let op = Operation::Restore {
            snapshot: RestoreSnapshot {
                from: "lab-20270101T000000Z".into(),
                spec_file: "lab.cluster.yaml".into(),
                local_path: "/tmp/x/snapshot.db".into(),
                sha256: "ab".repeat(32),
                revision: 1007,
                stamp: "20270102T030405Z".into(),
            },
        };
        assert_eq!(op.name(), "restore");
        assert_eq!(op.rerun(), "kubeforge restore -f lab.cluster.yaml --from lab-20270101T000000Z");
        assert!(!op.observes_etcd());
        assert_eq!(op.phases(), &[Phase::Preflight, Phase::Etcd]);
        let json = serde_json::to_value(&op).unwrap();
        assert_eq!(json["kind"], "restore");
        assert_eq!(json["snapshot"]["revision"], 1007);
    }
}
