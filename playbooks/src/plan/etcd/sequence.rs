//! The etcd phase's ordered part: restarts of running members one at a time, then the
//! membership steps of `crate::etcd_membership` turned into host steps and etcd-client
//! operations, each change followed by a health gate. Operations go through the tunnel to a
//! healthy member that stays; health gates probe each member through its own host's tunnel
//! (members no longer in the spec cannot be reached that way and are left out of gates).

use std::collections::BTreeMap;

use super::super::PlanInput;
use super::super::types::{
    EtcdAction, EtcdClientFiles, Run, SequencedStep, Step, UnitAction, UnitStep,
};
use super::host::{Install, UNIT, bootstrap_file, start_no_block};
use super::{EtcdPlanError, GATE_TIMEOUT_MS, MemberHost};
use crate::etcd_membership::{CurrentMember, Step as Membership};
use crate::facts::HostFacts;
use crate::render::configs::etcd::{self as unit, InitialState};

/// Moves a data dir aside, never deletes it (the name carries the host's clock).
pub(crate) fn move_data_aside(why: &str) -> Step {
    Step::Run(Run {
        argv: vec![
            "sh".into(),
            "-c".into(),
            format!(
                "mv -T {dir} \"{dir}.removed-$(date -u +%Y%m%dT%H%M%SZ)\"",
                dir = unit::DATA_DIR
            ),
        ],
        unless: Some(vec!["test".into(), "!".into(), "-e".into(), unit::MEMBER_DIR.into()]),
        why: why.into(),
    })
}

fn stop(disable: bool, why: &str) -> Step {
    let argv = if disable {
        vec!["systemctl", "disable", "--now", UNIT]
    } else {
        vec!["systemctl", "stop", UNIT]
    };
    Step::Run(Run {
        argv: argv.into_iter().map(String::from).collect(),
        unless: None,
        why: why.into(),
    })
}

struct Builder<'a, 'b> {
    members: &'b [MemberHost<'a>],
    tls: &'b EtcdClientFiles,
    out: Vec<SequencedStep>,
}

impl Builder<'_, '_> {
    fn member(&self, name: &str) -> Option<&MemberHost<'_>> {
        self.members.iter().find(|m| m.host.name == name)
    }

    fn push(&mut self, host: &str, step: Step) {
        self.out.push(SequencedStep { host: host.to_string(), step });
    }

    fn op(&self, action: EtcdAction, why: String) -> Step {
        Step::etcd(action, self.tls, why)
    }

    /// A health gate over the listed members that kubeforge can reach.
    fn gate(&mut self, names: &[String], why: &str) {
        // In spec order, so the plan does not depend on etcd's member ids.
        let reachable: Vec<String> = self
            .members
            .iter()
            .map(|m| m.host.name.clone())
            .filter(|n| names.contains(n))
            .collect();
        let Some(first) = reachable.first().cloned() else { return };
        let action = EtcdAction::HealthGate { members: reachable, timeout_ms: GATE_TIMEOUT_MS };
        let step = self.op(action, why.to_string());
        self.push(&first, step);
    }
}

/// The facts of a host that left the spec (gathered at its last applied address), if any.
fn departed_facts<'a>(input: PlanInput<'a>, name: &str) -> Option<&'a HostFacts> {
    if input.cluster.host(name).is_some() {
        return None;
    }
    let (_, host) = input.applied?.hosts_and_departed().find(|(n, _)| *n == name)?;
    if super::super::departed_address_reused(input.cluster, host) {
        return None;
    }
    input.facts.get(name)?.as_ref().ok()
}

