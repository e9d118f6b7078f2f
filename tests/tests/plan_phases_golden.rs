//! Golden plan output of the loadbalancer, control-plane, workers and addons phases for the
//! `stacked` and `external` examples on Debian machines that have been through the earlier
//! phases (haproxy and keepalived from the distribution, nothing of Kubernetes yet), with an
//! artifact inventory holding every Kubernetes binary and image archive. The later phases
//! cannot run in the lab, so this pins what `plan` shows of them, step by step.
//! After an intended change: `KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test
//! plan_phases_golden`, and review the diff.

#[path = "render_support.rs"]
mod render_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use kubeforge_playbooks::facts::{Binary, FileState, HostFacts, OsRelease, UnitState};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{
    self, ArtifactInventory, HostProbe, LocalArtifact, Observed, Phase, PhaseSelection, PlanInput,
};
use kubeforge_playbooks::render::{self, RenderError, RenderInput, RenderTree};
use render_support::{example, repo_root, secrets};

const PHASES: [Phase; 4] =
    [Phase::LoadBalancer, Phase::ControlPlane, Phase::Workers, Phase::Addons];

/// The full render tree; PKI files hold placeholders (their bytes are never shown in a plan,
/// and real keys would make sizes vary).
fn tree(cluster: &Cluster) -> RenderTree {
    let secrets = secrets();
    let mut store = kubeforge_pki::Store::new();
    for ca_key in ["ca.key", "front-proxy-ca.key", "etcd/ca.key"] {
        store.insert(ca_key.into(), b"placeholder\n".to_vec());
    }
    let probe = RenderInput { cluster, pki: &store, secrets: &secrets };
    if let Err(RenderError::Pki(e)) = render::pki::add_files(probe, &mut RenderTree::default()) {
        for rel in e.missing {
            store.insert(rel, b"placeholder\n".to_vec());
        }
    }
    render::render(RenderInput { cluster, pki: &store, secrets: &secrets }).unwrap()
}

/// A Debian 12 machine after the os, runtime, pki and etcd phases: every PKI file in place,
/// haproxy running the distribution's config, keepalived enabled but idle, no kubelet.
fn facts(tree: &RenderTree, host: &str) -> HostFacts {
    let unit =
        |active: &str, enabled: &str| UnitState { active: active.into(), enabled: enabled.into() };
    let present = |bytes: &[u8], mode: u32| FileState::Present {
        sha256: sha256_hex(bytes),
        mode: Some(mode),
        owner: Some("root".into()),
        group: Some("root".into()),
        contents: Some(bytes.to_vec()),
    };
    let mut files = BTreeMap::new();
    for (path, file) in &tree.hosts[host] {
        if path.contains("/pki/") || path.ends_with(".conf") && path.starts_with("/etc/kubernetes/")
        {
            files.insert(path.clone(), present(&file.contents, file.mode));
        }
    }
    files.insert(
        "/etc/haproxy/haproxy.cfg".into(),
        present(b"global\n\tlog /dev/log local0\n\ndefaults\n\tlog global\n\tmode http\n", 0o644),
    );
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
        swaps: vec![],
        hostname: host.into(),
        filesystems: BTreeSet::from(["overlay".to_string()]),
        clock_offset_ms: 0,
        listening_ports: BTreeSet::from([22]),
        units: BTreeMap::from([
            ("containerd.service".into(), unit("active", "enabled")),
            ("haproxy.service".into(), unit("active", "enabled")),
            ("keepalived.service".into(), unit("inactive", "enabled")),
            ("kubelet.service".into(), unit("inactive", "not-found")),
        ]),
        binaries: BTreeMap::from([("kubelet".into(), Binary { path: None, version: None })]),
        files,
        paths_exist: BTreeMap::new(),
        sysctls: BTreeMap::new(),
        commands: BTreeMap::new(),
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn inventory() -> ArtifactInventory {
    let keys = [
        "kubelet",
        "kubectl",
        "crictl",
        "cni:bridge",
        "cni:host-local",
        "cni:loopback",
        "cni:portmap",
        "image:pause",
        "image:kube-apiserver",
        "image:kube-controller-manager",
        "image:kube-scheduler",
        "image:kube-proxy",
        "image:coredns",
    ];
    keys.iter()
        .map(|k| {
            let path = format!("/artifacts/{}", k.replace(':', "/"));
            (
                k.to_string(),
                LocalArtifact { path, sha256: sha256_hex(k.as_bytes()), unverified: false },
            )
        })
        .collect()
}

fn check(name: &str, actual: &str) {
    let path: PathBuf = repo_root().join("tests/golden/plan").join(name);
    if kubeforge_tests::bless() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        panic!(
            "{} differs from the plan:\n{}\n\nIf the change is intended: KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test plan_phases_golden",
            path.display(),
            kubeforge_playbooks::diff::unified_diff(&expected, actual, "golden", "actual")
        );
    }
}

