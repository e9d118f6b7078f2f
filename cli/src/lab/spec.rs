//! The cluster spec `lab up` writes for its machines (kubeforge.dev/v1alpha1): hosts and roles,
//! the lab key and known_hosts, the lab's artifact directory, a VIP with keepalived-haproxy when
//! there is more than one control plane, external etcd with `--etcd N`. Pure text.

use std::fmt::Write as _;
use std::path::Path;

use super::artifacts::LAB_ETCD_VERSION;
use super::layout::LabRole;
use super::state::LabState;

/// First line of every spec `lab up` writes; only such a file may be overwritten.
pub const HEADER: &str = "# Written by `kubeforge lab up`";

/// The Kubernetes version lab specs ask for.
pub const LAB_KUBERNETES_VERSION: &str = "v1.33.1";

/// A YAML double-quoted scalar (JSON string syntax is valid YAML).
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

fn path(p: &Path) -> String {
    quoted(&p.to_string_lossy())
}

/// The spec text for `state`, naming `spec_file` in its comments.
pub fn render(state: &LabState, spec_file: &Path) -> String {
    let mut y = String::new();
    let file = spec_file.display();
    let _ = writeln!(y, "{HEADER} for the lab `{}`: a cluster on local machines.", state.name);
    let _ = writeln!(
        y,
        "# The machines are offline: etcd comes from the lab's artifact directory; Kubernetes"
    );
    let _ = writeln!(
        y,
        "# binaries cannot be fetched there, so applies in the lab stop after the load balancer:"
    );
    let _ = writeln!(y, "#   kubeforge plan -f {file}");
    let _ = writeln!(y, "#   kubeforge apply -f {file} --until loadbalancer");
    let _ = writeln!(
        y,
        "# `kubeforge lab down --name {}` removes the machines; this file stays.",
        state.name
    );
    y.push_str("apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata:\n");
    let _ = writeln!(y, "  name: {}", state.name);
    y.push_str("spec:\n");
    let _ = writeln!(y, "  kubernetesVersion: {LAB_KUBERNETES_VERSION}");
    if let Some(vip) = &state.vip {
        let _ = writeln!(y, "  controlPlaneEndpoint: {vip}:6443");
    }
    let external = state.machines.iter().any(|m| m.role == LabRole::Etcd);
    y.push_str("  etcd:\n");
    let _ = writeln!(y, "    topology: {}", if external { "external" } else { "stacked" });
    let _ = writeln!(y, "    version: {LAB_ETCD_VERSION}   # the etcd in the artifact directory");
    y.push_str("  loadBalancer:\n");
    match &state.vip {
        Some(vip) => {
            y.push_str("    mode: keepalived-haproxy\n");
            let _ = writeln!(y, "    vip: {vip}");
        }
        None => y.push_str("    mode: none\n"),
    }
    y.push_str("  ssh:\n    user: root\n    port: 22\n");
    let _ = writeln!(y, "    identityFile: {}", path(&state.identity_file));
    let _ = writeln!(
        y,
        "    knownHostsFile: {}   # written by lab up with each machine's key",
        path(&state.known_hosts)
    );
    y.push_str("    hostKeyPolicy: strict\n");
    y.push_str("  artifacts:\n");
    let _ = writeln!(y, "    source: {}", quoted(&format!("dir:{}", state.artifacts.display())));
    y.push_str("  hosts:\n");
    for m in &state.machines {
        let _ = writeln!(y, "    - name: {}", m.host);
        let _ = writeln!(y, "      address: {}", m.address);
        let _ = writeln!(y, "      roles: [{}]", m.role);
    }
    y
}

/// Parses and validates spec text exactly as `kubeforge validate` and `apply` do; the problems
/// as plain text on failure.
pub fn check(text: &str, origin: &str) -> Result<(), String> {
    kubeforge_playbooks::spec::load_str(text, origin).map(|_| ()).map_err(|d| d.to_plain())
}

