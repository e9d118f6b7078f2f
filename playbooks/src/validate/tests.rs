//! One test per validation rule: a small spec that breaks exactly that rule, and the path and
//! message it must produce; plus the defaults a minimal spec gets.

use crate::model::{EtcdTopology, LoadBalancerMode, Role};
use crate::spec::load_str;

const HEAD: &str = "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: t1\n";

/// A spec from `spec:` body lines (indented two spaces by the caller's text).
fn spec(body: &str) -> String {
    format!("{HEAD}spec:\n{body}")
}

const THREE_CP: &str = "  hosts:\n    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}\n    - {name: cp2, address: 10.0.0.12, roles: [control-plane]}\n    - {name: cp3, address: 10.0.0.13, roles: [control-plane]}\n";

/// Asserts that validation fails with a problem at `path` whose message contains `fragment`.
#[track_caller]
fn fails(src: &str, path: &str, fragment: &str) {
    let d = load_str(src, "t.yaml").expect_err("spec should be refused");
    assert!(
        d.problems.iter().any(|p| p.path == path && p.message.contains(fragment)),
        "expected `{path}`: …{fragment}…, got:\n{}",
        d.to_plain()
    );
}

#[test]
fn minimal_spec_gets_defaults() {
    let src = spec(
        "  kubernetesVersion: v1.33.1\n  hosts:\n    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}\n",
    );
    let c = load_str(&src, "t.yaml").unwrap();
    assert_eq!(c.network.pod_subnet.to_string(), "10.244.0.0/16");
    assert_eq!(c.network.service_subnet.to_string(), "10.96.0.0/12");
    assert_eq!(c.network.cluster_domain, "cluster.local");
    assert_eq!(c.etcd.topology, EtcdTopology::Stacked);
    assert_eq!(c.etcd.version, "v3.5.21");
    assert_eq!(c.load_balancer.mode, LoadBalancerMode::None);
    assert_eq!(c.control_plane_endpoint, None);
    assert_eq!(c.pki.certificate_validity.as_secs(), 8760 * 3600);
    assert_eq!(c.pki.ca_validity.as_secs(), 87600 * 3600);
    assert_eq!(c.ssh.user, "root");
    assert_eq!(c.ssh.port, 22);
    assert_eq!(c.hosts[0].ssh.user, "root");
    assert!(c.backup.is_none());
    assert_eq!(c.api_server_url(), "https://10.0.0.11:6443");
}

#[test]
fn keepalived_endpoint_defaults_to_the_vip_and_host_ssh_overrides_apply() {
    let src = spec(&format!(
        "  kubernetesVersion: v1.34.0\n  loadBalancer: {{mode: keepalived-haproxy, vip: 10.0.0.100}}\n  ssh: {{user: admin, identityFile: ~/.ssh/k}}\n  backup: {{schedule: '0 3 * * *'}}\n{THREE_CP}    - {{name: w1, address: 10.0.0.21, roles: [worker], ssh: {{port: 2222}}}}\n"
    ));
    let c = load_str(&src, "t.yaml").unwrap();
    assert_eq!(c.control_plane_endpoint.as_ref().unwrap().to_string(), "10.0.0.100:6443");
    assert_eq!(c.load_balancer.vip, Some("10.0.0.100".parse().unwrap()));
    let w1 = c.host("w1").unwrap();
    assert_eq!((w1.ssh.user.as_str(), w1.ssh.port), ("admin", 2222));
    assert_eq!(w1.roles.iter().copied().collect::<Vec<_>>(), [Role::Worker]);
    let b = c.backup.unwrap();
    assert_eq!((b.retention, b.destination.to_str().unwrap()), (7, "/var/backups/kubeforge"));
    assert_eq!(c.etcd.version, "v3.6.4");
}

#[test]
fn header_rules() {
    let src = "apiVersion: kubeforge.dev/v1alpha2\nkind: Clustr\nmetadata: {name: Prod_1}\nspec:\n  kubernetesVersion: v1.33.1\n  hosts: [{name: a, address: 10.0.0.1, roles: [control-plane]}]\n";
    fails(src, "apiVersion", "unknown apiVersion `kubeforge.dev/v1alpha2`");
    fails(src, "kind", "unknown kind `Clustr`");
    fails(src, "metadata.name", "`Prod_1` is not a DNS-1123 label");
}

