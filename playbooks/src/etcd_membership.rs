//! etcd membership planning: from the members etcd reports and the members the spec wants,
//! the ordered list of membership changes that gets there without ever losing quorum. Pure:
//! the `cli` crate reads the member list (`cli::etcd`) and runs the returned steps; the health
//! gates between steps are part of the returned list, not the executor's choice.
//!
//! Rules (each refusal explains itself):
//! * A new cluster (no current members) starts all desired members together with
//!   `--initial-cluster-state=new`.
//! * The current cluster must have quorum (healthy voting members ≥ ⌊n/2⌋+1) before any change.
//! * Unhealthy members that the spec drops are removed first: that only lowers the quorum size.
//! * New members join one at a time: `member add --learner` → start etcd on the host with
//!   `--initial-cluster-state=existing` → health gate → `member promote` → health gate. A
//!   learner does not vote, so adding it cannot cost quorum; etcd allows one learner at a time.
//! * Healthy members that the spec drops are removed last, one at a time, each before its host
//!   is torn down ([`Step::Decommission`] follows its [`Step::Remove`]).
//! * A member that does not answer and whose name the spec gives a new address (a dead machine
//!   replaced by a new one under the same name) is an unhealthy member the spec drops plus a
//!   new member: removed first, then the new machine joins as a learner. A member that still
//!   answers is never moved to another address (refused, with the way to do it).
//! * One apply removes at most `max(1, n - quorum(n))` of the `n` current voting members, so
//!   the members that stay always form a majority of the cluster they came from; removing 2 of
//!   3 at once is refused (remove one per apply).
//! * Every plan is simulated step by step; a step after which healthy voters < quorum is
//!   refused (a safety net the rules above should make unreachable).

use std::collections::BTreeSet;
use std::fmt;

/// A member as etcd's member list reports it, plus the health kubeforge measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentMember {
    /// Empty for a member that was added but has not started yet (etcd reports no name).
    pub name: String,
    pub id: u64,
    pub peer_urls: Vec<String>,
    pub is_learner: bool,
    /// Answered a status/linearizable read within the health timeout.
    pub healthy: bool,
}

/// A member the spec wants: its host name (the etcd member name) and peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredMember {
    pub name: String,
    pub peer_url: String,
}

/// `name=peer_url` pairs, in order, as `--initial-cluster` wants them.
pub type InitialCluster = Vec<(String, String)>;

/// One membership operation, in execution order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Start every listed member together with `--initial-cluster-state=new`.
    Bootstrap { initial_cluster: InitialCluster },
    /// `member add --learner` with this peer URL.
    AddLearner { name: String, peer_url: String },
    /// Start etcd on the member's host with `--initial-cluster-state=existing`.
    StartExisting { name: String, initial_cluster: InitialCluster },
    /// `member promote`; retried by the executor while the learner catches up.
    Promote { name: String },
    /// `member remove`, before the host is touched.
    Remove { name: String, id: u64 },
    /// The host is no longer a member: its etcd may be stopped and its data dir wiped.
    Decommission { name: String },
    /// Every listed member must answer (status on each) before the next step.
    HealthGate { members: Vec<String> },
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names =
            |ic: &InitialCluster| ic.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(",");
        match self {
            Step::Bootstrap { initial_cluster } => {
                write!(f, "bootstrap new cluster {}", names(initial_cluster))
            }
            Step::AddLearner { name, peer_url } => write!(f, "add {name} ({peer_url}) as learner"),
            Step::StartExisting { name, .. } => {
                write!(f, "start {name} with initial-cluster-state=existing")
            }
            Step::Promote { name } => write!(f, "promote {name}"),
            Step::Remove { name, id } => write!(f, "remove member {name} ({id:x})"),
            Step::Decommission { name } => write!(f, "decommission {name}"),
            Step::HealthGate { members } => {
                write!(f, "wait until {} are healthy", members.join(","))
            }
        }
    }
}