/// True when `existing` (the current contents of the spec path) was written by `lab up`.
pub fn may_overwrite(existing: &str) -> bool {
    existing.starts_with(HEADER)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Request, plan};
    use crate::lab::net::Subnet;
    use crate::lab::state::from_layout;

    fn spec(cp: u32, workers: u32, etcd: u32) -> String {
        let req = Request { name: "demo".into(), control_planes: cp, workers, etcd };
        let layout = plan(&req, Subnet::from_index(9)).unwrap();
        let state = from_layout(
            &layout,
            Path::new("/var/lib/kubeforge/lab/demo"),
            Path::new("/img"),
            Path::new("/var/cache/kubeforge/lab/artifacts/bundle-1"),
            Path::new("/w/demo.cluster.yaml"),
        );
        render(&state, Path::new("demo.cluster.yaml"))
    }

    #[test]
    fn ha_lab_spec_has_a_vip_and_keepalived_haproxy() {
        let text = spec(3, 1, 0);
        let expected = "\
apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: demo
spec:
  kubernetesVersion: v1.33.1
  controlPlaneEndpoint: 10.200.9.250:6443
  etcd:
    topology: stacked
    version: v3.5.1   # the etcd in the artifact directory
  loadBalancer:
    mode: keepalived-haproxy
    vip: 10.200.9.250
  ssh:
    user: root
    port: 22
    identityFile: \"/var/lib/kubeforge/lab/demo/id_ed25519\"
    knownHostsFile: \"/var/lib/kubeforge/lab/demo/known_hosts\"   # written by lab up with each machine's key
    hostKeyPolicy: strict
  artifacts:
    source: \"dir:/var/cache/kubeforge/lab/artifacts/bundle-1\"
  hosts:
    - name: cp1
      address: 10.200.9.11
      roles: [control-plane]
    - name: cp2
      address: 10.200.9.12
      roles: [control-plane]
    - name: cp3
      address: 10.200.9.13
      roles: [control-plane]
    - name: w1
      address: 10.200.9.51
      roles: [worker]
";
        assert!(text.starts_with(HEADER) && may_overwrite(&text));
        let body = text.split_once("apiVersion:").map(|(_, b)| format!("apiVersion:{b}")).unwrap();
        assert_eq!(body, expected);
        assert!(text.contains("#   kubeforge apply -f demo.cluster.yaml --until loadbalancer\n"));
    }

    #[test]
    fn single_control_plane_has_no_endpoint_and_etcd_hosts_are_external() {
        let text = spec(1, 0, 3);
        assert!(!text.contains("controlPlaneEndpoint"));
        assert!(text.contains("  loadBalancer:\n    mode: none\n"));
        assert!(text.contains("    topology: external\n"));
        assert!(
            text.contains("    - name: etcd3\n      address: 10.200.9.33\n      roles: [etcd]\n")
        );
    }

    #[test]
    fn every_lab_shape_writes_a_spec_that_validates() {
        for (cp, workers, etcd) in
            [(3, 1, 0), (1, 0, 0), (1, 2, 3), (2, 9, 5), (7, 1, 0), (19, 149, 7)]
        {
            let text = spec(cp, workers, etcd);
            if let Err(problems) = check(&text, "lab.cluster.yaml") {
                panic!("{cp} cp, {workers} workers, {etcd} etcd:\n{problems}\n{text}");
            }
        }
    }

    #[test]
    fn check_reports_problems() {
        let broken = spec(3, 1, 0).replace("vip: 10.200.9.250", "vip: 10.200.9.11");
        assert!(check(&broken, "lab.cluster.yaml").is_err());
    }

    #[test]
    fn only_lab_written_files_may_be_overwritten() {
        assert!(!may_overwrite("apiVersion: kubeforge.dev/v1alpha1\n"));
        assert!(!may_overwrite(""));
    }
}
