//! The upgrade planner on the stacked example moved from v1.33.1 to v1.34.1 (etcd 3.5.21 →
//! the 3.6 kubeadm pairs with v1.34). Kubernetes' binaries cannot run in the lab, so the order
//! of every step is pinned here, independently of any golden file: etcd followers before the
//! leader, each gated on health and its version and recorded; control planes one at a time
//! with their manifests kept and the diff shown; kubelets drained in batches of
//! `max_unavailable`; refusals with the rule named; nothing to do once every host runs the
//! target; a member already upgraded skipped (resume).

use std::collections::BTreeMap;

use super::super::tests::present_file;
use super::super::tests_phases::{example_text, facts_for, load, render};
use super::super::*;
use super::skew::{Component, Semver};
use super::{COREDNS_PROBE, KUBE_PROXY_PROBE};
use crate::etcd_membership::CurrentMember;
use crate::facts::{Binary, UnitState};

const HOSTS: [&str; 5] = ["cp1", "cp2", "cp3", "worker1", "worker2"];

fn target_cluster() -> crate::model::Cluster {
    load(
        &example_text("stacked")
            .replace("kubernetesVersion: v1.33.1", "kubernetesVersion: v1.34.1"),
    )
}

fn artifacts() -> ArtifactInventory {
    ["etcd", "etcdctl", "etcdutl", "kubelet"]
        .into_iter()
        .map(|k| {
            let sha256 = files::sha256_hex(k.as_bytes());
            (k.to_string(), LocalArtifact { path: format!("/art/{k}"), sha256, unverified: false })
        })
        .collect()
}

/// The stacked example at another Kubernetes version (its etcd left to the default pairing).
fn cluster_at(k8s: &str) -> crate::model::Cluster {
    load(
        &example_text("stacked")
            .replace("kubernetesVersion: v1.33.1", &format!("kubernetesVersion: {k8s}")),
    )
}

/// Lab facts of a cluster `apply` left at `k8s`: every host's kubelet active at `k8s`, the
/// control planes' static pod manifests and add-on records as `apply` rendered them for
/// `k8s`, etcd active, and the first control plane's probe reading the kube-proxy DaemonSet
/// and the CoreDNS Deployment at `k8s`'s images.
fn running(cluster: &crate::model::Cluster, k8s: &str) -> BTreeMap<String, HostProbe> {
    let mut facts = facts_for(cluster);
    let old = cluster_at(k8s);
    let old_tree = render(&old);
    let coredns = crate::versions::release(old.kubernetes_version).expect("supported").coredns;
    for (name, probe) in facts.iter_mut() {
        let Ok(f) = probe else { continue };
        for (path, file) in old_tree.hosts.get(name).into_iter().flatten() {
            if path.starts_with("/etc/kubernetes/manifests/")
                || path.starts_with("/etc/kubernetes/addons/")
            {
                f.files.insert(path.clone(), present_file(&file.contents, file.mode));
            }
        }
        if name == "cp1" {
            let said =
                |image: String| crate::facts::CommandOutput { exit_status: 0, stdout: image };
            f.commands
                .insert(KUBE_PROXY_PROBE.into(), said(format!("registry.k8s.io/kube-proxy:{k8s}")));
            f.commands.insert(
                COREDNS_PROBE.into(),
                said(format!("registry.k8s.io/coredns/coredns:{coredns}")),
            );
        }
        f.units.insert(
            "kubelet.service".into(),
            UnitState { active: "active".into(), enabled: "enabled".into() },
        );
        f.binaries.insert(
            "kubelet".into(),
            Binary { path: Some("/usr/local/bin/kubelet".into()), version: Some(k8s.into()) },
        );
        if name.starts_with("cp") {
            f.units.insert(
                "etcd.service".into(),
                UnitState { active: "active".into(), enabled: "enabled".into() },
            );
        }
    }
    facts
}

fn observed(versions: &[(&str, &str)], leader: &str) -> Observed {
    let members = versions
        .iter()
        .enumerate()
        .map(|(i, (h, _))| CurrentMember {
            name: h.to_string(),
            id: i as u64 + 1,
            peer_urls: vec![format!("https://{h}:2380")],
            is_learner: false,
            healthy: true,
        })
        .collect();
    let status = versions
        .iter()
        .map(|(h, v)| {
            (h.to_string(), MemberReport { version: v.to_string(), is_leader: *h == leader })
        })
        .collect();
    Observed {
        etcd: Some(EtcdObserved { answered_by: "cp1".into(), members, status }),
        local_pki_dir: "/state/pki".into(),
    }
}

