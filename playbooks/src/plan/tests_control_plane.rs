//! The control-plane, workers and addons phases on the examples' render trees. They cannot run
//! in the lab (no Kubernetes binaries or images offline), so these tests pin their plans
//! exactly: the order of pushes, files, unit actions and gates on a fresh cluster, convergence,
//! restarts on changed files, and the add-ons applied once, from one control plane, before
//! their record is written.
//!
//! The host model records pushed artifacts as hashed files at their destinations: it assumes
//! the fact probe hashes those paths (see `workers::push_needed`).

use std::collections::BTreeMap;

use super::tests::present_file;
use super::tests_phases::*;
use super::*;
use crate::facts::UnitState;

/// The pki phase is planned too: the kubelet's restart depends on what it changes.
const LATER: &[Phase] = &[Phase::Pki, Phase::ControlPlane, Phase::Workers, Phase::Addons];

fn inventory() -> ArtifactInventory {
    let mut inv = ArtifactInventory::new();
    for key in [
        "kubelet",
        "kubectl",
        "crictl",
        "cni:bridge",
        "cni:loopback",
        "image:pause",
        "image:kube-apiserver",
        "image:kube-controller-manager",
        "image:kube-scheduler",
        "image:kube-proxy",
        "image:coredns",
        // Not this phase's: must not be pushed by it.
        "etcd",
    ] {
        let sha256 = files::sha256_hex(key.as_bytes());
        inv.insert(
            key.into(),
            LocalArtifact { path: format!("/art/{key}"), sha256, unverified: false },
        );
    }
    inv
}

fn version(cluster: &Cluster) -> String {
    cluster.kubernetes_version.to_string()
}

fn later_plan(cluster: &Cluster, tree: &RenderTree, facts: &BTreeMap<String, HostProbe>) -> Plan {
    plan_phases(cluster, tree, facts, &inventory(), LATER)
}

