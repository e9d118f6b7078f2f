//! What every kubelet host needs below Kubernetes: containerd's config (systemd cgroups, the
//! pause image of the Kubernetes version), crictl's endpoint, and the kernel modules and sysctls
//! pod networking depends on.

use kubeforge_templates::contexts::{ContainerdConfig, Crictl, KeyValue, ModulesLoad, Sysctl};

use super::{CRI_SOCKET, ConfigRenderError, Ctx, HostOut};

pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
pub const CRICTL: &str = "/etc/crictl.yaml";
pub const SYSCTL: &str = "/etc/sysctl.d/99-kubernetes.conf";
pub const MODULES: &str = "/etc/modules-load.d/kubernetes.conf";

pub(super) fn add(ctx: Ctx<'_>, out: &mut HostOut<'_>) -> Result<(), ConfigRenderError> {
    if !out.host.runs_kubelet() {
        return Ok(());
    }
    let cluster = ctx.cluster();
    let containerd = ContainerdConfig {
        socket_path: CRI_SOCKET.to_string(),
        sandbox_image: format!("registry.k8s.io/pause:{}", ctx.release.pause),
        cni_bin_dir: "/opt/cni/bin".to_string(),
        cni_conf_dir: "/etc/cni/net.d".to_string(),
    };
    out.render(CONTAINERD_CONFIG, 0o644, false, &containerd)?;
    let crictl = Crictl { runtime_endpoint: format!("unix://{CRI_SOCKET}") };
    out.render(CRICTL, 0o644, false, &crictl)?;
    let modules = ["overlay", "br_netfilter"].iter().map(|m| m.to_string()).collect();
    out.render(MODULES, 0o644, false, &ModulesLoad { modules })?;
    let mut settings = vec![
        ("net.bridge.bridge-nf-call-ip6tables", "1"),
        ("net.bridge.bridge-nf-call-iptables", "1"),
        ("net.ipv4.ip_forward", "1"),
    ];
    let ipv6 = cluster.network.pod_subnet.network.is_ipv6()
        || cluster.network.service_subnet.network.is_ipv6();
    if ipv6 {
        settings.push(("net.ipv6.conf.all.forwarding", "1"));
    }
    let settings = settings
        .into_iter()
        .map(|(k, v)| KeyValue { key: k.to_string(), value: v.to_string() })
        .collect();
    out.render(SYSCTL, 0o644, false, &Sysctl { settings })
}