/// `f` on the upgrade's planner input: the rendered target, the test artifacts, every phase.
fn with_input<T>(
    cluster: &crate::model::Cluster,
    facts: &BTreeMap<String, HostProbe>,
    observed: &Observed,
    f: impl FnOnce(PlanInput<'_>) -> T,
) -> T {
    let tree = render(cluster);
    let selection = PhaseSelection::new(None, &[]);
    let artifacts = artifacts();
    f(PlanInput {
        cluster,
        tree: &tree,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed,
        applied: None,
    })
}

fn plan_upgrade(
    cluster: &crate::model::Cluster,
    facts: &BTreeMap<String, HostProbe>,
    observed: &Observed,
    max_unavailable: usize,
) -> Plan {
    let op = Operation::Upgrade { spec_file: "c.yaml".into(), max_unavailable };
    with_input(cluster, facts, observed, |input| plan(&op, input).expect("an upgrade always plans"))
}

/// `upgrade plan`'s version report on `facts`, with etcd observed on 3.5.
fn report_of(
    cluster: &crate::model::Cluster,
    facts: &BTreeMap<String, HostProbe>,
) -> super::UpgradeReport {
    with_input(cluster, facts, &old_etcd(), |input| {
        super::report(input).expect("a cluster with control planes has a report")
    })
}

/// `host` as a finished upgrade leaves it: the target binaries, the rendered unit and
/// certificates, and the record of what etcd loaded.
fn upgraded(cluster: &crate::model::Cluster, facts: &mut BTreeMap<String, HostProbe>, host: &str) {
    let tree = render(cluster);
    let arts = artifacts();
    {
        let Some(Ok(f)) = facts.get_mut(host) else { panic!("{host}") };
        for bin in ["etcd", "etcdctl", "etcdutl"] {
            let mut file = present_file(bin.as_bytes(), 0o755);
            if let crate::facts::FileState::Present { sha256, .. } = &mut file {
                *sha256 = arts[bin].sha256.clone();
            }
            f.files.insert(format!("/usr/local/bin/{bin}"), file);
        }
        let mut paths = vec!["/etc/systemd/system/etcd.service"];
        paths.extend(super::super::etcd::PKI_FILES);
        for path in paths {
            let file = &tree.hosts[host][path];
            f.files.insert(path.into(), present_file(&file.contents, file.mode));
        }
    }
    let selection = PhaseSelection::new(None, &[]);
    let observed = Observed::default();
    let input = PlanInput {
        cluster,
        tree: &tree,
        facts,
        artifacts: &arts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    let Some(Ok(f)) = facts.get(host) else { panic!("{host}") };
    let mut loads = super::super::restart::Loads::new("etcd.service").file(
        input,
        host,
        f,
        "/etc/systemd/system/etcd.service",
    );
    for path in super::super::etcd::PKI_FILES {
        loads = loads.file(input, host, f, path);
    }
    let record = loads.binary(input, f, "etcd", "/usr/local/bin/etcd").record();
    let Some(Ok(f)) = facts.get_mut(host) else { panic!("{host}") };
    f.files.insert("/var/lib/kubeforge/loaded/etcd.service".into(), present_file(&record, 0o644));
}

fn old_etcd() -> Observed {
    observed(&[("cp1", "3.5.21"), ("cp2", "3.5.21"), ("cp3", "3.5.21")], "cp2")
}

fn sequence(plan: &Plan, phase: Phase) -> Vec<String> {
    let p = plan.phases.iter().find(|p| p.phase == phase).expect("phase planned");
    p.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect()
}

#[test]
fn etcd_members_restart_one_at_a_time_followers_first_each_gated_and_recorded() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.33.1");
    let tree = render(&cluster);
    for h in ["cp1", "cp2", "cp3"] {
        let unit = &tree.hosts[h]["/etc/systemd/system/etcd.service"];
        if let Some(Ok(f)) = facts.get_mut(h) {
            f.files.insert(
                "/etc/systemd/system/etcd.service".into(),
                present_file(&unit.contents, unit.mode),
            );
        }
    }
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert!(plan.blocked.is_empty(), "{:#?}", plan.blocked);
    let target = &cluster.etcd.version;
    assert!(target.starts_with("v3.6."), "{target}");
    let t = target.trim_start_matches('v');
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).expect("etcd phase");
    for h in ["cp1", "cp2", "cp3"] {
        let staged: Vec<String> = etcd.hosts[h].iter().map(Step::label).collect();
        assert_eq!(
            staged,
            [
                format!("push etcd {target} to /usr/local/bin/etcd"),
                format!("push etcdctl {target} to /usr/local/bin/etcdctl"),
                format!("push etcdutl {target} to /usr/local/bin/etcdutl"),
            ]
        );
    }
    let member = |h: &str| {
        vec![
            format!("{h}: systemctl restart etcd.service"),
            format!("{h}: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)"),
            format!("{h}: etcd: wait until {h} runs etcd {t} (up to 60 s)"),
            format!("{h}: create /var/lib/kubeforge/loaded/etcd.service"),
        ]
    };
    let mut want = member("cp1");
    want.extend(member("cp3"));
    want.extend(member("cp2")); // the leader, last
    assert_eq!(sequence(&plan, Phase::Etcd), want);

    // A unit rendered differently for the new release is put with the binaries, then
    // reloaded, before any restart.
    let mut old_unit = facts.clone();
    if let Some(Ok(f)) = old_unit.get_mut("cp3") {
        f.files.insert(
            "/etc/systemd/system/etcd.service".into(),
            present_file(b"[Service]\nExecStart=/usr/local/bin/etcd --logger=capnslog\n", 0o644),
        );
    }
    let plan = plan_upgrade(&cluster, &old_unit, &old_etcd(), 1);
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).expect("etcd phase");
    let cp3: Vec<String> = etcd.hosts["cp3"].iter().map(Step::label).collect();
    assert_eq!(cp3[3], "change /etc/systemd/system/etcd.service");
    assert_eq!(cp3[4], "systemctl daemon-reload");
    assert_eq!(cp3.len(), 5);
    assert_eq!(plan.operation.rerun(), "kubeforge upgrade apply -f c.yaml");
}