#[test]
fn a_fresh_control_plane_is_planned_in_full_and_converges() {
    let cluster = load(example_text("external"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    let first = later_plan(&cluster, &tree, &facts);
    assert!(first.blocked.is_empty(), "{:?}", first.blocked);
    assert_eq!(
        labels(&first, Phase::ControlPlane, "cp2"),
        [
            "push kubelet to /usr/local/bin/kubelet",
            "push kubectl to /usr/local/bin/kubectl",
            "push crictl to /usr/local/bin/crictl",
            "push cni:bridge to /opt/cni/bin/bridge",
            "push cni:loopback to /opt/cni/bin/loopback",
            "push image:pause to /var/lib/kubeforge/images/pause.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/pause.tar",
            "push image:kube-apiserver to /var/lib/kubeforge/images/kube-apiserver.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/kube-apiserver.tar",
            "push image:kube-controller-manager to /var/lib/kubeforge/images/kube-controller-manager.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/kube-controller-manager.tar",
            "push image:kube-scheduler to /var/lib/kubeforge/images/kube-scheduler.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/kube-scheduler.tar",
            "create /etc/kubernetes/audit-policy.yaml",
            "create /etc/kubernetes/authentication-config.yaml",
            "create /etc/kubernetes/encryption-config.yaml",
            "create /etc/kubernetes/manifests/kube-apiserver.yaml",
            "create /etc/kubernetes/manifests/kube-controller-manager.yaml",
            "create /etc/kubernetes/manifests/kube-scheduler.yaml",
            "create /etc/systemd/system/kubelet.service",
            "create /etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "create /var/lib/kubelet/config.yaml",
            "systemctl daemon-reload",
            "systemctl enable kubelet.service",
            "systemctl start kubelet.service",
            "wait: the kubelet is active",
            "create /var/lib/kubeforge/loaded/kubelet.service",
            "wait: kube-apiserver on cp2 answers /readyz at https://10.88.0.12:6443",
            "wait: the API answers /readyz through https://10.88.0.100:6443",
            "create /var/lib/kubeforge/loaded/static-pods",
            "wait: node cp2 is registered",
            "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf label node cp2 node-role.kubernetes.io/control-plane= --overwrite",
            "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf taint node cp2 node-role.kubernetes.io/control-plane:NoSchedule --overwrite",
        ]
    );
    // The image import is skipped when containerd already has the exact image.
    let import = steps(&first, Phase::ControlPlane, "cp2").iter().find_map(|s| match s {
        Step::Run(r) if r.argv.last().is_some_and(|a| a.ends_with("kube-apiserver.tar")) => Some(r),
        _ => None,
    });
    assert_eq!(
        import.and_then(|r| r.unless.clone()).map(|u| u.join(" ")).as_deref(),
        Some(
            "sh -c ctr -n k8s.io images ls -q | grep -qxF 'registry.k8s.io/kube-apiserver:v1.34.1'"
        )
    );
    // The readiness gates run kubectl with the admin kubeconfig against exact servers.
    let gates: Vec<String> = steps(&first, Phase::ControlPlane, "cp2")
        .iter()
        .filter_map(|s| match s {
            Step::Gate(g) if g.argv[0].ends_with("kubectl") => Some(g.argv.join(" ")),
            _ => None,
        })
        .collect();
    assert_eq!(
        gates,
        [
            "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://10.88.0.12:6443 get --raw /readyz",
            "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://10.88.0.100:6443 get --raw /readyz",
            "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf get node cp2",
        ]
    );
    // etcd hosts run no kubelet: nothing in these phases.
    for phase in &LATER[1..] {
        assert!(labels(&first, *phase, "etcd1").is_empty(), "{phase}");
    }

    let cmds = simulate(&first, &mut facts, &version(&cluster));
    assert_eq!(cmds["cp1"].iter().filter(|c| c.contains(" apply ")).count(), 1);
    let again = later_plan(&cluster, &tree, &facts);
    assert!(again.is_converged(), "{}", render_text(&again));
}

#[test]
fn workers_get_the_kubelet_and_the_ready_gate_waits_for_the_addons() {
    let cluster = load(example_text("external"));
    let tree = render(&cluster);
    let facts = facts_for(&cluster);
    let plan = later_plan(&cluster, &tree, &facts);
    assert_eq!(
        labels(&plan, Phase::Workers, "worker1"),
        [
            "push kubelet to /usr/local/bin/kubelet",
            "push crictl to /usr/local/bin/crictl",
            "push cni:bridge to /opt/cni/bin/bridge",
            "push cni:loopback to /opt/cni/bin/loopback",
            "push image:pause to /var/lib/kubeforge/images/pause.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/pause.tar",
            "create /etc/systemd/system/kubelet.service",
            "create /etc/systemd/system/kubelet.service.d/10-kubeadm.conf",
            "create /var/lib/kubelet/config.yaml",
            "systemctl daemon-reload",
            "systemctl enable kubelet.service",
            "systemctl start kubelet.service",
            "wait: the kubelet is active",
            "create /var/lib/kubeforge/loaded/kubelet.service",
        ]
    );
    // Control planes' kubelets are the control-plane phase's.
    assert!(labels(&plan, Phase::Workers, "cp1").is_empty());
    assert_eq!(
        labels(&plan, Phase::Addons, "worker1"),
        [
            "push image:kube-proxy to /var/lib/kubeforge/images/kube-proxy.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/kube-proxy.tar",
            "push image:coredns to /var/lib/kubeforge/images/coredns.tar",
            "ctr -n k8s.io images import /var/lib/kubeforge/images/coredns.tar",
        ]
    );
}

#[test]
fn addons_are_applied_once_from_the_first_control_plane_before_their_record_is_written() {
    let cluster = load(example_text("external"));
    let tree = render(&cluster);
    let facts = facts_for(&cluster);
    let plan = later_plan(&cluster, &tree, &facts);
    let cp1: Vec<String> =
        labels(&plan, Phase::Addons, "cp1").into_iter().filter(|l| !l.contains("image")).collect();
    // Every manifest of the tree (the CNI, CoreDNS, kube-proxy, the backup CronJob), staged,
    // applied in one call, then recorded.
    let names: Vec<&str> = tree.hosts["cp1"]
        .keys()
        .filter_map(|p| p.strip_prefix("/etc/kubernetes/addons/"))
        .collect();
    assert!(names.contains(&"etcd-backup.yaml"), "{names:?}");
    let mut expected: Vec<String> =
        names.iter().map(|n| format!("create /var/lib/kubeforge/addons-staging/{n}")).collect();
    expected.push(
        "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf apply --server-side \
         --field-manager=kubeforge --force-conflicts -f /var/lib/kubeforge/addons-staging"
            .into(),
    );
    expected.extend(names.iter().map(|n| format!("create /etc/kubernetes/addons/{n}")));
    expected.push("rm -rf -- /var/lib/kubeforge/addons-staging".into());
    expected.push("wait: every node is Ready (cp1, cp2, cp3, worker1, worker2)".into());
    assert_eq!(cp1, expected);
    let gate = steps(&plan, Phase::Addons, "cp1").last().cloned();
    let Some(Step::Gate(gate)) = gate else { panic!("gate last") };
    assert_eq!(
        gate.argv.join(" "),
        "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf wait \
         --for=condition=Ready --timeout=10s node/cp1 node/cp2 node/cp3 node/worker1 node/worker2"
    );
    // The other control planes keep a copy and apply nothing.
    let cp2: Vec<String> =
        labels(&plan, Phase::Addons, "cp2").into_iter().filter(|l| !l.contains("image")).collect();
    let records: Vec<String> =
        names.iter().map(|n| format!("create /etc/kubernetes/addons/{n}")).collect();
    assert_eq!(cp2, records);

    // cp1 unreachable: cp2 applies instead.
    let mut without_cp1 = facts.clone();
    without_cp1.insert("cp1".into(), Err("connection refused".into()));
    let plan = later_plan(&cluster, &tree, &without_cp1);
    assert!(
        labels(&plan, Phase::Addons, "cp2").iter().any(|l| l.contains(" apply ")),
        "{}",
        render_text(&plan)
    );
}

#[test]
fn a_failed_apply_is_planned_again() {
    let cluster = load(example_text("external"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    let plan = later_plan(&cluster, &tree, &facts);
    // The host model of a run that stopped at the failed `kubectl apply` on cp1: everything
    // before it happened, nothing after.
    let mut partial = plan.clone();
    for phase in &mut partial.phases {
        if let Some(steps) = phase.hosts.get_mut("cp1")
            && let Some(at) = steps.iter().position(|s| s.label().contains(" apply "))
        {
            steps.truncate(at);
        }
    }
    simulate(&partial, &mut facts, &version(&cluster));
    let again = later_plan(&cluster, &tree, &facts);
    let cp1 = labels(&again, Phase::Addons, "cp1");
    assert!(cp1.iter().any(|l| l.contains(" apply ")), "{cp1:?}");
    assert!(cp1.contains(&"create /etc/kubernetes/addons/etcd-backup.yaml".to_string()));
}

#[test]
fn changed_files_restart_exactly_what_reads_them() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&later_plan(&cluster, &tree, &facts), &mut facts, &version(&cluster));
    assert!(later_plan(&cluster, &tree, &facts).is_converged());

    let mut edited = facts.clone();
    if let Some(Ok(f)) = edited.get_mut("cp1") {
        // An older encryption config: the apiserver reads it at start only.
        f.files
            .insert("/etc/kubernetes/encryption-config.yaml".into(), present_file(b"old\n", 0o600));
    }
    if let Some(Ok(f)) = edited.get_mut("worker1") {
        f.files.insert("/var/lib/kubelet/config.yaml".into(), present_file(b"old: 1\n", 0o644));
    }
    let plan = later_plan(&cluster, &tree, &edited);
    assert_eq!(
        labels(&plan, Phase::ControlPlane, "cp1"),
        [
            "change /etc/kubernetes/encryption-config.yaml",
            // One record covers the three pods' inputs: all three restart (leader-elected, cheap).
            "sh -c crictl ps -q --name '^kube-(apiserver|controller-manager|scheduler)$' | xargs -r crictl stop",
            "wait: kube-apiserver on cp1 answers /readyz at https://10.88.0.11:6443",
            "wait: the API answers /readyz through https://10.88.0.100:6443",
        ]
    );
    assert_eq!(
        labels(&plan, Phase::Workers, "worker1"),
        [
            "change /var/lib/kubelet/config.yaml",
            "systemctl restart kubelet.service",
            "wait: the kubelet is active",
        ]
    );
    // A changed kubelet config makes the add-ons phase wait for every node Ready again.
    assert_eq!(
        labels(&plan, Phase::Addons, "cp1"),
        ["wait: every node is Ready (cp1, cp2, cp3, worker1, worker2)"]
    );

    // A new kubelet.conf from the pki phase restarts the running kubelet (the installed
    // kubelet is judged by its version, which matches).
    let mut renewed = facts.clone();
    if let Some(Ok(f)) = renewed.get_mut("worker2") {
        f.files.insert("/etc/kubernetes/kubelet.conf".into(), present_file(b"old\n", 0o600));
        f.files.remove("/usr/local/bin/kubelet");
    }
    // A running kubelet of another version is an upgrade: apply refuses it and names
    // `kubeforge upgrade plan` (issue 12: one guarded path for version changes).
    let mut older = renewed.clone();
    if let Some(Ok(f)) = older.get_mut("worker2") {
        f.binaries.insert(
            "kubelet".into(),
            crate::facts::Binary {
                path: Some("/usr/local/bin/kubelet".into()),
                version: Some("v1.32.4".into()),
            },
        );
    }
    let selection = crate::plan::PhaseSelection::new(None, &[]);
    let input = crate::plan::PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &older,
        artifacts: &inventory(),
        selection: &selection,
        observed: &crate::plan::Observed::default(),
        applied: None,
    };
    let refused = crate::plan::plan(&crate::plan::Operation::Apply, input).unwrap_err();
    let text = refused.to_string();
    assert!(text.contains("worker2 kubelet 1.32.4 → 1.33.1"), "{text}");
    assert!(text.contains("kubeforge upgrade plan"), "{text}");
    let plan = later_plan(&cluster, &tree, &renewed);
    assert_eq!(
        labels(&plan, Phase::Workers, "worker2"),
        ["systemctl restart kubelet.service", "wait: the kubelet is active",]
    );

    // A stopped kubelet is started, not restarted.
    let mut stopped = facts.clone();
    if let Some(Ok(f)) = stopped.get_mut("cp3") {
        f.units.insert(
            "kubelet.service".into(),
            UnitState { active: "failed".into(), enabled: "enabled".into() },
        );
    }
    let plan = later_plan(&cluster, &tree, &stopped);
    assert_eq!(
        labels(&plan, Phase::ControlPlane, "cp3"),
        [
            "systemctl start kubelet.service",
            "wait: the kubelet is active",
            "wait: kube-apiserver on cp3 answers /readyz at https://10.88.0.13:6443",
            "wait: the API answers /readyz through https://10.88.0.100:6443",
        ]
    );
}

#[test]
fn without_artifacts_nothing_is_pushed_and_installed_binaries_are_judged_by_version() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    if let Some(Ok(f)) = facts.get_mut("worker1") {
        f.binaries.insert(
            "kubelet".into(),
            crate::facts::Binary {
                path: Some("/usr/local/bin/kubelet".into()),
                version: Some("v1.33.1".into()),
            },
        );
    }
    let workers = &[Phase::Pki, Phase::Workers];
    let plan = plan_phases(&cluster, &tree, &facts, &ArtifactInventory::new(), workers);
    let labels = labels(&plan, Phase::Workers, "worker1");
    assert!(!labels.iter().any(|l| l.starts_with("push")), "{labels:?}");
    // With artifacts, the kubelet of the right version at the right path is not pushed again
    // (the probe did not hash it), while crictl, which the probe did not report, is.
    let plan = plan_phases(&cluster, &tree, &facts, &inventory(), workers);
    let pushes: Vec<String> = super::tests_phases::labels(&plan, Phase::Workers, "worker1")
        .into_iter()
        .filter(|l| l.starts_with("push"))
        .collect();
    assert_eq!(pushes[0], "push crictl to /usr/local/bin/crictl");
}

