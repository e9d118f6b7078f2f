//! Golden plan output. Facts come from probe output captured on lab machines (Debian bookworm
//! under systemd-nspawn, before any apply) in `tests/golden/plan/*.probe.txt`; the plan of a
//! two-host spec against them is pinned as text and JSON. After an intended change:
//! `KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test plan_golden`, and review the diff.
//! To recapture a probe: `KUBEFORGE_PRINT_PROBE=cp1 cargo test ... -- --nocapture` prints the
//! script; run it on a fresh lab machine (`ssh … sh -s < script`) into `<host>.probe.txt`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kubeforge_playbooks::facts::{ProbeWindow, parse_probe_output};
use kubeforge_playbooks::plan::{
    self, ArtifactInventory, Observed, Phase, PhaseSelection, PlanInput,
};
use kubeforge_playbooks::render::{NodeFile, RenderTree};

const SPEC: &str = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: golden
spec:
  kubernetesVersion: v1.33.1
  loadBalancer:
    mode: none
  hosts:
    - name: cp1
      address: 10.202.255.11
      roles: [control-plane]
    - name: w1
      address: 10.202.255.51
      roles: [worker]
";

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("golden/plan")
}

fn tree() -> RenderTree {
    let mut tree = RenderTree::default();
    let file = |s: &str, mode, secret| NodeFile { contents: s.as_bytes().to_vec(), mode, secret };
    for host in ["cp1", "w1"] {
        tree.insert(
            host,
            "/etc/modules-load.d/kubernetes.conf",
            file("overlay\nbr_netfilter\n", 0o644, false),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/sysctl.d/99-kubernetes.conf",
            file("net.bridge.bridge-nf-call-iptables = 1\nnet.ipv4.ip_forward = 1\n", 0o644, false),
        )
        .unwrap();
        tree.insert(host, "/etc/containerd/config.toml", file("version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  SystemdCgroup = true\n", 0o644, false)).unwrap();
        tree.insert(
            host,
            "/etc/containerd/registry-auth.toml",
            file("password = \"s3cret\"\n", 0o600, true),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/kubernetes/pki/ca.crt",
            file("-----BEGIN CERTIFICATE-----\n", 0o644, false),
        )
        .unwrap();
    }
    tree
}

/// The probe's own clock reading, so the captured output has no clock offset.
fn window_of(output: &str) -> ProbeWindow {
    let clock = output.split("@@kf clock \n").nth(1).and_then(|s| s.lines().next()).unwrap_or("0");
    let (secs, frac) = clock.split_once('.').unwrap_or((clock, "0"));
    let ns = secs.parse::<i128>().unwrap() * 1_000_000_000
        + format!("{frac:0<9}")[..9].parse::<i128>().unwrap();
    ProbeWindow { sent_unix_ns: ns, received_unix_ns: ns }
}

fn check(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if kubeforge_tests::bless() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    if expected != actual {
        panic!(
            "{} differs from the plan:\n{}\n\nIf the change is intended: KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test plan_golden",
            path.display(),
            kubeforge_playbooks::diff::unified_diff(&expected, actual, "golden", "actual")
        );
    }
}

#[test]
fn plan_of_fresh_lab_machines_matches_golden() {
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "golden.yaml").unwrap();
    let tree = tree();
    if let Ok(host) = std::env::var("KUBEFORGE_PRINT_PROBE") {
        println!(
            "{}",
            kubeforge_playbooks::facts::probe_script(&plan::probe_request(&cluster, &tree, &host))
        );
    }
    let mut facts = BTreeMap::new();
    for host in ["cp1", "w1"] {
        let output =
            std::fs::read_to_string(golden_dir().join(format!("{host}.probe.txt"))).unwrap();
        let request = plan::probe_request(&cluster, &tree, host);
        let parsed = parse_probe_output(&request, &output, window_of(&output)).unwrap();
        assert_eq!(parsed.os.id, "debian");
        facts.insert(host.to_string(), Ok(parsed));
    }
    let artifacts = ArtifactInventory::new();
    let selection = PhaseSelection::new(Some(Phase::Runtime), &[]);
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
    let text = plan::render_text(&plan);
    assert!(!text.contains("s3cret"));
    check("fresh-lab.txt", &text);
    let json = serde_json::to_string_pretty(&plan).unwrap() + "\n";
    assert!(!json.contains("s3cret"));
    check("fresh-lab.json", &json);

    // A host that is gone is named, and the other is planned as before.
    facts.insert(
        "w1".into(),
        Err("w1: cannot connect to 10.202.255.51:22: No route to host".into()),
    );
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
    check("one-unreachable.txt", &plan::render_text(&plan));
}