#[test]
fn a_member_already_on_the_target_is_skipped_so_a_rerun_continues_with_the_next() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.34.1");
    upgraded(&cluster, &mut facts, "cp1");
    let t = cluster.etcd.version.trim_start_matches('v').to_string();
    let resumed = observed(&[("cp1", &t), ("cp2", "3.5.21"), ("cp3", "3.5.21")], "cp2");
    let plan = plan_upgrade(&cluster, &facts, &resumed, 1);
    let restarts: Vec<String> = sequence(&plan, Phase::Etcd)
        .into_iter()
        .filter(|l| l.ends_with("systemctl restart etcd.service"))
        .collect();
    assert_eq!(
        restarts,
        ["cp3: systemctl restart etcd.service", "cp2: systemctl restart etcd.service"]
    );
    // Interrupted between its restart and its record: it is restarted again, not trusted.
    let mut no_record = facts.clone();
    if let Some(Ok(f)) = no_record.get_mut("cp1") {
        f.files.remove("/var/lib/kubeforge/loaded/etcd.service");
    }
    let plan = plan_upgrade(&cluster, &no_record, &resumed, 1);
    let restarted: Vec<String> = sequence(&plan, Phase::Etcd)
        .into_iter()
        .filter(|l| l.ends_with("systemctl restart etcd.service"))
        .collect();
    assert_eq!(restarted.len(), 3, "{restarted:?}");
}

const K: &str = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";

fn phase(plan: &Plan, phase: Phase) -> &PhasePlan {
    plan.phases.iter().find(|p| p.phase == phase).unwrap_or_else(|| panic!("{phase} planned"))
}

#[test]
fn control_planes_roll_one_at_a_time_with_manifests_kept_diffs_shown_and_a_guarded_readyz() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    let cp = phase(&plan, Phase::ControlPlane);
    assert_eq!(cp.batch, Some(1), "one control plane at a time");
    assert_eq!(cp.hosts.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"]);
    let labels: Vec<String> = cp.hosts["cp1"].iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "sh -c mkdir -p -m 0700 /etc/kubernetes/manifests-before-upgrade && cp -a \
             /etc/kubernetes/manifests/. /etc/kubernetes/manifests-before-upgrade/",
            "change /etc/kubernetes/manifests/kube-apiserver.yaml",
            "change /etc/kubernetes/manifests/kube-controller-manager.yaml",
            "change /etc/kubernetes/manifests/kube-scheduler.yaml",
            "wait: kube-apiserver 1.34.1 on cp1 answers /readyz, else roll cp1 back to its kept \
             manifests (1.33.1)",
            "wait: the API answers /readyz through https://10.88.0.100:6443",
        ]
    );
    for (i, pod) in [(1, "kube-apiserver"), (2, "kube-controller-manager"), (3, "kube-scheduler")] {
        let Step::PutFile(put) = &cp.hosts["cp1"][i] else { panic!("a manifest") };
        let FileReason::Change { diff: DiffText::Unified(diff) } = &put.reason else {
            panic!("a diff: {:?}", put.reason)
        };
        assert!(diff.contains(&format!("-    image: registry.k8s.io/{pod}:v1.33.1")), "{diff}");
        assert!(diff.contains(&format!("+    image: registry.k8s.io/{pod}:v1.34.1")), "{diff}");
    }
    // The way back is plan data: the kept manifests put back, then the old apiserver awaited.
    let Step::Guarded(guard) = &cp.hosts["cp2"][4] else { panic!("a guarded gate") };
    assert_eq!(
        guard.gate.argv.join(" "),
        format!("{K} --server https://10.88.0.12:6443 get --raw /readyz")
    );
    let undo: Vec<String> = guard.on_failure.iter().map(Step::label).collect();
    assert_eq!(
        undo,
        [
            "sh -c cp -a /etc/kubernetes/manifests-before-upgrade/kube-apiserver.yaml \
             /etc/kubernetes/manifests-before-upgrade/kube-controller-manager.yaml \
             /etc/kubernetes/manifests-before-upgrade/kube-scheduler.yaml \
             /etc/kubernetes/manifests/",
            "wait: kube-apiserver 1.33.1 on cp2 answers /readyz again",
        ]
    );
    assert!(plan.operation.stops_at_first_failure());
    // `-o json` carries the way back as plan data.
    let json = serde_json::to_value(&cp.hosts["cp2"][4]).unwrap();
    assert_eq!(json["kind"], "guarded");
    assert_eq!(json["gate"]["attempts"], 60);
    assert_eq!(json["onFailure"][0]["kind"], "run");
    assert_eq!(json["why"], "roll cp2 back to its kept manifests (1.33.1)");
}

#[test]
fn binaries_and_images_go_onto_a_control_plane_before_its_manifests() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let tree = render(&cluster);
    let selection = PhaseSelection::new(None, &[]);
    let mut arts = artifacts();
    for k in ["kubectl", "image:kube-apiserver"] {
        let sha256 = files::sha256_hex(k.as_bytes());
        arts.insert(
            k.into(),
            LocalArtifact { path: format!("/art/{k}"), sha256, unverified: false },
        );
    }
    let observed = old_etcd();
    let input = PlanInput {
        cluster: &cluster,
        tree: &tree,
        facts: &facts,
        artifacts: &arts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    let op = Operation::Upgrade { spec_file: "c.yaml".into(), max_unavailable: 1 };
    let plan = plan(&op, input).unwrap();
    let labels: Vec<String> =
        phase(&plan, Phase::ControlPlane).hosts["cp3"].iter().map(Step::label).collect();
    assert_eq!(labels[0], "push kubectl to /usr/local/bin/kubectl");
    assert_eq!(
        labels[1],
        "push image:kube-apiserver to /var/lib/kubeforge/images/kube-apiserver.tar"
    );
    assert_eq!(
        labels[2],
        "ctr -n k8s.io images import /var/lib/kubeforge/images/kube-apiserver.tar"
    );
    assert!(labels[3].contains("manifests-before-upgrade"), "{labels:?}");
}

