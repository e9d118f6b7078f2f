//! Planner behaviour on hand-built facts: what each phase plans, what blocks a host, and that
//! a host which has had the plan applied plans nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::time::Duration;

use super::*;
use crate::facts::{Binary, FileState, OsRelease, SwapArea, UnitState};
use crate::model::*;
use crate::render::NodeFile;

pub(crate) fn cluster(hosts: &[(&str, &str, &[Role])]) -> Cluster {
    let ssh = Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts_file: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        bastion: None,
    };
    Cluster {
        name: "demo".into(),
        kubernetes_version: KubeVersion { major: 1, minor: 33, patch: 1 },
        control_plane_endpoint: Some(Endpoint::ip("10.0.0.100".parse().unwrap(), 8443)),
        network: Network {
            pod_subnet: Cidr { network: "10.244.0.0".parse().unwrap(), prefix: 16 },
            service_subnet: Cidr { network: "10.96.0.0".parse().unwrap(), prefix: 12 },
            cluster_domain: "cluster.local".into(),
        },
        etcd: Etcd { topology: EtcdTopology::Stacked, version: "v3.5.21".into() },
        load_balancer: LoadBalancer {
            mode: LoadBalancerMode::KeepalivedHaproxy,
            vip: Some("10.0.0.100".parse().unwrap()),
        },
        pki: Pki {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            certificate_validity: Duration::from_secs(3600),
            ca_validity: Duration::from_secs(7200),
            extra_sans: vec![],
        },
        ssh: ssh.clone(),
        artifacts: ArtifactSource::Upstream,
        artifact_mirror: None,
        backup: None,
        hosts: hosts
            .iter()
            .map(|(name, addr, roles)| Host {
                name: name.to_string(),
                address: addr.parse::<IpAddr>().unwrap(),
                roles: roles.iter().copied().collect(),
                ssh: ssh.clone(),
            })
            .collect(),
    }
}

pub(crate) fn tree(hosts: &[&str]) -> RenderTree {
    let mut tree = RenderTree::default();
    for host in hosts {
        let file =
            |s: &str, mode, secret| NodeFile { contents: s.as_bytes().to_vec(), mode, secret };
        tree.insert(
            host,
            "/etc/modules-load.d/kubernetes.conf",
            file("overlay\nbr_netfilter\n", 0o644, false),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/sysctl.d/99-kubernetes.conf",
            file("net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n", 0o644, false),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/containerd/config.toml",
            file("version = 3\n[plugins]\n  SystemdCgroup = true\n", 0o644, false),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/kubernetes/pki/ca.key",
            file("-----BEGIN PRIVATE KEY-----\nsecret\n", 0o600, true),
        )
        .unwrap();
    }
    tree
}