#[test]
fn the_probe_hashes_every_file_these_phases_may_push() {
    let cluster = load(example_text("external"));
    let tree = render(&cluster);
    let request = |host: &str| probe_request(&cluster, &tree, host).hash_files;
    let cp = request("cp1");
    for path in [
        "/usr/local/bin/kubelet",
        "/usr/local/bin/kubectl",
        "/usr/local/bin/crictl",
        "/opt/cni/bin/bridge",
        "/opt/cni/bin/portmap",
        "/var/lib/kubeforge/images/kube-apiserver.tar",
        "/var/lib/kubeforge/images/coredns.tar",
    ] {
        assert!(cp.contains(path), "cp1 probe lacks {path}");
    }
    let worker = request("worker1");
    assert!(worker.contains("/usr/local/bin/kubelet"));
    assert!(worker.contains("/var/lib/kubeforge/images/kube-proxy.tar"));
    assert!(!worker.contains("/usr/local/bin/kubectl"));
    assert!(!worker.contains("/var/lib/kubeforge/images/kube-apiserver.tar"));
    let etcd = request("etcd1");
    let pushed_here = |p: &&String| {
        p.starts_with("/usr/local/bin/kube")
            || p.starts_with("/opt/cni/")
            || p.starts_with("/var/lib/kubeforge/images/")
    };
    assert!(!etcd.iter().any(|p| pushed_here(&p)), "{etcd:?}");
}