fn drain_label(h: &str) -> String {
    format!("cp1: sh -c {}", super::drain_script(h))
}

/// The workers phase's sequence cut into its batches (a batch starts at a cordon that follows
/// an uncordon).
fn batches(seq: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut after_uncordon = true;
    for line in seq {
        if let Some(node) = line.strip_prefix(&format!("cp1: {K} cordon ")) {
            if after_uncordon {
                out.push(Vec::new());
            }
            after_uncordon = false;
            out.last_mut().unwrap().push(node.to_string());
        } else if line.contains(" uncordon ") {
            after_uncordon = true;
        }
    }
    out
}

#[test]
fn kubelets_go_control_planes_one_at_a_time_then_workers_in_batches_of_max_unavailable() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 2);
    let seq = sequence(&plan, Phase::Workers);
    let drain = |h: &str| {
        vec![
            format!("cp1: {K} label --overwrite node {h} kubeforge.dev/upgrade=cordoned"),
            format!("cp1: {K} cordon {h}"),
            drain_label(h),
        ]
    };
    let kubelet = |h: &str| {
        vec![
            format!("{h}: push kubelet v1.34.1 to /usr/local/bin/kubelet"),
            format!("{h}: systemctl restart kubelet.service"),
            format!("cp1: wait: node {h} reports kubelet v1.34.1"),
        ]
    };
    let uncordon = |h: &str| {
        vec![
            format!("cp1: {K} uncordon {h}"),
            format!("cp1: {K} label node {h} kubeforge.dev/upgrade-"),
        ]
    };
    let mut want = Vec::new();
    for batch in [&["cp1"][..], &["cp2"], &["cp3"], &["worker1", "worker2"]] {
        for h in batch {
            want.extend(drain(h));
        }
        for h in batch {
            want.extend(kubelet(h));
        }
        for h in batch {
            want.extend(uncordon(h));
        }
    }
    assert_eq!(seq, want);
    assert_eq!(HOSTS.len(), 5);
}

#[test]
fn three_workers_with_max_unavailable_two_go_in_batches_of_two_then_one() {
    let text = example_text("stacked")
        .replace("kubernetesVersion: v1.33.1", "kubernetesVersion: v1.34.1")
        .replace(
            "      ssh: {user: admin, port: 2222}    # per-host overrides of spec.ssh\n",
            "      ssh: {user: admin, port: 2222}    # per-host overrides of spec.ssh\n    - name: \
             worker3\n      address: 10.88.0.23\n      roles: [worker]\n",
        );
    let cluster = load(&text);
    assert_eq!(cluster.hosts.len(), 6);
    let facts = running(&cluster, "v1.33.1");
    for (max, want) in [
        (
            2,
            vec![
                vec!["cp1"],
                vec!["cp2"],
                vec!["cp3"],
                vec!["worker1", "worker2"],
                vec!["worker3"],
            ],
        ),
        (
            1,
            vec![
                vec!["cp1"],
                vec!["cp2"],
                vec!["cp3"],
                vec!["worker1"],
                vec!["worker2"],
                vec!["worker3"],
            ],
        ),
        (5, vec![vec!["cp1"], vec!["cp2"], vec!["cp3"], vec!["worker1", "worker2", "worker3"]]),
    ] {
        let plan = plan_upgrade(&cluster, &facts, &old_etcd(), max);
        assert_eq!(batches(&sequence(&plan, Phase::Workers)), want, "--max-unavailable {max}");
    }
}