/// A fresh Debian 12 machine: containerd installed by the package but with its default config.
pub(crate) fn fresh_facts(hostname: &str) -> HostFacts {
    let unit =
        |active: &str, enabled: &str| UnitState { active: active.into(), enabled: enabled.into() };
    let present =
        |version: &str| Binary { path: Some("/usr/bin/x".into()), version: Some(version.into()) };
    let absent = Binary { path: None, version: None };
    HostFacts {
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        arch: "x86_64".into(),
        kernel: "6.1.0-18-amd64".into(),
        cpus: 2,
        memory_kib: 4_000_000,
        swaps: vec![SwapArea {
            filename: "/dev/vda3".into(),
            kind: "partition".into(),
            size_kib: 1_000_000,
        }],
        hostname: hostname.into(),
        filesystems: BTreeSet::from(["ext4".to_string(), "overlay".to_string()]),
        clock_offset_ms: 12,
        listening_ports: BTreeSet::from([22]),
        units: BTreeMap::from([
            ("containerd.service".into(), unit("active", "enabled")),
            ("etcd.service".into(), unit("inactive", "not-found")),
            ("haproxy.service".into(), unit("inactive", "not-found")),
            ("kubelet.service".into(), unit("inactive", "not-found")),
        ]),
        binaries: BTreeMap::from([
            ("containerd".into(), present("1.6.20~ds1")),
            ("runc".into(), present("1.1.5+ds1")),
            ("etcd".into(), absent.clone()),
            ("kubelet".into(), absent),
        ]),
        files: BTreeMap::from([
            (
                "/etc/hosts".into(),
                present_file(b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n", 0o644),
            ),
            (
                "/etc/fstab".into(),
                present_file(
                    b"UUID=1 / ext4 errors=remount-ro 0 1\nUUID=2 none swap sw 0 0\n",
                    0o644,
                ),
            ),
            ("/etc/containerd/config.toml".into(), present_file(b"version = 2\n", 0o644)),
            ("/etc/modules-load.d/kubernetes.conf".into(), FileState::Absent),
            ("/etc/sysctl.d/99-kubernetes.conf".into(), FileState::Absent),
            ("/etc/kubernetes/pki/ca.key".into(), FileState::Absent),
        ]),
        paths_exist: BTreeMap::from([("/proc/sys/net/bridge".into(), false)]),
        sysctls: BTreeMap::from([
            ("net.ipv4.ip_forward".into(), Some("0".into())),
            ("net.bridge.bridge-nf-call-iptables".into(), None),
        ]),
        commands: BTreeMap::new(),
    }
}

pub(crate) fn present_file(bytes: &[u8], mode: u32) -> FileState {
    FileState::Present {
        sha256: files::sha256_hex(bytes),
        mode: Some(mode),
        owner: Some("root".into()),
        group: Some("root".into()),
        contents: Some(bytes.to_vec()),
    }
}

const CP: &[Role] = &[Role::ControlPlane];
const WORKER: &[Role] = &[Role::Worker];

fn three_hosts() -> (Cluster, RenderTree, BTreeMap<String, HostProbe>) {
    let cluster =
        cluster(&[("cp1", "10.0.0.11", CP), ("cp2", "10.0.0.12", CP), ("w1", "10.0.0.21", WORKER)]);
    let tree = tree(&["cp1", "cp2", "w1"]);
    let facts = ["cp1", "cp2", "w1"].iter().map(|h| (h.to_string(), Ok(fresh_facts(h)))).collect();
    (cluster, tree, facts)
}

fn run_plan(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    sel: &PhaseSelection,
) -> Plan {
    let artifacts = ArtifactInventory::new();
    plan(
        &Operation::Apply,
        PlanInput {
            cluster,
            tree,
            facts,
            artifacts: &artifacts,
            selection: sel,
            observed: &Observed::default(),
            applied: None,
        },
    )
    .unwrap()
}

/// Applies a plan's effects to facts the way a host would (files written, modules loaded,
/// sysctls set, swap off, units enabled and started): the model of a host used to check that
/// the planner converges.
pub(crate) fn simulate(plan: &Plan, facts: &mut BTreeMap<String, HostProbe>) {
    for phase in &plan.phases {
        for (host, steps) in &phase.hosts {
            let Some(Ok(f)) = facts.get_mut(host) else { continue };
            for step in steps {
                match step {
                    Step::PutFile(p) => {
                        f.files.insert(p.path.clone(), present_file(&p.contents, p.mode));
                    }
                    Step::PushArtifact(a) => {
                        f.binaries.insert(
                            a.name.clone(),
                            Binary { path: Some(a.dest.clone()), version: None },
                        );
                    }
                    Step::Run(r) => match r.argv[0].as_str() {
                        "modprobe" => {
                            match os::ModuleEvidence::of(&r.argv[1]) {
                                os::ModuleEvidence::Path(p) => f.paths_exist.insert(p, true),
                                os::ModuleEvidence::Filesystem(fs) => {
                                    Some(f.filesystems.insert(fs))
                                }
                            };
                        }
                        "sysctl" => {
                            let (k, v) = r.argv[2].split_once('=').unwrap();
                            f.sysctls.insert(k.into(), Some(v.into()));
                        }
                        "swapoff" => f.swaps.clear(),
                        // containerd's restart (tried twice): it stays active.
                        "sh" if r.argv[2].starts_with("systemctl restart containerd") => {}
                        other => panic!("unexpected command {other}"),
                    },
                    Step::Unit(u) => simulate_unit(&mut f.units, u),
                    Step::Gate(_) | Step::Guarded(_) | Step::Etcd(_) => {}
                }
            }
        }
    }
}

#[test]
fn fresh_hosts_get_os_and_runtime_steps_and_converge() {
    let (cluster, tree, mut facts) = three_hosts();
    let sel = PhaseSelection::new(Some(Phase::Runtime), &[]);
    let first = run_plan(&cluster, &tree, &facts, &sel);
    assert!(first.blocked.is_empty(), "{:?}", first.blocked);
    let os = &first.phases[1];
    assert_eq!(os.phase, Phase::Os);
    let cp1 = &os.hosts["cp1"];
    let labels: Vec<String> = cp1.iter().map(Step::label).collect();
    assert!(labels.contains(&"modprobe br_netfilter".to_string()), "{labels:?}");
    assert!(!labels.iter().any(|l| l == "modprobe overlay"), "overlay is loaded: {labels:?}");
    assert!(labels.contains(&"sysctl -w net.ipv4.ip_forward=1".to_string()), "{labels:?}");
    assert!(labels.contains(&"swapoff -a".to_string()));
    assert!(labels.contains(&"change /etc/fstab".to_string()));
    assert!(labels.contains(&"change /etc/hosts".to_string()));
    // The secret PKI file belongs to the pki phase, not to os or runtime.
    assert!(!labels.iter().any(|l| l.contains("ca.key")));
    let runtime: Vec<String> = first.phases[2].hosts["w1"].iter().map(Step::label).collect();
    assert_eq!(
        runtime,
        [
            "change /etc/containerd/config.toml",
            "sh -c systemctl restart containerd.service || { sleep 2; systemctl reset-failed containerd.service; systemctl restart containerd.service; }",
            "wait: containerd is active and its socket answers",
            "create /var/lib/kubeforge/loaded/containerd.service"
        ]
    );

    simulate(&first, &mut facts);
    let second = run_plan(&cluster, &tree, &facts, &sel);
    assert!(second.is_converged(), "{}", render_text(&second));
    assert!(render_text(&second).ends_with("No changes.\n"));
}

#[test]
fn a_running_containerd_kubeforge_gives_no_file_is_not_restarted() {
    // An etcd-only host: the render tree has no containerd config for it. Its running
    // containerd has no record, which on a kubelet host means "restart to be sure"; here
    // there is nothing kubeforge could have changed under it.
    let cluster = cluster(&[("cp1", "10.0.0.11", CP), ("etcd1", "10.0.0.31", &[Role::Etcd])]);
    let mut rendered = tree(&["cp1"]);
    let kubelet_host_files = tree(&["etcd1"]);
    for (path, file) in &kubelet_host_files.hosts["etcd1"] {
        if path.starts_with("/etc/sysctl.d/") || path.starts_with("/etc/modules-load.d/") {
            rendered.insert("etcd1", path, file.clone()).unwrap();
        }
    }
    let facts: BTreeMap<String, HostProbe> =
        ["cp1", "etcd1"].iter().map(|h| (h.to_string(), Ok(fresh_facts(h)))).collect();
    let sel = PhaseSelection::new(Some(Phase::Runtime), &[]);
    let plan = run_plan(&cluster, &rendered, &facts, &sel);
    let runtime = plan.phases.iter().find(|p| p.phase == Phase::Runtime).unwrap();
    assert!(!runtime.hosts.contains_key("etcd1"), "{:#?}", runtime.hosts.get("etcd1"));
    let cp1: Vec<String> = runtime.hosts["cp1"].iter().map(Step::label).collect();
    assert!(cp1.iter().any(|l| l.contains("systemctl restart containerd")), "{cp1:?}");
}

#[test]
fn hosts_file_block_is_replaced_not_duplicated() {
    let c = cluster(&[("cp1", "10.0.0.11", CP)]);
    let once = os::hosts_file(&c, Some("127.0.0.1 localhost\n"));
    assert_eq!(os::hosts_file(&c, Some(&once)), once);
    assert!(once.contains("10.0.0.11\tcp1\n"));
    assert!(once.starts_with("127.0.0.1 localhost\n"));
    let c2 = cluster(&[("cp1", "10.0.0.11", CP), ("w9", "10.0.0.99", WORKER)]);
    let grown = os::hosts_file(&c2, Some(&once));
    assert_eq!(grown.matches("BEGIN kubeforge").count(), 1);
    assert!(grown.contains("10.0.0.99\tw9\n"));
}

#[test]
fn fstab_swap_lines_are_commented_once() {
    let fstab = "UUID=1 / ext4 defaults 0 1\n/swapfile none swap sw 0 0\n# /old none swap sw 0 0\n";
    let once = os::fstab_without_swap(fstab);
    assert!(once.contains(
        "# disabled by kubeforge (Kubernetes needs swap off): /swapfile none swap sw 0 0\n"
    ));
    assert_eq!(os::fstab_without_swap(&once), once);
}

#[test]
fn failing_checks_block_only_that_host_and_name_a_remedy() {
    let (cluster, tree, mut facts) = three_hosts();
    if let Some(Ok(f)) = facts.get_mut("cp2") {
        f.os = OsRelease {
            id: "centos".into(),
            version_id: "7".into(),
            pretty_name: "CentOS 7".into(),
        };
        f.listening_ports.insert(2379);
        f.clock_offset_ms = -9000;
    }
    facts.insert("w1".into(), Err("connection refused".into()));
    let plan = run_plan(&cluster, &tree, &facts, &PhaseSelection::new(Some(Phase::Runtime), &[]));
    let checks: Vec<&str> = plan.blocked["cp2"].iter().map(|p| p.check.as_str()).collect();
    assert_eq!(checks, ["supported-os", "clock", "ports"]);
    assert!(plan.blocked["cp2"].iter().all(|p| !p.remedy.is_empty()));
    assert_eq!(plan.blocked["w1"][0].check, "reachable");
    assert!(plan.blocked["w1"][0].message.contains("connection refused"));
    assert!(plan.phases[1].hosts.contains_key("cp1"));
    assert!(!plan.phases[1].hosts.contains_key("cp2"));
    assert!(!plan.phases[1].hosts.contains_key("w1"));
}

#[test]
fn swap_on_blocks_only_when_os_phase_is_skipped() {
    let (cluster, tree, facts) = three_hosts();
    let with_os =
        run_plan(&cluster, &tree, &facts, &PhaseSelection::new(Some(Phase::Runtime), &[]));
    assert!(with_os.blocked.is_empty());
    let without =
        run_plan(&cluster, &tree, &facts, &PhaseSelection::new(Some(Phase::Runtime), &[Phase::Os]));
    assert!(without.blocked["cp1"].iter().any(|p| p.check == "swap"));
}

#[test]
fn duplicate_hostnames_block_both_hosts() {
    let (cluster, tree, mut facts) = three_hosts();
    if let Some(Ok(f)) = facts.get_mut("cp2") {
        f.hostname = "cp1".into();
    }
    let plan = run_plan(&cluster, &tree, &facts, &PhaseSelection::new(Some(Phase::Runtime), &[]));
    assert_eq!(plan.blocked.keys().collect::<Vec<_>>(), ["cp1", "cp2"]);
    assert!(plan.blocked["cp1"][0].message.contains("cp1, cp2"));
}

#[test]
fn missing_runtime_binaries_come_from_artifacts_or_block() {
    let (cluster, tree, mut facts) = three_hosts();
    for f in facts.values_mut().flatten() {
        f.binaries.insert("containerd".into(), Binary { path: None, version: None });
        f.units.insert(
            "containerd.service".into(),
            UnitState { active: "inactive".into(), enabled: "not-found".into() },
        );
    }
    let sel = PhaseSelection::new(Some(Phase::Runtime), &[]);
    let blocked = run_plan(&cluster, &tree, &facts, &sel);
    assert!(
        blocked.blocked["w1"]
            .iter()
            .any(|p| p.check == "artifacts" && p.message.contains("`containerd`"))
    );

    let mut artifacts = ArtifactInventory::new();
    for name in ["containerd", "containerd-shim-runc-v2", "ctr"] {
        artifacts.insert(
            name.into(),
            LocalArtifact {
                path: format!("/art/containerd/v2.1.6/{name}"),
                sha256: "ab".repeat(32),
                // Allowed by the operator without a checksum: the plan must say so.
                unverified: name == "ctr",
            },
        );
    }
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &facts,
        artifacts: &artifacts,
        selection: &sel,
        observed: &Observed::default(),
        applied: None,
    };
    let planned = plan(&Operation::Apply, input).unwrap();
    assert!(planned.blocked.is_empty());
    let labels: Vec<String> = planned.phases[2].hosts["w1"].iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "push containerd to /usr/local/bin/containerd",
            "push containerd-shim-runc-v2 to /usr/local/bin/containerd-shim-runc-v2",
            "push ctr to /usr/local/bin/ctr (unverified)",
            "create /etc/systemd/system/containerd.service",
            "change /etc/containerd/config.toml",
            "systemctl daemon-reload",
            "systemctl enable containerd.service",
            "systemctl start containerd.service",
            "wait: containerd is active and its socket answers",
            "create /var/lib/kubeforge/loaded/containerd.service"
        ]
    );
    let text = render_text(&planned);
    // The three hosts' runtime steps are alike: shown once.
    let flagged: Vec<&str> = text.lines().filter(|l| l.contains("UNVERIFIED")).collect();
    assert_eq!(flagged.len(), 1, "{text}");
    assert!(flagged[0].contains("+ push ctr -> /usr/local/bin/ctr"), "{text}");
    let json = serde_json::to_value(&planned).unwrap().to_string();
    // JSON keeps one entry per host: ctr is pushed to all three.
    assert_eq!(json.matches("\"unverified\":true").count(), 3, "{json}");
    simulate(&planned, &mut facts);
    let again = plan(
        &Operation::Apply,
        PlanInput {
            cluster: &cluster,
            tree: &tree,
            facts: &facts,
            artifacts: &artifacts,
            selection: &sel,
            observed: &Observed::default(),
            applied: None,
        },
    )
    .unwrap();
    assert!(again.is_converged(), "{}", render_text(&again));
}

