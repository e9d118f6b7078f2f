//! `etcd`: the etcd user, data dir, binaries and unit on every member, then the membership
//! changes (`crate::etcd_membership`) that reach the spec's member set without losing quorum.
//! Pure: decides from the render tree, the facts and what `Observed` says etcd reports.

use std::collections::BTreeMap;

use super::types::Step;
use super::{PlanError, PlanInput};
use crate::facts::HostFacts;

/// Per host, the etcd phase's steps.
pub(crate) fn plan_phase(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
) -> Result<BTreeMap<String, Vec<Step>>, PlanError> {
    let _ = (input, ready);
    Ok(BTreeMap::new())
}