#[test]
fn the_pdb_gate_runs_first_on_the_first_control_plane_naming_every_node_to_drain() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert_eq!(plan.phases[0].phase, Phase::Preflight);
    let pre = &plan.phases[0].sequence;
    assert_eq!(pre.len(), 1);
    assert_eq!(pre[0].host, "cp1");
    let Step::Gate(g) = &pre[0].step else { panic!("a gate") };
    assert_eq!(
        g.what,
        "no PodDisruptionBudget blocks draining cp1, cp2, cp3, worker1, worker2 (else the pods \
         are named)"
    );
    assert_eq!(g.attempts, 1, "a budget allowing no disruption is reported, not waited out");
    assert!(g.argv[2].contains(r#"nodes=" cp1 cp2 cp3 worker1 worker2 ""#), "{}", g.argv[2]);
}

/// Runs a planned `sh -c` script with `kubectl` replaced by a stand-in that answers as the
/// real one does for the calls the script makes; returns (exit status, stderr).
fn run_with_kubectl(script: &str, kubectl: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let stub = dir.path().join("kubectl");
    std::fs::write(&stub, format!("#!/bin/sh\n{kubectl}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&stub, std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = script.replace("/usr/local/bin/kubectl", stub.to_str().unwrap());
    let out = std::process::Command::new("sh").arg("-c").arg(script).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_pdb_gate_names_the_pods_a_budget_protects_on_nodes_to_drain_and_passes_otherwise() {
    let Step::Gate(g) = super::pdb_gate(&["worker1", "worker2"]) else { panic!() };
    // What `kubectl get pdb -A -o go-template=…` and `get pods -l … -o go-template=…` print: a
    // budget with no disruption left over app=web in `shop` (pods on worker1 and cp1) and one
    // over app=db in `data` (a pod on worker2).
    let kubectl = r#"case "$*" in
  *"get pdb -A"*) printf 'shop web-pdb app=web,\ndata db-pdb app=db,tier=x,\n' ;;
  *"get pods -n shop -l app=web "*) printf 'web-1 worker1\nweb-2 cp1\n' ;;
  *"get pods -n data -l app=db,tier=x "*) printf 'db-0 worker2\n' ;;
  *) echo "unexpected: $*" >&2; exit 9 ;;
esac"#;
    let (status, stderr) = run_with_kubectl(&g.argv[2], kubectl);
    assert_eq!(status, 1, "{stderr}");
    assert_eq!(
        stderr,
        "pod shop/web-1 on worker1: PodDisruptionBudget shop/web-pdb allows no disruption\n\
         pod data/db-0 on worker2: PodDisruptionBudget data/db-pdb allows no disruption\n"
    );
    // No budget at zero: the gate passes.
    let (status, stderr) =
        run_with_kubectl(&g.argv[2], r#"case "$*" in *"get pdb"*) ;; *) exit 9;; esac"#);
    assert_eq!((status, stderr.as_str()), (0, ""));
    // An API that does not answer fails the gate (nothing assumed).
    let (status, stderr) = run_with_kubectl(&g.argv[2], "echo 'connection refused' >&2; exit 1");
    assert_eq!((status, stderr.as_str()), (2, "connection refused\n"));
}

#[test]
fn a_drain_that_cannot_finish_fails_naming_the_pods_that_would_not_leave() {
    // kubectl drain's own words when a budget blocks eviction until --timeout.
    let kubectl = r#"echo "node/worker1 cordoned"
echo 'evicting pod shop/web-1'
echo 'error when evicting pods/"web-1" -n "shop" (will retry after 5s): Cannot evict pod as it would violate the pod'"'"'s disruption budget.' >&2
echo 'error when evicting pods/"web-1" -n "shop" (will retry after 5s): Cannot evict pod as it would violate the pod'"'"'s disruption budget.' >&2
echo 'There are pending pods in node "worker1" when an error occurred: error when waiting for pod "web-1" in namespace "shop" to terminate: global timeout reached: 300s' >&2
echo 'error: unable to drain node "worker1" due to error: global timeout reached: 300s, continuing command...' >&2
exit 1"#;
    let (status, stderr) = run_with_kubectl(&super::drain_script("worker1"), kubectl);
    assert_eq!(status, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], "pod shop/web-1 would not leave worker1");
    assert_eq!(lines.last().copied(), Some("the drain of worker1 did not finish within 300 s"));
    assert_eq!(lines.len(), 4, "{stderr}");
    // A drain that finishes is quiet.
    let (status, stderr) = run_with_kubectl(&super::drain_script("worker1"), "echo drained");
    assert_eq!((status, stderr.as_str()), (0, ""));
}

#[test]
fn every_component_is_reported_per_host_from_manifests_binaries_and_the_cluster() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let report = report_of(&cluster, &facts);
    let v = |s: &str| Semver::parse(s);
    let cp1 = &report.versions[0];
    assert_eq!(cp1.host, "cp1");
    assert_eq!(cp1.etcd, v("3.5.21"));
    for c in [Component::KubeApiserver, Component::KubeControllerManager, Component::KubeScheduler]
    {
        assert_eq!(cp1.get(c), v("v1.33.1"), "{}", c.name());
    }
    assert_eq!(cp1.kubelet, v("v1.33.1"));
    assert_eq!(cp1.kube_proxy, v("v1.33.1"));
    assert_eq!(cp1.coredns, v("v1.12.0"));
    let w1 = &report.versions[3];
    assert_eq!(w1.host, "worker1");
    assert_eq!((w1.etcd, w1.kube_apiserver, w1.kube_scheduler), (None, None, None));
    assert_eq!((w1.kubelet, w1.kube_proxy, w1.coredns), (v("v1.33.1"), v("v1.33.1"), v("v1.12.0")));
    assert_eq!(report.targets.kubernetes, Semver::new(1, 34, 1));
    assert_eq!(report.targets.coredns, v("v1.12.1"));
    assert_eq!(report.addons[0].source, "DaemonSet kube-system/kube-proxy on cp1");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["versions"][0]["kube_controller_manager"]["minor"], 33);
    assert_eq!(json["targets"]["coredns"]["patch"], 1);

    // A cluster that does not answer: kube-proxy and CoreDNS are "not observed", never assumed.
    let mut silent = facts.clone();
    if let Some(Ok(f)) = silent.get_mut("cp1") {
        for probe in [KUBE_PROXY_PROBE, COREDNS_PROBE] {
            f.commands.insert(
                probe.into(),
                crate::facts::CommandOutput { exit_status: 1, stdout: String::new() },
            );
        }
    }
    let report = report_of(&cluster, &silent);
    assert!(report.versions.iter().all(|h| h.kube_proxy.is_none() && h.coredns.is_none()));
    assert_eq!(
        report.addons[1].source,
        "not observed: cp1 could not read the Deployment kube-system/coredns (kubectl exit 1)"
    );
    assert!(!report.changes.iter().any(|c| c.component.is_addon()), "{:?}", report.changes);
}

