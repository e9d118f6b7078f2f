//! `control-plane`: on each control plane, the kubelet and the static pods it runs. In order:
//! binaries and image archives from the artifact source (kubelet, kubectl, crictl, CNI plugins,
//! the pause and control-plane images) when the host's copy differs; the files the kube-apiserver
//! reads (audit policy, authentication and encryption configs); the static pod manifests; the
//! kubelet's unit, drop-in and config; then the kubelet enabled and started (restarted when its
//! binary, config or credentials changed). A running kube-apiserver whose config files changed
//! while its manifest did not is restarted through the CRI, since it reads them only at start.
//! Gates: the kubelet active, this host's kube-apiserver answering `/readyz`, and the API
//! answering `/readyz` through the cluster endpoint (so haproxy routes to it).
//! Pure: decides from the tree, the facts and the artifact inventory; does no I/O.

use super::PlanInput;
use super::files::{Wanted, put_file};
use super::restart::{Loads, STATIC_PODS};
use super::types::{FileReason, Gate, Run, Step};
use super::workers::{self, KUBELET_UNIT};
use crate::facts::HostFacts;
use crate::model::{Endpoint, Host};

const KUBERNETES_DIR: &str = "/etc/kubernetes/";
const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests/";
pub(crate) const KUBECTL: &str = "/usr/local/bin/kubectl";
pub(crate) const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
use crate::node::APISERVER_PORT;

pub(crate) const BINARIES: [&str; 3] = ["kubelet", "kubectl", "crictl"];
pub(crate) const IMAGES: [&str; 4] =
    ["pause", "kube-apiserver", "kube-controller-manager", "kube-scheduler"];

/// The kube-apiserver's config files (`/etc/kubernetes/*.yaml`: audit policy, authentication
/// and encryption configs) and the static pod manifests.
pub(crate) fn is_control_plane_file(path: &str) -> bool {
    path.starts_with(MANIFESTS_DIR)
        || path
            .strip_prefix(KUBERNETES_DIR)
            .is_some_and(|name| !name.contains('/') && name.ends_with(".yaml"))
}

/// Whether the control-plane phase owns `path` on `host` (its static pods' files, and the
/// kubelet's files on control planes).
/// (The rule every render-tree file is checked against in `tests_phases`.)
#[cfg(test)]
pub(crate) fn owns(host: &Host, path: &str) -> bool {
    host.is_control_plane() && (is_control_plane_file(path) || workers::is_kubelet_file(path))
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    if !host.is_control_plane() {
        return Vec::new();
    }
    let mut steps = Vec::new();
    let mut change = workers::push_artifacts(input, facts, &BINARIES, true, &IMAGES, &mut steps);

    let mut apiserver_manifest_changed = false;
    let files = input.tree.hosts.get(&host.name).into_iter().flatten();
    // Configs before manifests, so a kubelet that is already running starts the new pods
    // with the files they need in place.
    let (manifests, configs): (Vec<_>, Vec<_>) = files
        .filter(|(path, _)| is_control_plane_file(path))
        .partition(|(path, _)| path.starts_with(MANIFESTS_DIR));
    for (path, file) in configs.into_iter().chain(manifests) {
        let wanted =
            Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
        if let Some(put) = put_file(&host.name, facts, wanted) {
            let content = !matches!(put.reason, FileReason::Metadata { .. });
            apiserver_manifest_changed |= content && path.ends_with("/kube-apiserver.yaml");
            steps.push(Step::PutFile(put));
        }
    }
    change |= workers::kubelet_steps(input, host, facts, &mut steps);
    let kubelet_was_active = facts.units.get(KUBELET_UNIT).is_some_and(|u| u.is_active());
    let mut kubelet_steps = Vec::new();
    workers::finish_kubelet(input, host, facts, change, &mut kubelet_steps);
    // The kubelet's gate goes last; the apiserver restart and readiness gates follow it.
    let kubelet_gate = kubelet_steps.pop();
    steps.extend(kubelet_steps);
    steps.extend(kubelet_gate);
    // The pods read their certificates, kubeconfigs and configs only at start: restart them
    // through the CRI when what they run with differs from what this run leaves on disk, unless
    // a changed manifest makes the kubelet start them anew anyway.
    let loads = static_pod_loads(input, host, facts);
    let stale = loads.stale(facts);
    if let (Some(why), false, true) = (&stale, apiserver_manifest_changed, kubelet_was_active) {
        let names = "kube-(apiserver|controller-manager|scheduler)";
        steps.push(Step::Run(Run {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("crictl ps -q --name '^{names}$' | xargs -r crictl stop"),
            ],
            unless: None,
            why: format!("{why}; the pods read them only at start"),
        }));
    }
    if !steps.is_empty() {
        steps.extend(readiness_gates(input, host));
        steps.extend(loads.record_step(&host.name, facts));
        // Marked when the node joins (no kubelet config yet), as kubeadm does.
        let joining = matches!(
            facts.files.get(crate::render::configs::kubelet::CONFIG),
            None | Some(crate::facts::FileState::Absent)
        );
        if joining {
            steps.extend(mark_control_plane(host));
        }
    }
    steps
}

