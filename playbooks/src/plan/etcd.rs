//! `etcd`: the etcd user, binaries and unit on every member (in parallel), then, one step at a
//! time, what changes the cluster: member starts, membership changes from
//! `crate::etcd_membership` (learner joins, removals) and the health gates between them.
//! Pure: decides from the render tree, the facts and what `Observed` says etcd reports.
//!
//! The `--initial-cluster*` settings live in a bootstrap environment file
//! (`render::configs::etcd::BOOTSTRAP_ENV`) written only while a member has no data: all
//! members of a new cluster get state `new` and start together; a joining member gets state
//! `existing` with the member list at its join, right before it starts. Once a member has
//! data the file is never diffed again, so a converged cluster plans nothing.

mod host;
mod sequence;

pub(crate) use sequence::move_data_aside;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use super::types::{EtcdClientFiles, SequencedStep, Step};
use super::{Phase, PlanInput};
use crate::etcd_membership::{self, DesiredMember, MembershipError};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, Host};
use crate::render::configs::etcd as unit;

/// How long a health gate waits for every member.
pub(crate) const GATE_TIMEOUT_MS: u64 = 120_000;
/// Where etcd's binaries are installed.
pub(crate) const BIN_DIR: &str = crate::node::BIN_DIR;
/// The etcd binaries pushed from the artifact source; only `etcd` itself is required
/// (etcd 3.4 has no `etcdutl`).
pub(crate) const BINARIES: [&str; 3] = ["etcd", "etcdctl", "etcdutl"];
/// TLS files the unit loads; the pki phase puts them.
pub(crate) const PKI_FILES: [&str; 5] = [
    "/etc/kubernetes/pki/etcd/ca.crt",
    "/etc/kubernetes/pki/etcd/server.crt",
    "/etc/kubernetes/pki/etcd/server.key",
    "/etc/kubernetes/pki/etcd/peer.crt",
    "/etc/kubernetes/pki/etcd/peer.key",
];

/// Why the etcd phase cannot be planned. Each message says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdPlanError {
    #[error("etcd membership change refused: {0}")]
    Membership(#[from] MembershipError),
    #[error(
        "etcd member {host} lacks {}; the pki phase puts them: apply without skipping `pki` \
         (or put them there), then apply again",
        paths.join(", ")
    )]
    MissingPki { host: String, paths: Vec<String> },
    #[error(
        "etcd member {host} has no {BIN_DIR}/etcd and the artifact source offers no `etcd` \
         binary; check the spec's `artifacts.source` (a `dir:` source needs \
         etcd/<version>/etcd), then plan again"
    )]
    MissingBinary { host: String },
    #[error(
        "etcd member {host} must start now, but it is unreachable or blocked (see above); \
         fix it, then apply again"
    )]
    MemberHostUnreachable { host: String },
    #[error(
        "etcd data exists on {} ({}) but no etcd member list was read; kubeforge does not \
         start a new cluster over existing data: start etcd on those hosts (systemctl start \
         etcd), then plan again",
        hosts.join(", "), unit::MEMBER_DIR
    )]
    DataWithoutCluster { hosts: Vec<String> },
    #[error(
        "no healthy etcd member that the spec keeps is reachable over SSH to carry out the \
         membership change (members as observed: {}); bring one back, then apply again",
        members.join(", ")
    )]
    NoMemberToReach { members: Vec<String> },
}

/// The etcd phase: per-host parallel steps, then the ordered sequence.
#[derive(Debug, Default)]
pub(crate) struct EtcdPhase {
    pub hosts: BTreeMap<String, Vec<Step>>,
    pub sequence: Vec<SequencedStep>,
}

/// The extra facts the phase needs from a member host: whether etcd has data, the bootstrap
/// file and the installed binaries' digests.
pub(crate) fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    super::backup::extend_request(cluster, host, request);
    if !cluster.etcd_members().any(|h| h.name == host) {
        return;
    }
    request.paths_exist.insert(unit::MEMBER_DIR.to_string());
    request.hash_files.insert(unit::BOOTSTRAP_ENV.to_string());
    request.read_files.insert(unit::BOOTSTRAP_ENV.to_string());
    for name in BINARIES {
        request.hash_files.insert(format!("{BIN_DIR}/{name}"));
    }
}

/// One member host as the plan sees it.
pub(crate) struct MemberHost<'a> {
    pub host: &'a Host,
    pub facts: &'a HostFacts,
    pub peer_url: String,
    /// etcd has data on the host (it has started at least once).
    pub has_data: bool,
    pub active: bool,
    /// The member-list entry with this host's peer URL.
    pub listed: Option<&'a etcd_membership::CurrentMember>,
    /// A control plane's stacked member during a switch to external (`super::topology`): kept
    /// while the new members join, neither installed nor restarted here, removed at the end.
    pub retiring: bool,
}