#[test]
fn only_the_first_control_plane_of_an_upgrade_reads_the_addons_from_the_cluster() {
    let cluster = target_cluster();
    let tree = render(&cluster);
    let op = Operation::Upgrade { spec_file: "c.yaml".into(), max_unavailable: 1 };
    let cp1 = probe_request_for(&op, &cluster, &tree, "cp1");
    assert_eq!(
        cp1.commands.keys().collect::<Vec<_>>(),
        [COREDNS_PROBE, KUBE_PROXY_PROBE, super::CORDONED_PROBE]
    );
    assert_eq!(
        cp1.commands[super::CORDONED_PROBE].join(" "),
        format!("{K} --request-timeout=5s get nodes -l kubeforge.dev/upgrade=cordoned -o name")
    );
    assert_eq!(
        cp1.commands[KUBE_PROXY_PROBE].join(" "),
        format!(
            "{K} --request-timeout=5s -n kube-system get daemonset kube-proxy -o \
             jsonpath={{.spec.template.spec.containers[0].image}}"
        )
    );
    assert!(probe_request_for(&op, &cluster, &tree, "cp2").commands.is_empty());
    assert!(probe_request_for(&op, &cluster, &tree, "worker1").commands.is_empty());
    assert!(probe_request_for(&Operation::Apply, &cluster, &tree, "cp1").commands.is_empty());
}

#[test]
fn addons_come_last_applied_on_the_first_control_plane_gated_on_rollouts_then_recorded() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    let last = plan.phases.last().unwrap();
    assert_eq!(last.phase, Phase::Addons);
    let seq = sequence(&plan, Phase::Addons);
    let staging = "/var/lib/kubeforge/addons-staging";
    assert_eq!(
        seq,
        [
            format!("cp1: create {staging}/kube-proxy.yaml"),
            format!("cp1: create {staging}/coredns.yaml"),
            format!(
                "cp1: {K} apply --server-side --field-manager=kubeforge --force-conflicts -f \
                 {staging}"
            ),
            "cp1: wait: daemonset/kube-proxy has rolled out".into(),
            "cp1: wait: deployment/coredns has rolled out".into(),
            "cp1: change /etc/kubernetes/addons/kube-proxy.yaml".into(),
            "cp1: change /etc/kubernetes/addons/coredns.yaml".into(),
            "cp2: change /etc/kubernetes/addons/kube-proxy.yaml".into(),
            "cp2: change /etc/kubernetes/addons/coredns.yaml".into(),
            "cp3: change /etc/kubernetes/addons/kube-proxy.yaml".into(),
            "cp3: change /etc/kubernetes/addons/coredns.yaml".into(),
            format!("cp1: rm -rf -- {staging}"),
        ]
    );
    let Step::PutFile(staged) = &last.sequence[0].step else { panic!() };
    let text = String::from_utf8_lossy(&staged.contents);
    assert!(text.contains("registry.k8s.io/kube-proxy:v1.34.1"), "{text}");
    let Step::PutFile(staged) = &last.sequence[1].step else { panic!() };
    let text = String::from_utf8_lossy(&staged.contents);
    assert!(text.contains("registry.k8s.io/coredns/coredns:v1.12.1"), "{text}");

    // Records already at the target but the cluster still runs the old kube-proxy (someone
    // changed it): applied again. Records and cluster at the target: no add-ons phase.
    let mut recorded = running(&cluster, "v1.33.1");
    let tree = render(&cluster);
    for h in ["cp1", "cp2", "cp3"] {
        let Some(Ok(f)) = recorded.get_mut(h) else { panic!() };
        for path in
            ["/etc/kubernetes/addons/kube-proxy.yaml", "/etc/kubernetes/addons/coredns.yaml"]
        {
            let file = &tree.hosts[h][path];
            f.files.insert(path.into(), present_file(&file.contents, file.mode));
        }
    }
    let plan = plan_upgrade(&cluster, &recorded, &old_etcd(), 1);
    let seq = sequence(&plan, Phase::Addons);
    assert_eq!(seq.len(), 6, "{seq:#?}");
    let Some(Ok(f)) = recorded.get_mut("cp1") else { panic!() };
    f.commands.insert(
        KUBE_PROXY_PROBE.into(),
        crate::facts::CommandOutput {
            exit_status: 0,
            stdout: "registry.k8s.io/kube-proxy:v1.34.1".into(),
        },
    );
    f.commands.insert(
        COREDNS_PROBE.into(),
        crate::facts::CommandOutput {
            exit_status: 0,
            stdout: "registry.k8s.io/coredns/coredns:v1.12.1".into(),
        },
    );
    let plan = plan_upgrade(&cluster, &recorded, &old_etcd(), 1);
    assert!(plan.phases.iter().all(|p| p.phase != Phase::Addons));
}