/// kubeadm's mark-control-plane: the node-role label (which the kubelet may not set on itself,
/// NodeRestriction forbids it) and the NoSchedule taint, once the node has registered. Both are
/// idempotent (`--overwrite`), so a resumed run may repeat them.
fn mark_control_plane(host: &Host) -> [Step; 3] {
    let kubectl = |args: &[&str]| -> Vec<String> {
        [KUBECTL, "--kubeconfig", ADMIN_CONF].iter().chain(args).map(|a| a.to_string()).collect()
    };
    let role = "node-role.kubernetes.io/control-plane";
    [
        Step::Gate(Gate {
            what: format!("node {} is registered", host.name),
            argv: kubectl(&["get", "node", &host.name]),
            across: None,
            attempts: 60,
            interval_ms: 2000,
        }),
        Step::Run(Run {
            argv: kubectl(&["label", "node", &host.name, &format!("{role}="), "--overwrite"]),
            unless: None,
            why: "control planes carry kubeadm's node-role label (the CronJob and kube-proxy \
                  select on it)"
                .into(),
        }),
        Step::Run(Run {
            argv: kubectl(&[
                "taint",
                "node",
                &host.name,
                &format!("{role}:NoSchedule"),
                "--overwrite",
            ]),
            unless: None,
            why: "workloads stay off control planes unless they tolerate it, as with kubeadm"
                .into(),
        }),
    ]
}

/// What the control-plane pods read at start: the host's certificates and kubeconfigs (the
/// kubelet's own excepted: they are the kubelet's business) and the kube-apiserver's configs.
fn static_pod_loads(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Loads {
    let kubelet_file = |path: &str| {
        path.starts_with("/var/lib/kubelet/") || path == crate::render::configs::kubelet::KUBECONFIG
    };
    let files = input.tree.hosts.get(&host.name).into_iter().flatten();
    files
        .map(|(path, _)| path.as_str())
        .filter(|path| {
            (super::pki::owns(path) && !kubelet_file(path))
                || (is_control_plane_file(path) && !path.starts_with(MANIFESTS_DIR))
        })
        .fold(Loads::run_by(KUBELET_UNIT, STATIC_PODS), |l, path| {
            l.file(input, &host.name, facts, path)
        })
}

/// `/readyz` of this host's kube-apiserver, then of the API through the cluster endpoint.
fn readiness_gates(input: PlanInput<'_>, host: &Host) -> [Step; 2] {
    let own = format!("https://{}", Endpoint::ip(host.address, APISERVER_PORT));
    let endpoint = input.cluster.api_server_url();
    let readyz = |server: &str| {
        [KUBECTL, "--kubeconfig", ADMIN_CONF, "--server", server, "get", "--raw", "/readyz"]
            .map(String::from)
            .to_vec()
    };
    [
        Step::Gate(Gate {
            what: format!("kube-apiserver on {} answers /readyz at {own}", host.name),
            argv: readyz(&own),
            // The first start can include the images' unpacking and etcd's first writes.
            across: None,
            attempts: 120,
            interval_ms: 5000,
        }),
        Step::Gate(Gate {
            what: format!("the API answers /readyz through {endpoint}"),
            argv: readyz(&endpoint),
            across: None,
            attempts: 60,
            interval_ms: 2000,
        }),
    ]
}
