//! The store layout: cluster-wide material under kubeadm's names at the top
//! (`ca.crt`, `etcd/ca.key`, `sa.key`, `super-admin.conf`), per-host material under
//! `nodes/<host>/` with the name it has on the node (`apiserver.crt`, `etcd/server.key`,
//! `admin.conf`, `kubelet.conf`, and `kubelet.crt`/`kubelet.key` for the kubelet's serving
//! certificate).

pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";
pub const SUPER_ADMIN_CONF: &str = "super-admin.conf";

/// `nodes/<host>/<rel>`.
pub fn node_file(host: &str, rel: &str) -> String {
    format!("nodes/{host}/{rel}")
}

/// Splits `nodes/<host>/<rel>` into (host, rel); `None` for cluster-wide paths.
pub fn split_node_path(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix("nodes/")?.split_once('/')
}

/// The files of a certificate + key pair whose path without extension is `base`.
pub fn crt(base: &str) -> String {
    format!("{base}.crt")
}
pub fn key(base: &str) -> String {
    format!("{base}.key")
}
