//! `apply`'s cleanup of hosts that left the spec: each host the last applied generation
//! (`crate::applied`) had and the spec no longer has is reached at its last applied address
//! (the CLI gathers its facts with the state dir's known host key) and cleaned with the same
//! per-host teardown as `reset` (`super::reset::teardown_of`), for the files it was given.
//! It owns the order around that teardown and what the plan says about each such host; it does
//! no I/O and does not touch the record (the CLI drops cleaned hosts from it after a successful
//! run).
//!
//! Order, within one apply:
//! 1. `etcd`: a member that left is removed from etcd by the etcd phase (quorum-safe, by
//!    `crate::etcd_membership`; leadership moved to a member that stays first), then its etcd
//!    is stopped and disabled and its data dir moved aside (never deleted).
//! 2. `loadbalancer`: the hosts that stay get their load-balancer backends from the spec, which
//!    no longer names the host (the phase's per-host steps). Then, first in the phase's ordered
//!    steps: a host whose kubelet runs is drained and its Node deleted with kubectl on a control
//!    plane that stays; then its teardown: kubelet, keepalived, haproxy (and etcd, when it was
//!    not a listed member) stopped and disabled, every managed file removed, etcd's data dir
//!    moved aside. Only then come the phase's VIP gates: exactly one control plane that stays
//!    holds the VIP (a departed keepalived no longer competes for it) and the endpoint answers.
//!
//! A host that is not reached is named with what is left on it and nothing is done on it (its
//! etcd member, if any, is still removed through the members that stay). A host is cleaned
//! only by a run that covers the etcd and loadbalancer phases, and a host whose kubelet runs
//! only by one that covers the control-plane phase too (kubectl drains it first).

use std::collections::BTreeMap;

use super::control_plane::{ADMIN_CONF, KUBECTL};
use super::types::{PhasePlan, Run, SequencedStep, Step};
use super::{Phase, PlanInput};
use crate::applied::{AppliedHost, Cleanup, DepartedHost};
use crate::facts::{HostFacts, ProbeRequest};
use crate::node::unit;
use crate::render::configs::etcd as etcd_unit;

/// The facts a departed host's cleanup needs: the files it was given, kubeforge's extra files,
/// its units, etcd's data dir, containerd's unit file and binary.
pub fn probe_request(host: &AppliedHost) -> ProbeRequest {
    let mut request = ProbeRequest::default();
    request.hash_files.extend(host.files.keys().cloned());
    super::reset::extend_request(&mut request);
    request.units.extend(super::PROBED_UNITS.iter().map(|u| u.to_string()));
    request.binaries.insert("containerd".to_string());
    request
}

fn active_or_enabled(facts: &HostFacts, name: &str) -> bool {
    facts.units.get(name).is_some_and(|u| {
        u.is_active() || matches!(u.enabled.as_str(), "enabled" | "enabled-runtime")
    })
}

/// What is left on a host that was not reached: the services it was given.
fn left_on(host: &AppliedHost) -> Vec<String> {
    let mut left: Vec<String> = host.services().into_iter().map(String::from).collect();
    if host.services().contains(&"etcd") {
        left.push(format!("etcd's data in {}", etcd_unit::DATA_DIR));
    }
    left.push(format!("{} managed file(s)", host.files.len()));
    left
}

/// Whether the etcd phase of this plan removes `name`'s member and then stops its etcd and
/// moves its data aside (it is a listed member and the etcd phase runs).
fn etcd_phase_decommissions(input: PlanInput<'_>, name: &str, host: &AppliedHost) -> bool {
    let Some(observed) = &input.observed.etcd else { return false };
    let Ok(address) = host.address.parse::<std::net::IpAddr>() else { return false };
    let url = etcd_unit::peer_url(address);
    input.selection.contains(Phase::Etcd)
        && observed.members.iter().any(|m| m.name == name || m.peer_urls.contains(&url))
}

/// The spec host that now has a departed host's address and SSH port, if any.
fn reused_by<'c>(input: PlanInput<'c>, host: &AppliedHost) -> Option<&'c str> {
    input
        .cluster
        .hosts
        .iter()
        .find(|h| h.address.to_string() == host.address && h.ssh.port == host.ssh_port)
        .map(|h| h.name.as_str())
}

/// Whether a spec host now has this departed host's address and SSH port (the CLI does not
/// reach it under its old name then).
pub fn address_reused(cluster: &crate::model::Cluster, host: &AppliedHost) -> bool {
    cluster
        .hosts
        .iter()
        .any(|h| h.address.to_string() == host.address && h.ssh.port == host.ssh_port)
}