/// The v1.33 → v1.34 upgrade of the stacked lab on lab facts, end to end: the order of every
/// step across phases, independently of any golden file.
#[test]
fn v1_33_to_v1_34_runs_etcd_then_control_planes_then_kubelets_then_addons() {
    let cluster = target_cluster();
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert!(plan.blocked.is_empty(), "{:#?}", plan.blocked);
    let phases: Vec<Phase> = plan.phases.iter().map(|p| p.phase).collect();
    assert_eq!(
        phases,
        [Phase::Preflight, Phase::Etcd, Phase::ControlPlane, Phase::Workers, Phase::Addons]
    );
    // The run as the executor walks it: each phase's hosts (in name order, batched), then its
    // sequence.
    let mut steps: Vec<(Phase, String, String)> = Vec::new();
    for p in &plan.phases {
        for (h, s) in &p.hosts {
            steps.extend(s.iter().map(|s| (p.phase, h.clone(), s.label())));
        }
        steps.extend(p.sequence.iter().map(|s| (p.phase, s.host.clone(), s.step.label())));
    }
    let pos = |pred: &dyn Fn(&(Phase, String, String)) -> bool| {
        steps.iter().position(pred).unwrap_or_else(|| panic!("no such step"))
    };
    let pdb = pos(&|s| s.2.starts_with("wait: no PodDisruptionBudget"));
    let last_etcd = steps.iter().rposition(|s| s.0 == Phase::Etcd).unwrap();
    let first_manifest = pos(&|s| s.2.contains("/etc/kubernetes/manifests/"));
    assert!(pdb == 0, "the PDB gate before any change");
    assert!(last_etcd < first_manifest, "etcd before any control plane");
    // Control planes one at a time: each one's manifests, guarded readyz and endpoint gate
    // before the next one's first step.
    let cps: Vec<&(Phase, String, String)> =
        steps.iter().filter(|s| s.0 == Phase::ControlPlane).collect();
    let hosts_in_order: Vec<&str> = cps.iter().map(|s| s.1.as_str()).collect();
    let mut seen: Vec<&str> = hosts_in_order.clone();
    seen.dedup();
    assert_eq!(seen, ["cp1", "cp2", "cp3"], "each control plane's steps together, in order");
    // Every kubelet: drained before its restart, uncordoned after its version gate.
    for h in HOSTS {
        let drain =
            pos(&|s| s.2.starts_with("sh -c out=$(") && s.2.contains(&format!(" drain {h} ")));
        let restart = pos(&|s| s.1 == h && s.2 == "systemctl restart kubelet.service");
        let gate = pos(&|s| s.2 == format!("wait: node {h} reports kubelet v1.34.1"));
        let uncordon = pos(&|s| s.2 == format!("{K} uncordon {h}"));
        assert!(drain < restart && restart < gate && gate < uncordon, "{h}");
        assert!(restart > first_manifest, "{h}: kubelets after the control planes");
    }
    let apply = pos(&|s| s.2.contains(" apply --server-side "));
    let last_uncordon = steps.iter().rposition(|s| s.2.contains(" uncordon ")).unwrap();
    assert!(apply > last_uncordon, "add-ons last");
    assert_eq!(steps.last().unwrap().2, "rm -rf -- /var/lib/kubeforge/addons-staging");
    // And the plan's text shows it all, the way back included.
    let text = render_text(&plan);
    assert!(
        text.contains("if it does not, roll cp1 back to its kept manifests (1.33.1), then stop:"),
        "{text}"
    );
}

#[test]
fn skew_violations_are_refused_with_the_rule_named_and_nothing_planned() {
    let cluster = target_cluster();
    for (k8s, etcd, rule) in [
        ("v1.32.4", "3.5.21", "control-plane-one-minor-at-a-time"),
        ("v1.34.2", "3.5.21", "no-downgrade"),
        ("v1.33.1", "3.4.23", "etcd-one-minor-at-a-time"),
        ("v1.33.1", "3.6.9", "etcd-no-downgrade"),
    ] {
        let facts = running(&cluster, k8s);
        let obs = observed(&[("cp1", etcd), ("cp2", etcd), ("cp3", etcd)], "cp1");
        let plan = plan_upgrade(&cluster, &facts, &obs, 1);
        assert_refused(&plan, rule);
    }
    // The kubelet rules, on one worker.
    for (kubelet, rule) in [
        ("v1.35.0", "kubelet-not-newer-than-apiserver"),
        ("v1.30.9", "kubelet-at-most-three-minors-older"),
    ] {
        let mut facts = running(&cluster, "v1.33.1");
        let Some(Ok(f)) = facts.get_mut("worker2") else { panic!() };
        f.binaries.insert(
            "kubelet".into(),
            Binary { path: Some("/usr/local/bin/kubelet".into()), version: Some(kubelet.into()) },
        );
        let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
        assert_refused(&plan, rule);
        assert_eq!(plan.blocked.keys().collect::<Vec<_>>(), ["worker2"]);
    }
}

fn assert_refused(plan: &Plan, rule: &str) {
    assert!(plan.has_no_steps(), "{rule}: {:#?}", plan.phases);
    let checks: Vec<&str> = plan.blocked.values().flatten().map(|p| p.check.as_str()).collect();
    assert!(checks.contains(&rule), "{rule}: {checks:?}");
    let messages: Vec<&str> = plan.blocked.values().flatten().map(|p| p.message.as_str()).collect();
    assert!(messages.iter().any(|m| m.contains(rule)), "{messages:?}");
}

