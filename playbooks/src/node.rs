//! The node contract, stated once: where kubeforge puts things on a host (kubeadm's layout),
//! the ports its services listen on and the systemd units it manages. Renderers, planners,
//! preflight and the CLI's observers all read these; none restates a path, port or unit name.
//! Constants only: no logic, no I/O.

/// kubeadm's certificate directory; file names below it are kubeadm's.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// Where the kubelet picks up static pods.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Where pushed binaries live (see `artifacts::layout`).
pub const BIN_DIR: &str = "/usr/local/bin";
/// containerd's CRI socket.
pub const CRI_SOCKET: &str = "/run/containerd/containerd.sock";

/// The kube-apiserver's secure port on every control plane (and the default endpoint port).
pub const APISERVER_PORT: u16 = 6443;
/// etcd's client and peer ports.
pub const ETCD_CLIENT_PORT: u16 = 2379;
pub const ETCD_PEER_PORT: u16 = 2380;
/// The kubelet's serving port.
pub const KUBELET_PORT: u16 = 10250;
/// kube-controller-manager's and kube-scheduler's secure ports.
pub const CONTROLLER_MANAGER_PORT: u16 = 10257;
pub const SCHEDULER_PORT: u16 = 10259;

/// The systemd units kubeforge manages.
pub mod unit {
    pub const CONTAINERD: &str = "containerd.service";
    pub const ETCD: &str = "etcd.service";
    pub const HAPROXY: &str = "haproxy.service";
    pub const KEEPALIVED: &str = "keepalived.service";
    pub const KUBELET: &str = "kubelet.service";
    /// Every one of them, in name order (their states are probed on every host).
    pub const ALL: [&str; 5] = [CONTAINERD, ETCD, HAPROXY, KEEPALIVED, KUBELET];
}