#[test]
fn version_rules() {
    let one = "  hosts: [{name: a, address: 10.0.0.1, roles: [control-plane]}]\n";
    fails(
        &spec(&format!("  kubernetesVersion: v1.30.2\n{one}")),
        "spec.kubernetesVersion",
        "not supported",
    );
    fails(
        &spec(&format!("  kubernetesVersion: v1.33\n{one}")),
        "spec.kubernetesVersion",
        "minor release",
    );
    fails(
        &spec(&format!("  kubernetesVersion: v1.33.1\n  etcd: {{version: 3.2.1}}\n{one}")),
        "spec.etcd.version",
        "not supported",
    );
}

#[test]
fn host_identity_rules() {
    let src = spec(
        "  kubernetesVersion: v1.33.1\n  hosts:\n    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}\n    - {name: cp1, address: 10.0.0.11, roles: [worker]}\n    - {name: Bad_Name, address: 10.0.0.300, roles: [worker]}\n    - {name: w4, address: 0.0.0.0, roles: []}\n",
    );
    fails(&src, "spec.hosts[1].name", "already used by spec.hosts[0]");
    fails(&src, "spec.hosts[1].address", "already used by spec.hosts[0]");
    fails(&src, "spec.hosts[2].name", "not a DNS-1123 label");
    fails(&src, "spec.hosts[2].address", "not an IP address");
    fails(&src, "spec.hosts[3].address", "cannot be a machine's address");
    fails(&src, "spec.hosts[3].roles", "no roles");
}

#[test]
fn network_rules() {
    let one = "  hosts: [{name: a, address: 10.244.0.5, roles: [control-plane]}]\n";
    let src = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  network: {{serviceSubnet: 10.244.0.0/20, clusterDomain: Cluster_Local}}\n{one}"
    ));
    fails(&src, "spec.network.serviceSubnet", "overlaps pod subnet 10.244.0.0/16");
    fails(&src, "spec.network.clusterDomain", "not a DNS name");
    let src = spec(&format!("  kubernetesVersion: v1.33.1\n{one}"));
    fails(&src, "spec.hosts[0].address", "inside the pod subnet 10.244.0.0/16");
    let src = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  network: {{podSubnet: 10.244.0.0/25, serviceSubnet: 10.0.0.0/8}}\n{one}"
    ));
    fails(&src, "spec.network.podSubnet", "smaller than one node's pod range");
    fails(&src, "spec.network.serviceSubnet", "outside /12 to /28");
    let src = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  network: {{podSubnet: 10.244.0.0/24}}\n{THREE_CP}"
    ));
    fails(&src, "spec.network.podSubnet", "holds 1 node ranges of /24, but 3 hosts");
    let src = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  network: {{serviceSubnet: 'fd00::/108'}}\n{one}"
    ));
    fails(&src, "spec.network.serviceSubnet", "different IP families");
}

#[test]
fn topology_rules() {
    let none = spec(
        "  kubernetesVersion: v1.33.1\n  hosts: [{name: w, address: 10.0.0.1, roles: [worker]}]\n",
    );
    fails(&none, "spec.hosts", "no host has the control-plane role");
    let two = spec(
        "  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 10.0.0.100:6443\n  hosts:\n    - {name: a, address: 10.0.0.1, roles: [control-plane]}\n    - {name: b, address: 10.0.0.2, roles: [control-plane, etcd]}\n",
    );
    fails(&two, "spec.hosts", "2 control planes make an etcd cluster of 2 members");
    fails(&two, "spec.hosts[1].roles[1]", "needs the external etcd topology");
    let ext = spec(
        "  kubernetesVersion: v1.33.1\n  etcd: {topology: external}\n  hosts: [{name: a, address: 10.0.0.1, roles: [control-plane]}]\n",
    );
    fails(&ext, "spec.etcd.topology", "no host has the etcd role");
    let ext2 = spec(
        "  kubernetesVersion: v1.33.1\n  etcd: {topology: external}\n  hosts:\n    - {name: a, address: 10.0.0.1, roles: [control-plane]}\n    - {name: e1, address: 10.0.0.2, roles: [etcd, worker]}\n    - {name: e2, address: 10.0.0.3, roles: [etcd]}\n",
    );
    fails(&ext2, "spec.hosts[1].roles", "etcd hosts run only etcd");
    fails(&ext2, "spec.etcd.topology", "2 etcd hosts make an etcd cluster of 2 members");
}