/// Why a membership change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("the spec has no etcd members; a cluster needs at least one")]
    NoDesiredMembers,
    #[error("etcd member {name} appears twice in the spec")]
    DuplicateDesired { name: String },
    #[error(
        "etcd has no quorum: {healthy} of {voting} voting members are healthy, {needed} are needed \
         (unhealthy: {}). kubeforge changes no membership without quorum; bring the unhealthy \
         members back (or restore from a snapshot) and apply again",
        unhealthy.join(", ")
    )]
    NoQuorum { healthy: usize, voting: usize, needed: usize, unhealthy: Vec<String> },
    #[error(
        "removing {} of {voting} etcd members in one apply ({}) is refused: at most {max} may be \
         removed at once so that the members that stay are a majority of the current cluster; \
         remove {max} per apply",
        removing.len(),
        removing.join(", ")
    )]
    TooManyRemovals { removing: Vec<String>, voting: usize, max: usize },
    #[error(
        "etcd member {name} has peer URL {current} but the spec wants {desired}, and the member \
         at {current} still answers; kubeforge replaces only a member that is gone (its machine \
         powered off for good). To move a running member: remove the host from the spec, apply, \
         then add it back with its new address"
    )]
    PeerUrlChanged { name: String, current: String, desired: String },
    #[error(
        "after this change only {healthy} of {voting} etcd members would be healthy, below quorum \
         {needed} (unhealthy members the spec keeps: {}); bring them back, then apply again",
        unhealthy.join(", ")
    )]
    UnhealthyMajorityAfterChange {
        healthy: usize,
        voting: usize,
        needed: usize,
        unhealthy: Vec<String>,
    },
    #[error(
        "step \"{step}\" would leave {healthy} of {voting} voting members healthy, below quorum \
         {needed}; refused"
    )]
    StepLosesQuorum { step: String, healthy: usize, voting: usize, needed: usize },
}

/// Votes needed for a decision among `voting` members.
pub fn quorum(voting: usize) -> usize {
    voting / 2 + 1
}

/// The membership as the simulation sees it between steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimMember {
    pub name: String,
    pub peer_url: String,
    pub learner: bool,
    pub started: bool,
    pub healthy: bool,
}

/// Healthy voters, voters, quorum.
pub fn vote_counts(members: &[SimMember]) -> (usize, usize, usize) {
    let voting = members.iter().filter(|m| !m.learner).count();
    let healthy = members.iter().filter(|m| !m.learner && m.healthy).count();
    (healthy, voting, quorum(voting))
}

/// Applies one step to a simulated membership (a started member is assumed healthy: the
/// health gate that follows every start checks exactly that).
pub fn apply_step(members: &mut Vec<SimMember>, step: &Step) {
    match step {
        Step::Bootstrap { initial_cluster } => {
            *members = initial_cluster
                .iter()
                .map(|(n, u)| SimMember {
                    name: n.clone(),
                    peer_url: u.clone(),
                    learner: false,
                    started: true,
                    healthy: true,
                })
                .collect();
        }
        Step::AddLearner { name, peer_url } => members.push(SimMember {
            name: name.clone(),
            peer_url: peer_url.clone(),
            learner: true,
            started: false,
            healthy: false,
        }),
        Step::StartExisting { name, .. } => {
            if let Some(m) = members.iter_mut().find(|m| &m.name == name) {
                m.started = true;
                m.healthy = true;
            }
        }
        Step::Promote { name } => {
            if let Some(m) = members.iter_mut().find(|m| &m.name == name) {
                m.learner = false;
            }
        }
        Step::Remove { name, .. } => members.retain(|m| &m.name != name),
        Step::Decommission { .. } | Step::HealthGate { .. } => {}
    }
}

fn initial_cluster(members: &[SimMember]) -> InitialCluster {
    members
        .iter()
        .filter(|m| !m.name.is_empty())
        .map(|m| (m.name.clone(), m.peer_url.clone()))
        .collect()
}

fn all_names(members: &[SimMember]) -> Vec<String> {
    members.iter().map(|m| m.name.clone()).collect()
}

