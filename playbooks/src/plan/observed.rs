//! What `cli` observed of the cluster as a whole before planning (beyond each host's facts):
//! etcd's member list with each member's measured health, and where the state dir's PKI is on
//! the operator's machine. Plain data, filled by `cli::observe`; the planner reads it and never
//! guesses what it lacks.

use std::collections::BTreeMap;

use crate::etcd_membership::CurrentMember;

/// Cluster-wide observations. `Default` means nothing was observed (a phase selection that
/// does not need it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// etcd as its members report it; `None` when no member host had etcd running or data
    /// (a new cluster). `cli` fails instead of leaving this `None` when members exist but
    /// none answers.
    pub etcd: Option<EtcdObserved>,
    /// The state dir's `pki/` folder on the operator's machine; etcd operations read their
    /// client certificate from there. Empty: paths stay relative to it (tests).
    pub local_pki_dir: String,
}

/// An existing etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdObserved {
    /// The host whose member answered the member list.
    pub answered_by: String,
    /// Every member in the member list, with `healthy` measured through each member host's
    /// own tunnel (false for members kubeforge cannot reach: not in the spec, or down).
    pub members: Vec<CurrentMember>,
    /// Spec host → what its member said of itself (`status`), for the members that answered
    /// through their own tunnel: the running etcd version and whether it leads.
    pub status: BTreeMap<String, MemberReport>,
}

/// One member's own `status`, as observed before planning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberReport {
    /// The etcd version the member runs (`3.4.23`).
    pub version: String,
    /// The member is the leader it reports.
    pub is_leader: bool,
}
