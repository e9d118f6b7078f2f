//! `workers`: the kubelet and its config on the other nodes, then their Ready state.
//! Pure: decides steps from the render tree and the host's facts; does no I/O.

use super::PlanInput;
use super::types::Step;
use crate::facts::HostFacts;
use crate::model::Host;

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let _ = (input, host, facts);
    Vec::new()
}
