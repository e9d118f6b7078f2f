//! `addons`: the cluster's add-on manifests (under `/etc/kubernetes/addons/` on every control
//! plane) applied through the API, the add-on images imported on every kubelet host when the
//! artifact source has them, and, last, every node Ready (a node turns Ready only once the CNI
//! runs, which is why that gate is here and not in `workers`).
//!
//! One control plane applies: the first in spec order that answered the fact probe. A changed
//! manifest is first written to a staging directory, applied from there with `kubectl apply
//! --server-side`, and only then written to its own path; the files in `/etc/kubernetes/addons/`
//! are therefore a record of what was applied, and a failed apply is planned again on the next
//! run. The other control planes keep a copy (so an operator can re-apply from any of them).
//! Pure: decides from the tree and the facts; does no I/O.

use super::PlanInput;
use super::control_plane::{ADMIN_CONF, KUBECTL};
use super::files::{Wanted, put_file};
use super::loadbalancer::scratch_file;
use super::types::{FileReason, Gate, Run, Step};
use super::workers;
use crate::facts::HostFacts;
use crate::model::Host;

const ADDONS_DIR: &str = "/etc/kubernetes/addons/";
/// Changed manifests wait here until `kubectl apply` has accepted them.
pub(crate) const STAGING_DIR: &str = "/var/lib/kubeforge/addons-staging";
pub(crate) const IMAGES: [&str; 4] = ["kube-proxy", "coredns", "flannel", "flannel-cni-plugin"];

/// Whether the addons phase owns a render-tree path.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with(ADDONS_DIR)
}

/// The control plane that applies the add-ons: the first in spec order with facts.
pub(crate) fn applier<'a>(input: PlanInput<'a>) -> Option<&'a Host> {
    input.cluster.control_planes().find(|h| matches!(input.facts.get(&h.name), Some(Ok(_))))
}

fn kubectl(args: &[&str]) -> Vec<String> {
    [KUBECTL, "--kubeconfig", ADMIN_CONF].iter().chain(args).map(|a| a.to_string()).collect()
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let mut steps = Vec::new();
    if host.runs_kubelet() {
        workers::push_artifacts(input, facts, &[], false, &IMAGES, &mut steps);
    }
    let applies = applier(input).is_some_and(|a| a.name == host.name);
    let mut staged = Vec::new();
    let mut records = Vec::new();
    for (path, file) in input.tree.hosts.get(&host.name).into_iter().flatten() {
        if !owns(path) {
            continue;
        }
        let wanted =
            Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
        let Some(put) = put_file(&host.name, facts, wanted) else { continue };
        let content = !matches!(put.reason, FileReason::Metadata { .. });
        if applies && content {
            let name = path.trim_start_matches(ADDONS_DIR).replace('/', "_");
            let staging =
                scratch_file(&format!("{STAGING_DIR}/{name}"), &file.contents, file.secret);
            staged.push(Step::PutFile(staging));
        }
        records.push(Step::PutFile(put));
    }
    if !staged.is_empty() {
        steps.extend(staged);
        steps.push(Step::Run(Run {
            argv: kubectl(&[
                "apply",
                "--server-side",
                "--field-manager=kubeforge",
                "--force-conflicts",
                "-f",
                STAGING_DIR,
            ]),
            unless: None,
            why: "the add-on manifests changed".into(),
        }));
    }
    steps.extend(records);
    if steps.iter().any(|s| matches!(s, Step::Run(r) if r.argv.contains(&STAGING_DIR.to_string())))
    {
        steps.push(Step::Run(Run {
            argv: ["rm", "-rf", "--", STAGING_DIR].map(String::from).to_vec(),
            unless: None,
            why: "the applied manifests are recorded in /etc/kubernetes/addons".into(),
        }));
    }
    if applies && (!steps.is_empty() || any_kubelet_changes(input)) {
        steps.push(nodes_ready_gate(input));
    }
    steps
}

/// Whether the control-plane or workers phase plans anything for some kubelet in this run.
fn any_kubelet_changes(input: PlanInput<'_>) -> bool {
    input.cluster.hosts.iter().filter(|h| h.runs_kubelet()).any(|h| {
        match input.facts.get(&h.name) {
            Some(Ok(facts)) => workers::kubelet_changes(input, h, facts),
            _ => false,
        }
    })
}

fn nodes_ready_gate(input: PlanInput<'_>) -> Step {
    let nodes: Vec<String> = input
        .cluster
        .hosts
        .iter()
        .filter(|h| h.runs_kubelet())
        .map(|h| format!("node/{}", h.name))
        .collect();
    let mut args = vec!["wait", "--for=condition=Ready", "--timeout=10s"];
    args.extend(nodes.iter().map(String::as_str));
    Step::Gate(Gate {
        what: format!("every node is Ready ({})", nodes.join(", ").replace("node/", "")),
        argv: kubectl(&args),
        across: None,
        attempts: 60,
        interval_ms: 5000,
    })
}