fn golden(example_name: &str) {
    let cluster = example(example_name);
    let tree = tree(&cluster);
    let facts: BTreeMap<String, HostProbe> =
        cluster.hosts.iter().map(|h| (h.name.clone(), Ok(facts(&tree, &h.name)))).collect();
    let skip: Vec<Phase> = Phase::ALL.into_iter().filter(|p| !PHASES.contains(p)).collect();
    let selection = PhaseSelection::new(None, &skip);
    let artifacts = inventory();
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &Observed::default(),
        applied: None,
    };
    let plan = plan::plan(&plan::Operation::Apply, input).unwrap();
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    let text = plan::render_text(&plan);
    assert!(!text.contains("placeholder") && !text.contains("auth_pass"), "{text}");
    check(&format!("later-phases-{example_name}.txt"), &text);
}

#[test]
fn later_phases_of_the_stacked_example_match_golden() {
    golden("stacked");
}

#[test]
fn later_phases_of_the_external_example_match_golden() {
    golden("external");
}

/// The stacked example with `workers` workers `w1`…`wN` instead of its two.
fn many_workers(workers: usize) -> Cluster {
    let source = std::fs::read_to_string(repo_root().join("examples/stacked.yaml")).unwrap();
    let (head, _) = source.split_once("    - name: worker1").unwrap();
    let mut text = head.to_string();
    for i in 1..=workers {
        text.push_str(&format!(
            "    - name: w{i}\n      address: 10.88.{}.{}\n      roles: [worker]\n",
            1 + i / 200,
            10 + i % 200
        ));
    }
    kubeforge_playbooks::spec::load_str(&text, "many.yaml").unwrap()
}

#[test]
fn a_plan_for_fifty_workers_fits_a_terminal_and_shows_each_diff_once() {
    let cluster = many_workers(50);
    let tree = tree(&cluster);
    let mut probes: BTreeMap<String, HostProbe> = BTreeMap::new();
    for host in &cluster.hosts {
        let mut f = facts(&tree, &host.name);
        // Every worker has an older kubelet config: the same change, with a diff, on all 50.
        f.files.insert(
            "/var/lib/kubelet/config.yaml".into(),
            FileState::Present {
                sha256: sha256_hex(b"old: true\n"),
                mode: Some(0o600),
                owner: Some("root".into()),
                group: Some("root".into()),
                contents: Some(b"old: true\n".to_vec()),
            },
        );
        probes.insert(host.name.clone(), Ok(f));
    }
    let skip: Vec<Phase> = Phase::ALL.into_iter().filter(|p| *p != Phase::Workers).collect();
    let selection = PhaseSelection::new(None, &skip);
    let artifacts = inventory();
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &probes,
        artifacts: &artifacts,
        selection: &selection,
        observed: &Observed::default(),
        applied: None,
    };
    let plan = plan::plan(&plan::Operation::Apply, input).unwrap();
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    let text = plan::render_text(&plan);
    let lines = text.lines().count();
    // One screen plus the one 42-line diff; shown per host, this plan was over 3000 lines.
    assert!(lines <= 80, "{lines} lines:\n{text}");
    assert_eq!(text.matches("-old: true").count(), 1, "{text}");
    assert!(text.contains("  w1\u{2013}w50:\n"), "{text}");
    assert!(text.contains("--- /var/lib/kubelet/config.yaml (on w1\u{2013}w50)"), "{text}");
    // JSON keeps one entry per host.
    let json = serde_json::to_value(&plan).unwrap();
    let workers = json["phases"][0]["hosts"].as_object().unwrap();
    assert_eq!(workers.len(), 50);
    assert!(text.ends_with("on 50 host(s).\n"), "{text}");
}
