//! `pki`: puts each host's certificates, private keys and kubeconfigs from the render tree. The
//! tree already holds only what a host needs (kubeadm's file names under `/etc/kubernetes/pki`,
//! the kubelet's under `/var/lib/kubelet/pki`, the kubeconfigs in `/etc/kubernetes`); this phase
//! also refuses, on its own, to send a CA's or the service-account signing key to any host that
//! is not a control plane, so a rendering mistake cannot hand a worker the keys to the cluster.
//! Nothing is restarted here: consumers start in later phases, and renewal is `certs renew`'s.
//! Pure: decides steps from the render tree and the host's facts; does no I/O.

use super::PlanInput;
use super::files::{Wanted, put_file};
use super::types::Step;
use crate::facts::HostFacts;
use crate::model::Host;

const PKI_DIR: &str = "/etc/kubernetes/pki/";
const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki/";
const KUBECONFIG_DIR: &str = "/etc/kubernetes/";

/// Whether the pki phase owns a render-tree path: certificates and keys, and the kubeconfigs
/// (`/etc/kubernetes/*.conf`, which embed client certificates and keys).
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with(PKI_DIR)
        || path.starts_with(KUBELET_PKI_DIR)
        || path
            .strip_prefix(KUBECONFIG_DIR)
            .is_some_and(|name| !name.contains('/') && name.ends_with(".conf"))
}

/// A key that signs for the whole cluster: the cluster, front-proxy and etcd CAs' keys and the
/// service-account signing key. Only control planes ever hold them.
pub(crate) fn is_signing_key(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    path.starts_with(PKI_DIR) && (name.ends_with("ca.key") || name == "sa.key")
}

/// Whether `host` may receive `path` at all.
pub(crate) fn may_receive(host: &Host, path: &str) -> bool {
    host.is_control_plane() || !is_signing_key(path)
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let mut steps = Vec::new();
    for (path, file) in input.tree.hosts.get(&host.name).into_iter().flatten() {
        if !owns(path) || !may_receive(host, path) {
            continue;
        }
        let wanted =
            Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
        steps.extend(put_file(&host.name, facts, wanted).map(Step::PutFile));
    }
    steps
}