#[test]
fn an_etcd_older_than_kubeadms_pairing_is_a_warning_and_still_planned() {
    let text = example_text("stacked")
        .replace("kubernetesVersion: v1.33.1", "kubernetesVersion: v1.34.1")
        .replace("    # version: v3.5.21 ", "    version: v3.5.21   ");
    let cluster = load(&text);
    assert_eq!(cluster.etcd.version, "v3.5.21");
    let facts = running(&cluster, "v1.33.1");
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert!(plan.blocked.is_empty(), "{:#?}", plan.blocked);
    assert!(plan.phases.iter().any(|p| p.phase == Phase::ControlPlane));
    let report = report_of(&cluster, &facts);
    let warned: Vec<&str> = report.skew.warnings.iter().map(|w| w.rule.name()).collect();
    assert_eq!(warned, ["etcd-older-than-kubeadm-pairs"]);
}

#[test]
fn nothing_to_do_once_every_host_runs_the_target() {
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.34.1");
    for h in ["cp1", "cp2", "cp3"] {
        upgraded(&cluster, &mut facts, h);
    }
    let t = cluster.etcd.version.trim_start_matches('v').to_string();
    let obs = observed(&[("cp1", &t), ("cp2", &t), ("cp3", &t)], "cp1");
    let plan = plan_upgrade(&cluster, &facts, &obs, 1);
    assert!(plan.is_converged(), "{:#?}", plan);
}

#[test]
fn an_etcd_only_cluster_gets_etcd_steps_and_nothing_of_kubernetes() {
    // As the lab runs it (`apply --until etcd`): etcd active on the members, no kubelet, no
    // manifests, no add-ons recorded, and kubectl absent on cp1 (the probe's exit 127).
    let cluster = target_cluster();
    let mut facts = facts_for(&cluster);
    for h in ["cp1", "cp2", "cp3"] {
        let Some(Ok(f)) = facts.get_mut(h) else { panic!() };
        f.units.insert(
            "etcd.service".into(),
            UnitState { active: "active".into(), enabled: "enabled".into() },
        );
    }
    let Some(Ok(f)) = facts.get_mut("cp1") else { panic!() };
    for probe in [KUBE_PROXY_PROBE, COREDNS_PROBE] {
        f.commands.insert(
            probe.into(),
            crate::facts::CommandOutput { exit_status: 127, stdout: String::new() },
        );
    }
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    assert!(plan.blocked.is_empty(), "{:#?}", plan.blocked);
    let phases: Vec<Phase> = plan
        .phases
        .iter()
        .filter(|p| !p.hosts.is_empty() || !p.sequence.is_empty())
        .map(|p| p.phase)
        .collect();
    assert_eq!(phases, [Phase::Etcd]);
}

#[test]
fn a_rerun_uncordons_what_an_interrupted_upgrade_left_cordoned_and_nothing_else() {
    // Interrupted after worker1's kubelet moved to v1.34.1 but before its uncordon: cp1's
    // probe lists worker1 (and cp2, still on v1.33.1) as cordoned by the upgrade.
    let cluster = target_cluster();
    let mut facts = running(&cluster, "v1.33.1");
    let Some(Ok(w1)) = facts.get_mut("worker1") else { panic!() };
    w1.binaries.insert(
        "kubelet".into(),
        Binary { path: Some("/usr/local/bin/kubelet".into()), version: Some("v1.34.1".into()) },
    );
    let Some(Ok(cp1)) = facts.get_mut("cp1") else { panic!() };
    cp1.commands.insert(
        super::CORDONED_PROBE.into(),
        crate::facts::CommandOutput { exit_status: 0, stdout: "node/cp2\nnode/worker1\n".into() },
    );
    let plan = plan_upgrade(&cluster, &facts, &old_etcd(), 1);
    let seq = sequence(&plan, Phase::Workers);
    assert_eq!(
        seq[..3],
        [
            "cp1: wait: node worker1 reports kubelet v1.34.1".to_string(),
            format!("cp1: {K} uncordon worker1"),
            format!("cp1: {K} label node worker1 kubeforge.dev/upgrade-"),
        ]
    );
    assert_eq!(seq.iter().filter(|l| l.contains(" uncordon worker1")).count(), 1);
    assert_eq!(
        seq.iter().filter(|l| l.contains(" uncordon cp2")).count(),
        1,
        "cp2 goes on as usual"
    );
    assert_eq!(batches(&seq), [vec!["cp1"], vec!["cp2"], vec!["cp3"], vec!["worker2"]]);

    // Every kubelet on the target, one node left cordoned: the plan is just its uncordon.
    let mut done = running(&cluster, "v1.34.1");
    let Some(Ok(cp1)) = done.get_mut("cp1") else { panic!() };
    cp1.commands.insert(
        super::CORDONED_PROBE.into(),
        crate::facts::CommandOutput { exit_status: 0, stdout: "node/worker2".into() },
    );
    let t = cluster.etcd.version.trim_start_matches('v').to_string();
    let obs = observed(&[("cp1", &t), ("cp2", &t), ("cp3", &t)], "cp1");
    for h in ["cp1", "cp2", "cp3"] {
        upgraded(&cluster, &mut done, h);
    }
    let plan = plan_upgrade(&cluster, &done, &obs, 1);
    assert_eq!(
        sequence(&plan, Phase::Workers),
        [
            "cp1: wait: node worker2 reports kubelet v1.34.1".to_string(),
            format!("cp1: {K} uncordon worker2"),
            format!("cp1: {K} label node worker2 kubeforge.dev/upgrade-"),
        ]
    );
    assert!(plan.phases[0].sequence.is_empty(), "nothing to drain: no PDB gate");
}
