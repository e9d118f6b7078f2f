//! Installing scheduled backups (only when `spec.backup.schedule` is set): the kubeforge binary
//! itself (the operator's, from the artifact inventory under [`ARTIFACT`]) at
//! `/usr/local/bin/kubeforge` on the hosts that run `kubeforge backup run` — every etcd member
//! for the systemd-timer runner, every control plane for the CronJob runner — and, for the
//! timer runner, the rendered service and timer, a daemon-reload when either changed, the
//! timer enabled and started (restarted when its file changed while it runs). The CronJob's
//! manifest itself belongs to the addons phase.
//!
//! The binary is large (a debug build is ~270 MB), so the probe never hashes it: a stamp file
//! ([`STAMP`], the binary's sha256 in `sha256sum` format) is written right after each push
//! (whose sha256 the executor checks on the node), and the plan compares that stamp, plus the
//! binary's existence. Hashing the binary in the probe made it so slow that the preflight
//! clock check (taken at the probe's start, judged against its round trip) failed.
//!
//! Pure: decides from the render tree, the facts and the inventory. Called from the etcd
//! phase, whose hosts get these steps after their etcd steps; owns no etcd decision.

use std::collections::BTreeMap;

use super::PlanInput;
use super::files::{Wanted, put_file};
use super::types::{PushArtifact, Step, UnitAction, UnitStep};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{BackupRunner, Cluster, Host};
use crate::render::configs::backup::{BACKUP_BINARY, SERVICE, TIMER};

/// The inventory key of the operator's own kubeforge binary (added by `cli`).
pub const ARTIFACT: &str = "kubeforge";
/// The timer unit.
pub const TIMER_UNIT: &str = "kubeforge-backup.timer";
/// The pushed binary's sha256, `sha256sum` style, written after each push.
pub const STAMP: &str = "/var/lib/kubeforge/kubeforge.sha256";

/// The files of the render tree this module installs.
pub(crate) fn owns(path: &str) -> bool {
    path == SERVICE || path == TIMER
}

/// Which runner `host` carries, if any.
fn runner_on(cluster: &Cluster, host: &Host) -> Option<BackupRunner> {
    let backup = cluster.backup.as_ref()?;
    backup.schedule.as_ref()?;
    let on_host = match backup.runner {
        BackupRunner::SystemdTimer => cluster.etcd_members().any(|m| m.name == host.name),
        BackupRunner::CronJob => host.is_control_plane(),
    };
    on_host.then_some(backup.runner)
}

/// Whether the hosts need the kubeforge binary (so `cli` adds it to the inventory).
pub fn needs_binary(cluster: &Cluster) -> bool {
    cluster.hosts.iter().any(|h| runner_on(cluster, h).is_some())
}

/// The facts needed: the installed binary's digest and the timer's state.
pub(crate) fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    let Some(host) = cluster.host(host) else { return };
    if runner_on(cluster, host).is_some() {
        request.paths_exist.insert(BACKUP_BINARY.to_string());
        request.hash_files.insert(STAMP.to_string());
        request.read_files.insert(STAMP.to_string());
        request.units.insert(TIMER_UNIT.to_string());
    }
}

/// The install steps of one host (empty when it runs no backups or has everything).
pub(crate) fn host_steps(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let Some(runner) = runner_on(input.cluster, host) else { return Vec::new() };
    let mut steps = Vec::new();
    if let Some(binary) = input.artifacts.get(ARTIFACT) {
        let stamp = format!("{}  {BACKUP_BINARY}\n", binary.sha256);
        let wanted = Wanted { path: STAMP, contents: stamp.as_bytes(), mode: 0o644, secret: false };
        let put_stamp = put_file(&host.name, facts, wanted);
        let present = facts.paths_exist.get(BACKUP_BINARY) == Some(&true);
        if put_stamp.is_some() || !present {
            steps.push(Step::PushArtifact(PushArtifact {
                name: ARTIFACT.to_string(),
                local_path: binary.path.clone(),
                sha256: binary.sha256.clone(),
                dest: BACKUP_BINARY.to_string(),
                mode: 0o755,
                unverified: binary.unverified,
            }));
        }
        steps.extend(put_stamp.map(Step::PutFile));
    }
    if runner != BackupRunner::SystemdTimer {
        return steps;
    }
    let tree = input.tree.hosts.get(&host.name);
    let mut changed = Vec::new();
    // The service before the timer (name order).
    for (path, file) in tree.into_iter().flatten().filter(|(p, _)| owns(p)) {
        let path = path.as_str();
        let wanted = Wanted { path, contents: &file.contents, mode: file.mode, secret: false };
        if let Some(put) = put_file(&host.name, facts, wanted) {
            steps.push(Step::PutFile(put));
            changed.push(path);
        }
    }
    if !changed.is_empty() {
        steps.push(unit_step("", UnitAction::DaemonReload, "the backup service or timer changed"));
    }
    let state = facts.units.get(TIMER_UNIT);
    if !state.is_some_and(|u| u.is_enabled()) {
        steps.push(unit_step(TIMER_UNIT, UnitAction::Enable, "scheduled backups survive reboots"));
    }
    if !state.is_some_and(|u| u.is_active()) {
        steps.push(unit_step(TIMER_UNIT, UnitAction::Start, "scheduled backups run from now on"));
    } else if changed.contains(&TIMER) {
        steps.push(unit_step(TIMER_UNIT, UnitAction::Restart, "the schedule changed"));
    }
    steps
}

fn unit_step(unit: &str, action: UnitAction, why: &str) -> Step {
    Step::Unit(UnitStep { unit: unit.to_string(), action, why: why.to_string() })
}