#[test]
fn renewed_certificates_restart_the_control_plane_pods_that_read_them() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&later_plan(&cluster, &tree, &facts), &mut facts, &version(&cluster));
    assert!(later_plan(&cluster, &tree, &facts).is_converged());

    // cp1 still has the old apiserver certificate: the pki phase will put the renewed one, and
    // the pods that read it at start are restarted after it.
    let mut renewed = facts.clone();
    if let Some(Ok(f)) = renewed.get_mut("cp1") {
        f.files.insert(
            "/etc/kubernetes/pki/apiserver.crt".into(),
            present_file(b"-----BEGIN CERTIFICATE-----\nold\n", 0o644),
        );
    }
    // worker1's kubelet still serves its old certificate: the kubelet reads it at start.
    if let Some(Ok(f)) = renewed.get_mut("worker1") {
        f.files.insert(
            "/var/lib/kubelet/pki/kubelet.crt".into(),
            present_file(b"-----BEGIN CERTIFICATE-----\nold\n", 0o644),
        );
    }
    let plan = later_plan(&cluster, &tree, &renewed);
    assert_eq!(
        labels(&plan, Phase::Workers, "worker1"),
        ["systemctl restart kubelet.service", "wait: the kubelet is active"]
    );
    let cp1 = labels(&plan, Phase::ControlPlane, "cp1");
    assert_eq!(
        cp1.first().map(String::as_str),
        Some(
            "sh -c crictl ps -q --name '^kube-(apiserver|controller-manager|scheduler)$' | xargs -r crictl stop"
        ),
        "{cp1:?}"
    );
    assert!(cp1.iter().any(|l| l.contains("answers /readyz")), "{cp1:?}");
    assert!(labels(&plan, Phase::ControlPlane, "cp2").is_empty(), "only cp1 changed");
}
