//! Preflight on machines as the lab builds them (facts parsed from probe output captured on
//! fresh lab machines, `tests/golden/plan/*.probe.txt`) with the lab's offline directory (etcd
//! v3.5.1 only, built the way `lab up` lays it out): the phases up to the load balancer have
//! everything, and the control-plane and workers phases are refused naming each missing file,
//! its version and the path it was looked for at. The messages are pinned in
//! `tests/golden/artifacts/`; after an intended change:
//! `KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test artifacts_preflight`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kubeforge::artifacts::inventory_with;
use kubeforge_playbooks::artifacts::{catalog, needs};
use kubeforge_playbooks::facts::{ProbeRequest, ProbeWindow, parse_probe_output};
use kubeforge_playbooks::plan::{self, Observed, Phase, PhaseSelection, PlanInput};
use kubeforge_playbooks::render::RenderTree;

const SPEC: &str = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: lab
spec:
  kubernetesVersion: v1.33.1
  etcd:
    version: v3.5.1
  loadBalancer:
    mode: none
  artifacts:
    source: dir:artifacts
  hosts:
    - name: cp1
      address: 10.202.255.11
      roles: [control-plane]
    - name: w1
      address: 10.202.255.51
      roles: [worker]
";

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden").join(name)
}

fn window_of(output: &str) -> ProbeWindow {
    let clock = output.split("@@kf clock \n").nth(1).and_then(|s| s.lines().next()).unwrap_or("0");
    let (secs, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let ns = secs.parse::<i128>().unwrap() * 1_000_000_000
        + format!("{frac:0<9}")[..9].parse::<i128>().unwrap();
    ProbeWindow { sent_unix_ns: ns, received_unix_ns: ns }
}

/// What the captured probes were asked (their sections), so that later additions to the
/// planner's probe request do not invalidate the capture.
fn captured_request() -> ProbeRequest {
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect();
    let managed = [
        "/etc/containerd/config.toml",
        "/etc/containerd/registry-auth.toml",
        "/etc/kubernetes/pki/ca.crt",
        "/etc/modules-load.d/kubernetes.conf",
        "/etc/sysctl.d/99-kubernetes.conf",
    ];
    ProbeRequest {
        hash_files: set(&managed),
        read_files: set(&[
            "/etc/containerd/config.toml",
            "/etc/fstab",
            "/etc/hosts",
            "/etc/kubernetes/pki/ca.crt",
            "/etc/modules-load.d/kubernetes.conf",
            "/etc/sysctl.d/99-kubernetes.conf",
        ]),
        paths_exist: set(&["/proc/sys/net/bridge"]),
        sysctls: set(&["net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward"]),
        units: set(&["containerd.service", "etcd.service", "haproxy.service", "kubelet.service"]),
        binaries: set(&["containerd", "etcd", "kubelet", "runc"]),
        commands: Default::default(),
    }
}

fn facts() -> BTreeMap<String, plan::HostProbe> {
    ["cp1", "w1"]
        .iter()
        .map(|host| {
            let output =
                std::fs::read_to_string(golden(&format!("plan/{host}.probe.txt"))).unwrap();
            let request = captured_request();
            (
                host.to_string(),
                Ok(parse_probe_output(&request, &output, window_of(&output)).unwrap()),
            )
        })
        .collect()
}

/// The lab's directory: etcd v3.5.1 (etcd, etcdctl, etcdutl) and nothing else, with the
/// SHA256SUMS the lab writes for its bundle (its own function), so lab runs stay verified.
fn lab_artifacts(spec_dir: &Path) {
    let root = spec_dir.join("artifacts");
    let dir = root.join("etcd/v3.5.1");
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for bin in ["etcd", "etcdctl", "etcdutl"] {
        std::fs::write(dir.join(bin), format!("{bin} 3.5.1")).unwrap();
        files.push(std::path::PathBuf::from("etcd/v3.5.1").join(bin));
    }
    let sums = kubeforge::lab::artifacts::sha256sums(&root, &files).unwrap();
    std::fs::write(root.join("SHA256SUMS"), sums).unwrap();
}

/// Each host's `artifacts` problems (message and remedy), as text.
fn artifact_problems(until: Phase, skip: &[Phase]) -> String {
    let spec_dir = tempfile::tempdir().unwrap();
    lab_artifacts(spec_dir.path());
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "lab.yaml").unwrap();
    let tree = RenderTree::default();
    let facts = facts();
    let selection = PhaseSelection::new(Some(until), skip);
    let artifacts =
        inventory_with(&cluster, spec_dir.path(), &selection, None, catalog::ENTRIES).unwrap();
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
    let mut text = String::new();
    for (host, problems) in &plan.blocked {
        for p in problems.iter().filter(|p| p.check == "artifacts") {
            let _ = writeln!(text, "{host}: {}\n  remedy: {}", p.message, p.remedy);
        }
    }
    text
}

fn check(name: &str, actual: &str) {
    let path = golden(&format!("artifacts/{name}"));
    if kubeforge_tests::bless() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == actual,
        "{} differs:\n{}\nIf intended: KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test artifacts_preflight",
        path.display(),
        kubeforge_playbooks::diff::unified_diff(&expected, actual, "golden", "actual")
    );
}

/// Only preflight and the phase under test are planned: this checks what preflight says, not
/// how the other phases plan.
fn only(phase: Phase) -> Vec<Phase> {
    Phase::ALL.into_iter().filter(|p| *p != Phase::Preflight && *p != phase).collect()
}

#[test]
fn lab_directory_has_everything_up_to_the_load_balancer() {
    // Through the planner for the phases whose planners need nothing else from the tree.
    for phase in [Phase::Runtime, Phase::LoadBalancer] {
        assert_eq!(artifact_problems(phase, &only(phase)), "", "{phase}");
    }
    // The etcd phase's planner needs the PKI in the render tree; what preflight asks of the
    // inventory for it is checked directly: every key the selected phases need from the
    // directory is there (the runtime's come from the hosts' packages).
    let spec_dir = tempfile::tempdir().unwrap();
    lab_artifacts(spec_dir.path());
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "lab.yaml").unwrap();
    let selection = PhaseSelection::new(Some(Phase::LoadBalancer), &[]);
    let inventory =
        inventory_with(&cluster, spec_dir.path(), &selection, None, catalog::ENTRIES).unwrap();
    let wanted: Vec<String> = needs::selected(&cluster, &selection)
        .into_iter()
        .filter(|n| !n.host_may_provide)
        .map(|n| n.key)
        .collect();
    assert_eq!(wanted, ["etcd", "etcdctl", "etcdutl"]);
    assert!(wanted.iter().all(|k| inventory.contains_key(k)), "{inventory:?}");
}

#[test]
fn control_plane_and_workers_name_each_missing_file() {
    let text = artifact_problems(Phase::ControlPlane, &only(Phase::ControlPlane));
    assert!(text.starts_with(
        "cp1: control-plane phase: kubelet v1.33.1: `kubelet` not found in the artifact \
         directory; looked for artifacts/kubelet/v1.33.1/kubelet (relative to the spec file's folder)"
    ), "{text}");
    assert!(!text.contains("w1:"), "{text}");
    check("preflight-control-plane.txt", &text);
    let text = artifact_problems(Phase::Workers, &only(Phase::Workers));
    assert!(text.starts_with("w1: workers phase: kubelet v1.33.1"), "{text}");
    check("preflight-workers.txt", &text);
}