/// Drains `node` and deletes its Node object, run on a control plane that stays.
fn drain_steps(node: &str) -> Vec<Step> {
    let kubectl = |args: &[&str]| -> Vec<String> {
        [KUBECTL, "--kubeconfig", ADMIN_CONF].iter().chain(args).map(|a| a.to_string()).collect()
    };
    let gone = format!("{} 2>&1 | grep -q NotFound", kubectl(&["get", "node", node]).join(" "));
    let unless = Some(vec!["sh".to_string(), "-c".to_string(), gone]);
    vec![
        Step::Run(Run {
            argv: kubectl(&[
                "drain",
                node,
                "--ignore-daemonsets",
                "--delete-emptydir-data",
                "--force",
                "--timeout=300s",
            ]),
            unless: unless.clone(),
            why: format!("{node} left the spec: its pods move to the nodes that stay"),
        }),
        Step::Run(Run {
            argv: kubectl(&["delete", "node", node, "--ignore-not-found"]),
            unless,
            why: format!("{node} left the spec: its Node object goes"),
        }),
    ]
}

/// Decides each departed host's cleanup and puts its steps first in the loadbalancer phase's
/// ordered steps (see the module doc). Returns the hosts as the plan shows them.
pub(crate) fn plan(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
    phases: &mut [PhasePlan],
) -> Vec<DepartedHost> {
    let Some(applied) = input.applied else { return Vec::new() };
    let mut departed = applied.departed(input.cluster);
    let covers =
        input.selection.contains(Phase::Etcd) && input.selection.contains(Phase::LoadBalancer);
    // kubectl runs on a control plane that stays and that this run reached.
    let kubectl_host = input
        .cluster
        .hosts
        .iter()
        .find(|h| h.is_control_plane() && ready.contains_key(h.name.as_str()))
        .map(|h| h.name.clone());
    let mut cleanup: Vec<SequencedStep> = Vec::new();
    for d in &mut departed {
        let Some((_, host)) = applied.hosts_and_departed().find(|(n, _)| *n == d.name) else {
            continue;
        };
        // The machine at its old address is now a spec host (a machine given another name):
        // it is not torn down.
        if let Some(now) = reused_by(input, host) {
            d.cleanup = Cleanup::Deferred {
                why: format!(
                    "its address {} now belongs to {now} in the spec: nothing is done there",
                    host.address
                ),
            };
            continue;
        }
        let facts = match input.facts.get(&d.name) {
            Some(Ok(facts)) => facts,
            Some(Err(reason)) => {
                d.cleanup = Cleanup::Unreachable { reason: reason.clone(), left: left_on(host) };
                continue;
            }
            None => {
                d.cleanup = Cleanup::Unreachable {
                    reason: "no facts were gathered".into(),
                    left: left_on(host),
                };
                continue;
            }
        };
        if !covers {
            d.cleanup = Cleanup::Deferred {
                why: "this run does not cover the etcd and loadbalancer phases".into(),
            };
            continue;
        }
        let needs_drain = active_or_enabled(facts, unit::KUBELET);
        let drain_host = match (&kubectl_host, input.selection.contains(Phase::ControlPlane)) {
            (Some(h), true) => Some(h.clone()),
            _ => None,
        };
        if needs_drain && drain_host.is_none() {
            d.cleanup = Cleanup::Deferred {
                why: "its kubelet runs: it is drained (kubectl on a control plane that stays) by \
                      an apply that covers the control-plane phase"
                    .into(),
            };
            continue;
        }
        let etcd_done = etcd_phase_decommissions(input, &d.name, host);
        let files: Vec<String> = host.files.keys().cloned().collect();
        let steps = super::reset::teardown_of(
            files,
            facts,
            etcd_done,
            super::etcd::move_data_aside(
                "the departed host's etcd data is kept aside, not deleted",
            ),
        );
        if steps.is_empty() && !etcd_done {
            d.cleanup = Cleanup::AlreadyClean;
            continue;
        }
        if needs_drain && let Some(on) = &drain_host {
            for step in drain_steps(&d.name) {
                cleanup.push(SequencedStep { host: on.clone(), step });
            }
        }
        for step in steps {
            cleanup.push(SequencedStep { host: d.name.clone(), step });
        }
        d.cleanup = Cleanup::Cleaned;
    }
    if let Some(lb) = phases.iter_mut().find(|p| p.phase == Phase::LoadBalancer) {
        lb.sequence.splice(0..0, cleanup);
    }
    departed
}

impl super::Plan {
    /// The hosts that left the spec and hold nothing of kubeforge once this plan has run
    /// successfully: the record forgets them then.
    pub fn departed_cleaned(&self) -> Vec<String> {
        self.departed.iter().filter(|d| d.cleanup.leaves_record()).map(|d| d.name.clone()).collect()
    }
}