/// Appends every ready host's install steps to the etcd phase's host steps.
pub(crate) fn add_steps(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
    hosts: &mut BTreeMap<String, Vec<Step>>,
) {
    for (&name, &facts) in ready {
        let Some(host) = input.cluster.host(name) else { continue };
        let steps = host_steps(input, host, facts);
        if !steps.is_empty() {
            hosts.entry(name.to_string()).or_default().extend(steps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests_phases::{debian_facts, example_text, load, render};
    use super::super::{ArtifactInventory, LocalArtifact, Observed, Phase, PhaseSelection};
    use super::*;
    use crate::facts::FileState;

    fn inventory() -> ArtifactInventory {
        let mut inv = ArtifactInventory::new();
        let binary = LocalArtifact {
            path: "/op/kubeforge".into(),
            sha256: "ab".repeat(32),
            unverified: false,
        };
        inv.insert(ARTIFACT.into(), binary);
        inv
    }

    fn steps_for(name: &str, host: &str, facts: &HostFacts) -> Vec<Step> {
        let cluster = load(example_text(name));
        let tree = render(&cluster);
        let facts_map = BTreeMap::new();
        let artifacts = inventory();
        let selection = PhaseSelection::new(Some(Phase::Etcd), &[]);
        let observed = Observed::default();
        let input = PlanInput {
            cluster: &cluster,
            tree: &tree,
            facts: &facts_map,
            artifacts: &artifacts,
            selection: &selection,
            observed: &observed,
            applied: None,
        };
        host_steps(input, cluster.host(host).unwrap(), facts)
    }

    fn describe(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|s| match s {
                Step::PushArtifact(p) => format!("push {} {:o}", p.dest, p.mode),
                Step::PutFile(p) => format!("put {}", p.path),
                Step::Unit(u) => u.argv().join(" "),
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Applies the steps' effects to the facts (files, unit state).
    fn apply(facts: &mut HostFacts, steps: &[Step]) {
        for s in steps {
            match s {
                Step::PushArtifact(p) => {
                    facts.paths_exist.insert(p.dest.clone(), true);
                }
                Step::PutFile(p) => {
                    facts.files.insert(p.path.clone(), present(&p.sha256, p.mode));
                }
                Step::Unit(u) => crate::plan::tests::simulate_unit(&mut facts.units, u),
                _ => {}
            }
        }
    }

    fn present(sha256: &str, mode: u32) -> FileState {
        FileState::Present {
            sha256: sha256.into(),
            mode: Some(mode),
            owner: Some("root".into()),
            group: Some("root".into()),
            contents: None,
        }
    }

    #[test]
    fn timer_runner_installs_binary_units_and_starts_the_timer_then_converges() {
        let mut facts = debian_facts("cp1");
        let steps = steps_for("stacked", "cp1", &facts);
        assert_eq!(
            describe(&steps),
            [
                "push /usr/local/bin/kubeforge 755",
                "put /var/lib/kubeforge/kubeforge.sha256",
                "put /etc/systemd/system/kubeforge-backup.service",
                "put /etc/systemd/system/kubeforge-backup.timer",
                "systemctl daemon-reload",
                "systemctl enable kubeforge-backup.timer",
                "systemctl start kubeforge-backup.timer",
            ]
        );
        apply(&mut facts, &steps);
        assert!(steps_for("stacked", "cp1", &facts).is_empty(), "converged");
        // A new kubeforge binary (another stamp) is pushed again, and nothing else changes.
        facts.files.insert(STAMP.into(), present("00", 0o644));
        let again =
            ["push /usr/local/bin/kubeforge 755", "put /var/lib/kubeforge/kubeforge.sha256"];
        assert_eq!(describe(&steps_for("stacked", "cp1", &facts)), again);
        let push = steps_for("stacked", "cp1", &facts);
        apply(&mut facts, &push);
        // So is a binary someone removed.
        facts.paths_exist.insert(BACKUP_BINARY.into(), false);
        let push = steps_for("stacked", "cp1", &facts);
        assert_eq!(describe(&push), ["push /usr/local/bin/kubeforge 755"]);
        apply(&mut facts, &push);
        // A changed schedule restarts the running timer.
        facts.files.insert(TIMER.into(), present("00", 0o644));
        assert_eq!(
            describe(&steps_for("stacked", "cp1", &facts)),
            [
                "put /etc/systemd/system/kubeforge-backup.timer",
                "systemctl daemon-reload",
                "systemctl restart kubeforge-backup.timer",
            ]
        );
    }

    #[test]
    fn cronjob_runner_puts_only_the_binary_on_control_planes() {
        let cluster = load(example_text("external"));
        let facts = debian_facts("x");
        for host in &cluster.hosts {
            let steps = describe(&steps_for("external", &host.name, &facts));
            if host.is_control_plane() {
                let want = [
                    "push /usr/local/bin/kubeforge 755",
                    "put /var/lib/kubeforge/kubeforge.sha256",
                ];
                assert_eq!(steps, want, "{}", host.name);
            } else {
                assert!(steps.is_empty(), "{}: {steps:?}", host.name);
            }
        }
    }

    #[test]
    fn the_etcd_phase_plans_the_install_and_probes_what_it_needs() {
        let cluster = load(example_text("stacked"));
        let mut request = ProbeRequest::default();
        super::super::etcd::extend_request(&cluster, "cp1", &mut request);
        assert!(request.paths_exist.contains(BACKUP_BINARY));
        assert!(!request.hash_files.contains(BACKUP_BINARY), "never hashed by the probe");
        assert!(request.read_files.contains(STAMP));
        assert!(request.units.contains(TIMER_UNIT));
        assert!(needs_binary(&cluster));
    }
}
