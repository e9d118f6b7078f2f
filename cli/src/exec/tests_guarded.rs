//! The executor's part of an upgrade's way back, on stateful fake hosts: a guarded gate that
//! fails runs the plan's `on_failure` steps (the kept manifests put back, the old apiserver
//! awaited) and fails the step saying so; one that passes runs none of them; an undoing that
//! fails too is reported as such; and an operation that stops at its first failure (an
//! upgrade) starts no later phase on any host. Each fake control plane's apiserver answers
//! `/readyz` only while its manifest names an image that works (`v1.33.1`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kubeforge_playbooks::plan::{self, Gate, Guarded, Operation, Phase, Plan, Step};

use super::tests::{execute_plain, rt};
use crate::transport::fake::{FakeFile, FakeHost, Match, exit};

const MANIFEST: &str = "/etc/kubernetes/manifests/kube-apiserver.yaml";
const KEPT: &str = "/etc/kubernetes/manifests-before-upgrade/kube-apiserver.yaml";

fn run(argv: &[&str]) -> Step {
    Step::Run(plan::Run {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        unless: None,
        why: "test".into(),
    })
}

fn gate(what: &str, argv: &[&str]) -> Gate {
    Gate {
        what: what.into(),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        across: None,
        attempts: 3,
        interval_ms: 10,
    }
}

/// A control plane running `running`, its apiserver ready only with the v1.33.1 image; `cp`
/// copies like `cp -a SRC DEST` (the planner's way back), `keep` copies the manifest aside.
fn control_plane(name: &str, running: &str) -> FakeHost {
    let host = FakeHost::new(name)
        .with_file(MANIFEST, FakeFile::new(format!("image: kube-apiserver:{running}\n"), 0o600));
    host.on(Match::program("readyz"), |_, files| {
        let ok = files.get(MANIFEST).is_some_and(|f| f.bytes.ends_with(b"v1.33.1\n"));
        if ok { exit(0, "ok", "") } else { exit(1, "", "readyz check failed: etcd client\n") }
    });
    host.on(Match::program("keep"), |_, files| {
        let f = files[MANIFEST].clone();
        files.insert(KEPT.into(), f);
        exit(0, "", "")
    });
    host.on(Match::program("cp"), |cmd, files| match files.get(&cmd.argv[2]).cloned() {
        Some(f) => {
            files.insert(cmd.argv[3].clone(), f);
            exit(0, "", "")
        }
        None => exit(1, "", &format!("cp: cannot stat '{}'\n", cmd.argv[2])),
    });
    host.on(Match::program("kubelet-upgrade"), |_, _| exit(0, "", ""));
    host
}

fn put_manifest(image: &str) -> Step {
    let contents = format!("image: kube-apiserver:{image}\n").into_bytes();
    Step::PutFile(plan::PutFile {
        path: MANIFEST.into(),
        sha256: crate::transport::sha256_hex(&contents),
        size: contents.len(),
        contents,
        mode: 0o600,
        owner: "root".into(),
        group: "root".into(),
        secret: false,
        reason: plan::FileReason::Create,
    })
}

/// The shape of an upgrade's control-plane phase (one host at a time: keep, new manifest,
/// guarded readyz) followed by a workers phase on every host.
fn upgrade_plan(new_image: &str, undo_from: &str) -> Plan {
    let cp_steps = |_: &str| {
        vec![
            run(&["keep"]),
            put_manifest(new_image),
            Step::Guarded(Guarded {
                gate: gate("kube-apiserver answers /readyz", &["readyz"]),
                on_failure: vec![
                    run(&["cp", "-a", undo_from, MANIFEST]),
                    Step::Gate(gate("kube-apiserver answers /readyz again", &["readyz"])),
                ],
                why: "roll back to the kept manifests".into(),
            }),
        ]
    };
    let cps: BTreeMap<String, Vec<Step>> =
        ["cp1", "cp2"].iter().map(|h| (h.to_string(), cp_steps(h))).collect();
    let workers: BTreeMap<String, Vec<Step>> = ["cp1", "cp2", "w1"]
        .iter()
        .map(|h| (h.to_string(), vec![run(&["kubelet-upgrade"])]))
        .collect();
    Plan {
        cluster: "t".into(),
        operation: Operation::Upgrade { spec_file: "c.yaml".into(), max_unavailable: 1 },
        phases: vec![
            plan::PhasePlan {
                phase: Phase::ControlPlane,
                hosts: cps,
                sequence: Vec::new(),
                batch: Some(1),
            },
            plan::PhasePlan {
                phase: Phase::Workers,
                hosts: workers,
                sequence: Vec::new(),
                batch: None,
            },
        ],
        blocked: BTreeMap::new(),
        departed: Vec::new(),
        deferred: Vec::new(),
    }
}

fn lab() -> (Vec<FakeHost>, BTreeMap<String, Arc<dyn crate::transport::Transport>>) {
    let hosts = vec![
        control_plane("cp1", "v1.33.1"),
        control_plane("cp2", "v1.33.1"),
        control_plane("w1", "-"),
    ];
    let transports = hosts
        .iter()
        .zip(["cp1", "cp2", "w1"])
        .map(|(h, n)| (n.to_string(), Arc::new(h.clone()) as Arc<dyn crate::transport::Transport>))
        .collect();
    (hosts, transports)
}