/// Plans the membership changes from `current` to `desired`.
pub fn plan_membership(
    current: &[CurrentMember],
    desired: &[DesiredMember],
) -> Result<Vec<Step>, MembershipError> {
    if desired.is_empty() {
        return Err(MembershipError::NoDesiredMembers);
    }
    let mut seen = BTreeSet::new();
    for d in desired {
        if !seen.insert(d.name.as_str()) {
            return Err(MembershipError::DuplicateDesired { name: d.name.clone() });
        }
    }
    if current.is_empty() {
        let initial_cluster =
            desired.iter().map(|d| (d.name.clone(), d.peer_url.clone())).collect();
        return Ok(vec![
            Step::Bootstrap { initial_cluster },
            Step::HealthGate { members: desired.iter().map(|d| d.name.clone()).collect() },
        ]);
    }

    // Pair each current member with the desired member it is (same peer URL, else same name).
    // A member that does not answer and whose name the spec gives another address is a dead
    // machine being replaced: it pairs with nothing, so it is removed (costing no vote) before
    // the new machine joins under its name as a learner.
    let desired_of = |c: &CurrentMember| -> Option<&DesiredMember> {
        desired.iter().find(|d| c.peer_urls.contains(&d.peer_url)).or_else(|| {
            desired.iter().find(|d| !c.name.is_empty() && d.name == c.name && c.healthy)
        })
    };
    for c in current {
        if let Some(d) = desired_of(c)
            && !c.peer_urls.contains(&d.peer_url)
        {
            return Err(MembershipError::PeerUrlChanged {
                name: d.name.clone(),
                current: c.peer_urls.join(","),
                desired: d.peer_url.clone(),
            });
        }
    }
    let label = |c: &CurrentMember| {
        if c.name.is_empty() { format!("{:x}", c.id) } else { c.name.clone() }
    };

    let voters: Vec<&CurrentMember> = current.iter().filter(|c| !c.is_learner).collect();
    let healthy = voters.iter().filter(|c| c.healthy).count();
    if healthy < quorum(voters.len()) {
        return Err(MembershipError::NoQuorum {
            healthy,
            voting: voters.len(),
            needed: quorum(voters.len()),
            unhealthy: voters.iter().filter(|c| !c.healthy).map(|c| label(c)).collect(),
        });
    }
    let removed_voters: Vec<&CurrentMember> =
        voters.iter().copied().filter(|c| desired_of(c).is_none()).collect();
    let max_removals = 1.max(voters.len() - quorum(voters.len()));
    if removed_voters.len() > max_removals {
        return Err(MembershipError::TooManyRemovals {
            removing: removed_voters.iter().map(|c| label(c)).collect(),
            voting: voters.len(),
            max: max_removals,
        });
    }

    // The cluster after the change: kept voters with their health, new members assumed healthy.
    let kept_unhealthy: Vec<String> = current
        .iter()
        .filter(|c| !c.healthy && desired_of(c).is_some() && !c.is_learner)
        .map(&label)
        .collect();
    let final_voting = desired.len();
    let final_healthy = final_voting - kept_unhealthy.len();
    if final_healthy < quorum(final_voting) {
        return Err(MembershipError::UnhealthyMajorityAfterChange {
            healthy: final_healthy,
            voting: final_voting,
            needed: quorum(final_voting),
            unhealthy: kept_unhealthy,
        });
    }

    let mut sim: Vec<SimMember> = current
        .iter()
        .map(|c| SimMember {
            name: desired_of(c).map(|d| d.name.clone()).unwrap_or_else(|| label(c)),
            peer_url: c.peer_urls.first().cloned().unwrap_or_default(),
            learner: c.is_learner,
            started: !c.name.is_empty(),
            healthy: c.healthy,
        })
        .collect();
    let mut steps = Vec::new();
    let remove = |c: &CurrentMember, name: String| {
        [Step::Remove { name: name.clone(), id: c.id }, Step::Decommission { name }]
    };

    // 1. Learners the spec drops, and unhealthy voters it drops: removing them costs no vote.
    for c in current.iter().filter(|c| desired_of(c).is_none() && (c.is_learner || !c.healthy)) {
        for step in remove(c, label(c)) {
            push(&mut sim, &mut steps, step)?;
        }
    }
    if !steps.is_empty() {
        gate(&mut sim, &mut steps)?;
    }
    // 2. Learners the spec keeps: finish their join (start if needed, then promote).
    for c in current.iter().filter(|c| c.is_learner) {
        let Some(d) = desired_of(c) else { continue };
        if c.name.is_empty() {
            let ic = initial_cluster(&sim);
            push(
                &mut sim,
                &mut steps,
                Step::StartExisting { name: d.name.clone(), initial_cluster: ic },
            )?;
            gate(&mut sim, &mut steps)?;
        }
        push(&mut sim, &mut steps, Step::Promote { name: d.name.clone() })?;
        gate(&mut sim, &mut steps)?;
    }
    // 3. New members, one at a time, in spec order.
    for d in desired.iter().filter(|d| !current.iter().any(|c| desired_of(c) == Some(*d))) {
        push(
            &mut sim,
            &mut steps,
            Step::AddLearner { name: d.name.clone(), peer_url: d.peer_url.clone() },
        )?;
        let ic = initial_cluster(&sim);
        push(
            &mut sim,
            &mut steps,
            Step::StartExisting { name: d.name.clone(), initial_cluster: ic },
        )?;
        gate(&mut sim, &mut steps)?;
        push(&mut sim, &mut steps, Step::Promote { name: d.name.clone() })?;
        gate(&mut sim, &mut steps)?;
    }
    // 4. Healthy voters the spec drops, one at a time, each before its host is torn down.
    for c in current.iter().filter(|c| desired_of(c).is_none() && !c.is_learner && c.healthy) {
        for step in remove(c, label(c)) {
            push(&mut sim, &mut steps, step)?;
        }
        gate(&mut sim, &mut steps)?;
    }
    Ok(steps)
}