pub(crate) fn plan(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
    members: &[MemberHost<'_>],
    installs: &[Install],
    membership: &[Membership],
    current: &[CurrentMember],
    tls: &EtcdClientFiles,
) -> Result<Vec<SequencedStep>, EtcdPlanError> {
    let mut b = Builder { members, tls, out: Vec::new() };
    // Every member by the name the plan uses (its spec host when it has one).
    let listed_names: Vec<String> =
        super::host::listed_initial_cluster(input, current).into_iter().map(|(n, _)| n).collect();
    // A healthy voter that stays, to send membership changes to.
    let via = members
        .iter()
        .find(|m| m.listed.is_some_and(|c| c.healthy && !c.is_learner))
        .map(|m| m.host.name.clone());
    let needs_via = membership.iter().any(|s| {
        matches!(
            s,
            Membership::AddLearner { .. } | Membership::Promote { .. } | Membership::Remove { .. }
        )
    });
    let via = match (via, needs_via) {
        (Some(v), _) => v,
        (None, false) => String::new(),
        (None, true) => {
            let members = current
                .iter()
                .map(|c| {
                    let state = match (c.healthy, c.is_learner) {
                        (true, false) => "healthy",
                        (true, true) => "healthy learner",
                        (false, _) => "unhealthy",
                    };
                    format!("{} {state}", if c.name.is_empty() { "(unstarted)" } else { &c.name })
                })
                .collect();
            return Err(EtcdPlanError::NoMemberToReach { members });
        }
    };

    for install in installs.iter() {
        let Some(why) = &install.restart else { continue };
        b.push(
            &install.host,
            Step::Unit(UnitStep {
                unit: UNIT.into(),
                action: UnitAction::Restart,
                why: format!("{why}; one member at a time"),
            }),
        );
        b.gate(&listed_names, "the restarted member is back before the next one restarts");
    }

    let mut removed: BTreeMap<String, u64> = BTreeMap::new();
    for step in membership {
        match step {
            Membership::Bootstrap { .. } => {}
            Membership::HealthGate { members } => {
                b.gate(members, "every member answers before the next change");
            }
            Membership::AddLearner { name, peer_url } => {
                let action =
                    EtcdAction::AddLearner { name: name.clone(), peer_url: peer_url.clone() };
                let why = format!("{name} joins as a learner: it does not vote until promoted");
                let op = b.op(action, why);
                b.push(&via, op);
            }
            Membership::StartExisting { name, initial_cluster } => {
                let Some(m) = b.member(name) else {
                    return Err(EtcdPlanError::MemberHostUnreachable { host: name.clone() });
                };
                let mut steps = Vec::new();
                if m.has_data && m.listed.is_none() {
                    steps.push(stop(false, "stale etcd data from an earlier membership"));
                    steps.push(move_data_aside(
                        "a member joins with an empty data dir; the old one is kept aside",
                    ));
                }
                steps.extend(bootstrap_file(input, m, initial_cluster, InitialState::Existing));
                steps.push(start_no_block(
                    "start the new member with initial-cluster-state=existing",
                ));
                let host = m.host.name.clone();
                for s in steps {
                    b.push(&host, s);
                }
            }
            Membership::Promote { name } => {
                let peer_url = b
                    .member(name)
                    .map(|m| m.peer_url.clone())
                    .or_else(|| {
                        current
                            .iter()
                            .find(|c| &c.name == name)
                            .and_then(|c| c.peer_urls.first().cloned())
                    })
                    .unwrap_or_default();
                let action = EtcdAction::Promote { name: name.clone(), peer_url };
                let op = b.op(action, format!("{name} has caught up: it becomes a voting member"));
                b.push(&via, op);
            }
            Membership::Remove { name, id } => {
                let old = current.iter().find(|c| c.id == *id);
                let old_url = old.and_then(|c| c.peer_urls.first()).cloned().unwrap_or_default();
                let replaced = b.member(name).is_some_and(|m| m.peer_url != old_url);
                let why = if replaced {
                    format!(
                        "{name}'s member at {old_url} does not answer and the spec gives {name} \
                         a new machine: the dead member goes first, then the new machine joins"
                    )
                } else if input.cluster.host(name).is_some() {
                    format!("{name} is no longer an etcd member in the spec")
                } else if departed_facts(input, name).is_some() {
                    format!(
                        "{name} is no longer in the spec; once removed, its etcd is stopped and \
                         its data moved aside"
                    )
                } else {
                    format!(
                        "{name} is no longer in the spec; its etcd stops once removed. kubeforge \
                         cannot reach it: run `systemctl disable --now etcd` there and move \
                         /var/lib/etcd aside before reusing the machine"
                    )
                };
                // A voter may lead: leadership goes to a member that stays first.
                if old.is_some_and(|c| !c.is_learner) {
                    let action = EtcdAction::MoveLeader { name: name.clone(), id: *id };
                    let why = format!(
                        "should {name} lead, {via} takes over first: removing the leader itself \
                         leaves etcd without one until an election, and can lose the removal's \
                         answer"
                    );
                    let op = b.op(action, why);
                    b.push(&via, op);
                }
                let action = EtcdAction::Remove { name: name.clone(), id: *id };
                let op = b.op(action, why);
                b.push(&via, op);
                removed.insert(name.clone(), *id);
            }
            Membership::Decommission { name } => {
                // A spec host under this name that is not the removed member is the new
                // machine replacing it: nothing of the old member is there.
                let replacement = b
                    .member(name)
                    .is_some_and(|m| m.listed.map(|l| l.id) != removed.get(name).copied());
                let reachable =
                    ready.contains_key(name.as_str()) || departed_facts(input, name).is_some();
                if reachable && !replacement {
                    b.push(name, stop(true, "no longer an etcd member"));
                    b.push(
                        name,
                        move_data_aside("the removed member's data is kept aside, not deleted"),
                    );
                }
            }
        }
    }

    let gated = b.out.iter().any(
        |s| matches!(&s.step, Step::Etcd(op) if matches!(op.action, EtcdAction::HealthGate { .. })),
    );
    if !gated && installs.iter().any(|i| i.started) {
        let names: Vec<String> = if listed_names.is_empty() {
            members.iter().map(|m| m.host.name.clone()).collect()
        } else {
            listed_names
        };
        b.gate(&names, "the started members answer");
    }
    // Every member now runs with the files this run left: record what each one loaded, so an
    // interrupted run's next plan knows which members still run with older files.
    if !b.out.is_empty() || installs.iter().any(|i| i.started) {
        for install in installs {
            if let Some(record) = &install.record {
                b.push(&install.host, record.clone());
            }
        }
    }
    Ok(b.out)
}
