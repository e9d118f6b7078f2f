//! What `cli` observed of the cluster as a whole before planning (beyond each host's facts):
//! for now, etcd's member list and each member's health. Plain data, filled by `cli`.

/// Cluster-wide observations. `Default` means nothing was observed (a fresh cluster, or a
/// phase selection that does not need it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {}