fn ran(host: &FakeHost, program: &str) -> bool {
    host.commands().iter().any(|c| c[0] == program)
}

#[test]
fn a_control_plane_that_does_not_come_up_is_rolled_back_and_the_upgrade_stops() {
    rt().block_on(async {
        let (hosts, transports) = lab();
        let plan = upgrade_plan("v1.34.1-broken", KEPT);
        let report = execute_plain(&plan, &transports).await;
        assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["cp1"]);
        // cp1 runs its kept manifest again, and its apiserver answers.
        let manifest = hosts[0].file(MANIFEST).unwrap();
        assert_eq!(manifest.bytes, b"image: kube-apiserver:v1.33.1\n");
        let f = &report.failures[0];
        assert_eq!(f.phase, "control-plane");
        assert_eq!(
            f.step,
            "wait: kube-apiserver answers /readyz, else roll back to the kept manifests"
        );
        assert!(f.stderr_tail.contains("readyz check failed: etcd client"), "{}", f.stderr_tail);
        assert!(
            f.stderr_tail.contains("done instead: roll back to the kept manifests"),
            "{}",
            f.stderr_tail
        );
        assert!(f.remedy.contains("the change was undone"), "{}", f.remedy);
        assert!(f.remedy.contains("kubeforge upgrade apply -f c.yaml"), "{}", f.remedy);
        // cp2 untouched; no kubelet anywhere moved past the rolled-back control plane.
        assert!(!ran(&hosts[1], "keep"), "cp2 is not reached");
        assert_eq!(hosts[1].file(MANIFEST).unwrap().bytes, b"image: kube-apiserver:v1.33.1\n");
        for h in &hosts {
            assert!(!ran(h, "kubelet-upgrade"), "the upgrade stopped before the workers phase");
        }
        assert_eq!(report.not_started, ["workers"]);
        assert!(!report.succeeded());
    });
}

#[test]
fn a_control_plane_that_comes_up_runs_no_undo_and_the_upgrade_goes_on() {
    rt().block_on(async {
        let (hosts, transports) = lab();
        // "v1.33.1" stands for a new image that works.
        let plan = upgrade_plan("v1.33.1", KEPT);
        let report = execute_plain(&plan, &transports).await;
        assert!(report.succeeded(), "{}", report.render_text());
        for h in &hosts[..2] {
            assert!(!ran(h, "cp"), "no way back taken on {h:?}");
            assert!(ran(h, "kubelet-upgrade"));
        }
        assert!(ran(&hosts[2], "kubelet-upgrade"));
    });
}

#[test]
fn an_undo_that_fails_too_is_reported_with_both_causes() {
    rt().block_on(async {
        let (hosts, transports) = lab();
        let plan = upgrade_plan("v1.34.1-broken", "/etc/kubernetes/nowhere.yaml");
        let report = execute_plain(&plan, &transports).await;
        assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["cp1"]);
        let f = &report.failures[0];
        assert!(f.stderr_tail.contains("readyz check failed"), "{}", f.stderr_tail);
        assert!(f.stderr_tail.contains("undoing it failed too"), "{}", f.stderr_tail);
        assert!(
            f.stderr_tail.contains("cannot stat '/etc/kubernetes/nowhere.yaml'"),
            "{}",
            f.stderr_tail
        );
        assert!(f.remedy.contains("bring the host back by hand"), "{}", f.remedy);
        assert!(!ran(&hosts[1], "keep"));
    });
}

#[test]
fn a_failed_preflight_gate_of_an_upgrade_changes_nothing_anywhere() {
    rt().block_on(async {
        let (hosts, transports) = lab();
        hosts[0].on(Match::program("pdb-check"), |_, _| {
            exit(1, "", "pod shop/web-1 on w1: PodDisruptionBudget shop/web allows no disruption\n")
        });
        let mut plan = upgrade_plan("v1.33.1", KEPT);
        plan.phases.insert(
            0,
            plan::PhasePlan {
                phase: Phase::Preflight,
                hosts: BTreeMap::new(),
                sequence: vec![plan::SequencedStep {
                    host: "cp1".into(),
                    step: Step::Gate(gate(
                        "no PodDisruptionBudget blocks draining",
                        &["pdb-check"],
                    )),
                }],
                batch: None,
            },
        );
        let report = execute_plain(&plan, &transports).await;
        assert_eq!(report.failures.len(), 1);
        assert!(report.failures[0].stderr_tail.contains("pod shop/web-1 on w1"));
        for h in &hosts {
            assert!(!ran(h, "keep") && !ran(h, "kubelet-upgrade"), "nothing changed on {h:?}");
        }
        assert_eq!(report.not_started, ["control-plane", "workers"]);

        // The same failure in an apply lets the other hosts go on (unchanged behaviour).
        let (hosts, transports) = lab();
        hosts[0].on(Match::program("pdb-check"), |_, _| exit(1, "", "no\n"));
        plan.operation = Operation::Apply;
        execute_plain(&plan, &transports).await;
        assert!(ran(&hosts[2], "kubelet-upgrade"));
    });
}