#[test]
fn load_balancer_rules() {
    fails(
        &spec(&format!("  kubernetesVersion: v1.33.1\n{THREE_CP}")),
        "spec.controlPlaneEndpoint",
        "3 control planes but no controlPlaneEndpoint",
    );
    let ok = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  loadBalancer: {{mode: node-local}}\n{THREE_CP}"
    ));
    assert!(load_str(&ok, "t.yaml").is_ok());
    fails(
        &spec(&format!(
            "  kubernetesVersion: v1.33.1\n  loadBalancer: {{mode: keepalived-haproxy}}\n{THREE_CP}"
        )),
        "spec.loadBalancer.vip",
        "needs a vip",
    );
    let clash = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 10.0.0.99:6443\n  loadBalancer: {{mode: keepalived-haproxy, vip: 10.0.0.12}}\n{THREE_CP}"
    ));
    fails(&clash, "spec.loadBalancer.vip", "also the address of spec.hosts[1]");
    fails(&clash, "spec.controlPlaneEndpoint", "is not the vip");
    let stray = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 10.0.0.100:6443\n  loadBalancer: {{mode: external, vip: 10.0.0.100}}\n{THREE_CP}"
    ));
    fails(&stray, "spec.loadBalancer.vip", "vip is set but loadBalancer.mode is external");
    let bad_ep = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 10.0.0.100\n{THREE_CP}"
    ));
    fails(&bad_ep, "spec.controlPlaneEndpoint", "has no port");
    let worker_ep = spec(
        "  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 10.0.0.2:6443\n  hosts:\n    - {name: a, address: 10.0.0.1, roles: [control-plane]}\n    - {name: w, address: 10.0.0.2, roles: [worker]}\n",
    );
    fails(&worker_ep, "spec.controlPlaneEndpoint", "which is not a control plane");
}

#[test]
fn an_artifact_mirror_is_an_http_url_for_upstream_only() {
    let with = |artifacts: &str| {
        spec(&format!(
            "  kubernetesVersion: v1.33.1\n  artifacts: {artifacts}\n  hosts:\n    - {{name: cp1, address: 10.0.0.11, roles: [control-plane]}}\n"
        ))
    };
    let c = load_str(&with("{mirror: 'https://mirror.example/kf/'}"), "t.yaml").unwrap();
    assert_eq!(c.artifact_mirror.as_deref(), Some("https://mirror.example/kf"));
    assert_eq!(c.artifacts, crate::model::ArtifactSource::Upstream);
    fails(
        &with("{mirror: 'ftp://m.example'}"),
        "spec.artifacts.mirror",
        "not an http:// or https:// URL",
    );
    fails(&with("{mirror: 'https://'}"), "spec.artifacts.mirror", "not an http:// or https:// URL");
    fails(
        &with("{source: 'dir:./bundle', mirror: 'https://m.example'}"),
        "spec.artifacts.mirror",
        "applies to `source: upstream` only",
    );
}

#[test]
fn pki_ssh_artifact_and_backup_rules() {
    let src = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  pki: {{certificateValidity: 365d, caValidity: 1h, extraSANs: ['bad name']}}\n  ssh: {{user: 'a b', port: 0, identityFile: '', bastion: {{port: 22}}}}\n  artifacts: {{source: upstrem}}\n  backup: {{schedule: '61 * * * *', retention: 0, destination: backups}}\n  loadBalancer: {{mode: node-local}}\n{THREE_CP}"
    ));
    fails(&src, "spec.pki.certificateValidity", "uses the unit `d`");
    fails(&src, "spec.pki.extraSANs[0]", "neither an IP address nor a DNS name");
    fails(&src, "spec.ssh.user", "not a valid user name");
    fails(&src, "spec.ssh.port", "port 0");
    fails(&src, "spec.ssh.identityFile", "is empty");
    fails(&src, "spec.ssh.bastion", "the bastion has no address");
    fails(&src, "spec.artifacts.source", "unknown artifact source `upstrem`");
    fails(&src, "spec.backup.schedule", "minute field `61`");
    fails(&src, "spec.backup.retention", "retention 0");
    fails(&src, "spec.backup.destination", "not an absolute directory");
    let longer = spec(&format!(
        "  kubernetesVersion: v1.33.1\n  pki: {{certificateValidity: 87600h, caValidity: 8760h}}\n  loadBalancer: {{mode: node-local}}\n{THREE_CP}"
    ));
    fails(&longer, "spec.pki.certificateValidity", "longer than caValidity");
}

#[test]
fn every_problem_is_reported_at_once_with_positions() {
    let src = spec(
        "  kubernetesVersion: v1.29.0\n  network: {podSubnet: 10.96.0.0/16}\n  hosts:\n    - {name: a, address: 10.0.0.1, roles: [worker]}\n",
    );
    let d = load_str(&src, "t.yaml").unwrap_err();
    let got: Vec<(&str, u64)> = d.problems.iter().map(|p| (p.path.as_str(), p.line)).collect();
    assert_eq!(
        got,
        [("spec.kubernetesVersion", 6), ("spec.network.serviceSubnet", 7), ("spec.hosts", 8)],
        "{}",
        d.to_plain()
    );
}
