//! `pki`: puts each host's certificates, keys and kubeconfigs from the render tree (only what that host needs).
//! Pure: decides steps from the render tree and the host's facts; does no I/O.

use super::PlanInput;
use super::types::Step;
use crate::facts::HostFacts;
use crate::model::Host;

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let _ = (input, host, facts);
    Vec::new()
}