#[test]
fn secret_changes_are_redacted_and_metadata_drift_is_planned() {
    let (cluster, mut tree, mut facts) = three_hosts();
    // Make the os phase own a secret file for this test by putting it under sysctl.d.
    tree.hosts.get_mut("cp1").unwrap().insert(
        "/etc/sysctl.d/zz-secret.conf".into(),
        NodeFile { contents: b"# token=NEW\n".to_vec(), mode: 0o600, secret: true },
    );
    if let Some(Ok(f)) = facts.get_mut("cp1") {
        f.files
            .insert("/etc/sysctl.d/zz-secret.conf".into(), present_file(b"# token=OLD\n", 0o600));
        f.files.insert(
            "/etc/sysctl.d/99-kubernetes.conf".into(),
            present_file(
                b"net.ipv4.ip_forward = 1\nnet.bridge.bridge-nf-call-iptables = 1\n",
                0o666,
            ),
        );
    }
    let plan = run_plan(&cluster, &tree, &facts, &PhaseSelection::new(Some(Phase::Os), &[]));
    let text = render_text(&plan);
    assert!(!text.contains("OLD") && !text.contains("NEW"), "{text}");
    assert!(text.contains("~ change /etc/sysctl.d/zz-secret.conf (0600 root:root, 12 bytes, secret)\n        (redacted)\n"), "{text}");
    assert!(
        text.contains(
            "~ mode/owner /etc/sysctl.d/99-kubernetes.conf (0666 root:root -> 0644 root:root"
        ),
        "{text}"
    );
    let json = serde_json::to_string(&plan).unwrap();
    assert!(!json.contains("OLD") && !json.contains("NEW"), "{json}");
}

/// What a unit step does to the facts a later plan reads, for tests that simulate a run.
pub(crate) fn simulate_unit(units: &mut BTreeMap<String, UnitState>, u: &UnitStep) {
    let state = units
        .entry(u.unit.clone())
        .or_insert(UnitState { active: "inactive".into(), enabled: "disabled".into() });
    match u.action {
        UnitAction::Enable => state.enabled = "enabled".into(),
        UnitAction::Disable => state.enabled = "disabled".into(),
        UnitAction::Start | UnitAction::Restart => state.active = "active".into(),
        UnitAction::Stop => state.active = "inactive".into(),
        UnitAction::DaemonReload | UnitAction::Reload => {}
    }
}