/// A health gate over every current member.
fn gate(sim: &mut Vec<SimMember>, steps: &mut Vec<Step>) -> Result<(), MembershipError> {
    let members = all_names(sim);
    push(sim, steps, Step::HealthGate { members })
}

/// Applies `step` to the simulation and records it, refusing it if it leaves no quorum.
fn push(
    sim: &mut Vec<SimMember>,
    steps: &mut Vec<Step>,
    step: Step,
) -> Result<(), MembershipError> {
    apply_step(sim, &step);
    let (healthy, voting, needed) = vote_counts(sim);
    if healthy < needed {
        return Err(MembershipError::StepLosesQuorum {
            step: step.to_string(),
            healthy,
            voting,
            needed,
        });
    }
    steps.push(step);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(i: usize) -> String {
        format!("https://10.0.0.{i}:2380")
    }
    fn voter(i: usize, healthy: bool) -> CurrentMember {
        CurrentMember {
            name: format!("m{i}"),
            id: 0x100 + i as u64,
            peer_urls: vec![url(i)],
            is_learner: false,
            healthy,
        }
    }
    fn want(i: usize) -> DesiredMember {
        DesiredMember { name: format!("m{i}"), peer_url: url(i) }
    }
    fn names(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.to_string()).collect()
    }

    /// Checks a plan against the invariants, by simulation from `current`.
    fn check_plan(current: &[CurrentMember], desired: &[DesiredMember], steps: &[Step]) {
        let mut sim: Vec<SimMember> = current
            .iter()
            .map(|c| SimMember {
                name: if c.name.is_empty() { format!("{:x}", c.id) } else { c.name.clone() },
                peer_url: c.peer_urls[0].clone(),
                learner: c.is_learner,
                started: !c.name.is_empty(),
                healthy: c.healthy,
            })
            .collect();
        // Unstarted learners carry no name in etcd; the plan names them after the spec.
        for (m, c) in sim.iter_mut().zip(current) {
            if let Some(d) = desired.iter().find(|d| c.peer_urls.contains(&d.peer_url)) {
                m.name = d.name.clone();
            }
        }
        for (i, step) in steps.iter().enumerate() {
            apply_step(&mut sim, step);
            let (healthy, _, needed) = vote_counts(&sim);
            assert!(healthy >= needed, "quorum lost after step {i} {step}: {steps:#?}");
            assert!(sim.iter().filter(|m| m.learner).count() <= 1, "two learners at step {i}");
            match step {
                Step::Remove { name, .. } => {
                    assert_eq!(steps.get(i + 1), Some(&Step::Decommission { name: name.clone() }))
                }
                Step::Promote { name } => {
                    let m = sim.iter().find(|m| &m.name == name).unwrap();
                    assert!(m.started, "{name} promoted before it started");
                }
                Step::StartExisting { name, initial_cluster } => {
                    assert!(initial_cluster.iter().any(|(n, _)| n == name));
                    assert_eq!(initial_cluster.len(), sim.len());
                }
                _ => {}
            }
        }
        let mut got: Vec<_> = sim.iter().map(|m| (m.name.clone(), m.peer_url.clone())).collect();
        let mut wanted: Vec<_> =
            desired.iter().map(|d| (d.name.clone(), d.peer_url.clone())).collect();
        got.sort();
        wanted.sort();
        assert_eq!(got, wanted, "final membership differs: {steps:#?}");
        assert!(sim.iter().all(|m| !m.learner), "a learner was left unpromoted");
    }

    #[test]
    fn new_cluster_bootstraps_all_members_together() {
        let steps = plan_membership(&[], &[want(1), want(2), want(3)]).unwrap();
        assert_eq!(
            steps[0],
            Step::Bootstrap {
                initial_cluster: vec![
                    ("m1".into(), url(1)),
                    ("m2".into(), url(2)),
                    ("m3".into(), url(3))
                ]
            }
        );
        assert_eq!(steps.len(), 2);
    }

    #[test]
    fn unchanged_cluster_needs_no_steps() {
        let current = [voter(1, true), voter(2, true), voter(3, true)];
        assert_eq!(plan_membership(&current, &[want(1), want(2), want(3)]).unwrap(), []);
    }

    #[test]
    fn scale_out_adds_learners_one_at_a_time() {
        let current = [voter(1, true), voter(2, true), voter(3, true)];
        let desired = [want(1), want(2), want(3), want(4), want(5)];
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(
            names(&steps),
            [
                "add m4 (https://10.0.0.4:2380) as learner",
                "start m4 with initial-cluster-state=existing",
                "wait until m1,m2,m3,m4 are healthy",
                "promote m4",
                "wait until m1,m2,m3,m4 are healthy",
                "add m5 (https://10.0.0.5:2380) as learner",
                "start m5 with initial-cluster-state=existing",
                "wait until m1,m2,m3,m4,m5 are healthy",
                "promote m5",
                "wait until m1,m2,m3,m4,m5 are healthy",
            ]
        );
        check_plan(&current, &desired, &steps);
    }

    #[test]
    fn scale_in_removes_each_member_before_its_host_is_torn_down() {
        let current =
            [voter(1, true), voter(2, true), voter(3, true), voter(4, true), voter(5, true)];
        let desired = [want(1), want(2), want(3)];
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(
            names(&steps),
            [
                "remove member m4 (104)",
                "decommission m4",
                "wait until m1,m2,m3,m5 are healthy",
                "remove member m5 (105)",
                "decommission m5",
                "wait until m1,m2,m3 are healthy",
            ]
        );
    }

    #[test]
    fn removing_two_of_three_at_once_is_refused_with_the_reason() {
        let current = [voter(1, true), voter(2, true), voter(3, true)];
        let err = plan_membership(&current, &[want(1)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "removing 2 of 3 etcd members in one apply (m2, m3) is refused: at most 1 may be removed \
             at once so that the members that stay are a majority of the current cluster; remove 1 \
             per apply"
        );
    }

    #[test]
    fn a_cluster_without_quorum_is_not_touched() {
        let current = [voter(1, true), voter(2, false), voter(3, false)];
        let err = plan_membership(&current, &[want(1), want(2), want(3), want(4)]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "etcd has no quorum: 1 of 3 voting members are healthy, 2 are needed (unhealthy: m2, m3). \
             kubeforge changes no membership without quorum; bring the unhealthy members back (or \
             restore from a snapshot) and apply again"
        );
    }

    #[test]
    fn a_dead_member_is_replaced_remove_first() {
        let current = [voter(1, true), voter(2, true), voter(3, false)];
        let desired = [want(1), want(2), want(4)];
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(steps[0], Step::Remove { name: "m3".into(), id: 0x103 });
        check_plan(&current, &desired, &steps);
    }

    #[test]
    fn a_healthy_member_is_replaced_add_first() {
        let current = [voter(1, true), voter(2, true), voter(3, true)];
        let desired = [want(1), want(2), want(4)];
        let steps = plan_membership(&current, &desired).unwrap();
        assert!(matches!(steps[0], Step::AddLearner { .. }));
        check_plan(&current, &desired, &steps);
    }

    #[test]
    fn an_interrupted_join_is_resumed() {
        // m4 was added as a learner but never started: etcd reports it without a name.
        let pending = CurrentMember {
            name: String::new(),
            id: 0x104,
            peer_urls: vec![url(4)],
            is_learner: true,
            healthy: false,
        };
        let current = [voter(1, true), voter(2, true), voter(3, true), pending];
        let desired = [want(1), want(2), want(3), want(4)];
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(names(&steps)[0], "start m4 with initial-cluster-state=existing");
        assert_eq!(names(&steps)[2], "promote m4");
        check_plan(&current, &desired, &steps);
    }

    #[test]
    fn moved_peer_urls_and_duplicates_are_refused() {
        let current = [voter(1, true)];
        let moved = DesiredMember { name: "m1".into(), peer_url: url(9) };
        assert!(matches!(
            plan_membership(&current, &[moved]),
            Err(MembershipError::PeerUrlChanged { .. })
        ));
        assert_eq!(
            plan_membership(&current, &[want(1), want(1)]),
            Err(MembershipError::DuplicateDesired { name: "m1".into() })
        );
        assert_eq!(plan_membership(&current, &[]), Err(MembershipError::NoDesiredMembers));
    }

    #[test]
    fn a_dead_member_given_a_new_address_is_removed_then_joins_anew_one_at_a_time() {
        // m3's machine died; the spec gives the name m3 a new machine (new address).
        let current = [voter(1, true), voter(2, true), voter(3, false)];
        let desired = [want(1), want(2), DesiredMember { name: "m3".into(), peer_url: url(9) }];
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(
            names(&steps),
            [
                "remove member m3 (103)",
                "decommission m3",
                "wait until m1,m2 are healthy",
                "add m3 (https://10.0.0.9:2380) as learner",
                "start m3 with initial-cluster-state=existing",
                "wait until m1,m2,m3 are healthy",
                "promote m3",
                "wait until m1,m2,m3 are healthy",
            ]
        );
        check_plan(&current, &desired, &steps);
        // Five members, the dead one among them: the same, and never two learners.
        let current: Vec<_> = (1..=5).map(|i| voter(i, i != 4)).collect();
        let mut desired: Vec<_> = (1..=5).map(want).collect();
        desired[3].peer_url = url(14);
        let steps = plan_membership(&current, &desired).unwrap();
        assert_eq!(steps[0], Step::Remove { name: "m4".into(), id: 0x104 });
        check_plan(&current, &desired, &steps);
    }

    #[test]
    fn a_member_that_still_answers_is_not_moved_to_a_new_address() {
        let current = [voter(1, true), voter(2, true), voter(3, true)];
        let desired = [want(1), want(2), DesiredMember { name: "m3".into(), peer_url: url(9) }];
        let err = plan_membership(&current, &desired).unwrap_err();
        assert!(matches!(err, MembershipError::PeerUrlChanged { .. }), "{err}");
        assert!(err.to_string().contains("still answers"), "{err}");
        // Replacing a dead member while another is down too would leave no quorum: refused.
        let current = [voter(1, true), voter(2, false), voter(3, false)];
        let desired = [want(1), want(2), DesiredMember { name: "m3".into(), peer_url: url(9) }];
        assert!(matches!(
            plan_membership(&current, &desired),
            Err(MembershipError::NoQuorum { .. })
        ));
    }

    /// Every cluster of 0..=7 members, every health pattern (by count, either end), every
    /// overlap with a desired set of 1..=7 members, with and without a pending learner: a plan
    /// is produced exactly when the rules allow it, and every plan keeps quorum after each step.
    #[test]
    fn exhaustive_small_clusters_keep_quorum_after_every_step() {
        let mut plans = 0;
        let mut refusals = 0;
        for n in 0..=7usize {
            for unhealthy in 0..=n {
                for unhealthy_at_end in [false, true] {
                    for learner in [None, Some(false), Some(true)] {
                        let mut current: Vec<CurrentMember> = (0..n)
                            .map(|i| {
                                let bad = if unhealthy_at_end {
                                    i >= n - unhealthy
                                } else {
                                    i < unhealthy
                                };
                                voter(i, !bad)
                            })
                            .collect();
                        if let Some(started) = learner {
                            if n == 0 {
                                continue;
                            }
                            current.push(CurrentMember {
                                name: if started { format!("m{}", 20) } else { String::new() },
                                id: 0x120,
                                peer_urls: vec![url(20)],
                                is_learner: true,
                                healthy: started,
                            });
                        }
                        for kept in 0..=n {
                            for keep_learner in [false, true] {
                                if keep_learner && learner.is_none() {
                                    continue;
                                }
                                for added in 0..=7usize {
                                    let mut desired: Vec<DesiredMember> =
                                        (0..kept).map(want).collect();
                                    if keep_learner {
                                        desired.push(DesiredMember {
                                            name: "m20".into(),
                                            peer_url: url(20),
                                        });
                                    }
                                    desired.extend((10..10 + added).map(want));
                                    if desired.is_empty() || desired.len() > 7 {
                                        continue;
                                    }
                                    let result = plan_membership(&current, &desired);
                                    // The oracle, computed from the rules independently.
                                    let voters: Vec<_> =
                                        current.iter().filter(|c| !c.is_learner).collect();
                                    let healthy = voters.iter().filter(|c| c.healthy).count();
                                    let removed = voters.len() - kept;
                                    let kept_bad =
                                        voters[..kept].iter().filter(|c| !c.healthy).count();
                                    let allowed = voters.is_empty()
                                        || (healthy >= quorum(voters.len())
                                            && removed
                                                <= 1.max(voters.len() - quorum(voters.len()))
                                            && desired.len() - kept_bad >= quorum(desired.len()));
                                    match result {
                                        Ok(steps) => {
                                            assert!(
                                                allowed,
                                                "planned but should refuse: {current:?} -> {desired:?}"
                                            );
                                            if current.is_empty() {
                                                assert!(matches!(steps[0], Step::Bootstrap { .. }));
                                            } else {
                                                check_plan(&current, &desired, &steps);
                                            }
                                            plans += 1;
                                        }
                                        Err(e) => {
                                            assert!(
                                                !allowed,
                                                "refused but allowed: {e}: {current:?} -> {desired:?}"
                                            );
                                            assert!(
                                                !matches!(
                                                    e,
                                                    MembershipError::StepLosesQuorum { .. }
                                                ),
                                                "{e}"
                                            );
                                            refusals += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(plans > 1000 && refusals > 100, "plans {plans}, refusals {refusals}");
    }
}