pub(crate) fn plan_phase(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
    retiring: &[&Host],
) -> Result<EtcdPhase, EtcdPlanError> {
    let cluster = input.cluster;
    let mut members: Vec<&Host> = cluster.etcd_members().collect();
    if members.is_empty() {
        return Ok(EtcdPhase::default());
    }
    // A switch to external: the stacked members stay wanted (after the spec's, so the spec's
    // first member's client certificate is used) until `super::topology::retire`.
    members.extend(retiring.iter().copied());
    let is_retiring = |h: &Host| retiring.iter().any(|r| r.name == h.name);
    let tls = EtcdClientFiles::for_member(&input.observed.local_pki_dir, &members[0].name);
    let current: &[etcd_membership::CurrentMember] =
        input.observed.etcd.as_ref().map(|o| o.members.as_slice()).unwrap_or_default();
    let member_hosts: Vec<MemberHost<'_>> = members
        .iter()
        .filter_map(|h| {
            let facts = ready.get(h.name.as_str())?;
            let peer_url = unit::peer_url(h.address);
            Some(MemberHost {
                host: h,
                facts,
                has_data: facts.paths_exist.get(unit::MEMBER_DIR) == Some(&true),
                active: facts.units.get(host::UNIT).is_some_and(|u| u.is_active()),
                listed: current.iter().find(|c| c.peer_urls.contains(&peer_url)),
                retiring: is_retiring(h),
                peer_url,
            })
        })
        .collect();

    if !input.selection.contains(Phase::Pki) {
        for m in member_hosts.iter().filter(|m| !m.retiring) {
            let missing: Vec<String> = PKI_FILES
                .iter()
                .filter(|p| m.facts.files.get(**p).and_then(|f| f.sha256()).is_none())
                .map(|p| p.to_string())
                .collect();
            if !missing.is_empty() {
                return Err(EtcdPlanError::MissingPki {
                    host: m.host.name.clone(),
                    paths: missing,
                });
            }
        }
    }

    // The membership etcd should reach. A new member that cannot be planned now joins on a
    // later apply; a member etcd already has stays wanted even while unreachable.
    let desired: Vec<DesiredMember> = members
        .iter()
        .map(|h| DesiredMember { name: h.name.clone(), peer_url: unit::peer_url(h.address) })
        .filter(|d| {
            current.iter().any(|c| c.peer_urls.contains(&d.peer_url))
                || member_hosts.iter().any(|m| m.host.name == d.name)
        })
        .collect();
    if current.is_empty() {
        let with_data: Vec<String> =
            member_hosts.iter().filter(|m| m.has_data).map(|m| m.host.name.clone()).collect();
        if !with_data.is_empty() {
            return Err(EtcdPlanError::DataWithoutCluster { hosts: with_data });
        }
    }
    // A new cluster starts all its members together: while one of them is blocked (listed
    // with its problem), the others are only installed.
    let all_ready = members.iter().all(|h| member_hosts.iter().any(|m| m.host.name == h.name));
    if current.is_empty() && !all_ready {
        let mut phase = EtcdPhase::default();
        for m in &member_hosts {
            let install = host::install(input, m, &[], current)?;
            if !install.steps.is_empty() {
                phase.hosts.insert(m.host.name.clone(), install.steps);
            }
        }
        return Ok(phase);
    }
    let membership = match etcd_membership::plan_membership(current, &desired) {
        Ok(steps) => steps,
        // Without quorum no membership changes; but when every unhealthy voter is a member
        // this plan starts (stopped, or never started), starting them is the way back.
        Err(MembershipError::NoQuorum { .. })
            if current.iter().filter(|c| !c.is_learner && !c.healthy).all(|c| {
                member_hosts.iter().any(|m| !m.active && m.listed.is_some_and(|l| l.id == c.id))
            }) =>
        {
            Vec::new()
        }
        Err(e) => return Err(e.into()),
    };

    let mut phase = EtcdPhase::default();
    let mut installs = Vec::new();
    for m in member_hosts.iter().filter(|m| !m.retiring) {
        let install = host::install(input, m, &membership, current)?;
        if !install.steps.is_empty() {
            phase.hosts.insert(m.host.name.clone(), install.steps.clone());
        }
        installs.push(install);
    }
    phase.sequence =
        sequence::plan(input, ready, &member_hosts, &installs, &membership, current, &tls)?;
    super::backup::add_steps(input, ready, &mut phase.hosts);
    Ok(phase)
}
