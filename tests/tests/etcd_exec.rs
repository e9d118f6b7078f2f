//! The executor's etcd operations against real etcd: a plan's sequence adds a learner, waits
//! for health, promotes and removes members through tunnels (fake hosts whose forwarded
//! loopback port is a real member's client port), and each operation is idempotent when an
//! interrupted run is resumed. A failing gate names the member; a failing step stops the
//! sequence; a host that failed in the phase's parallel part keeps the sequence from running.
//! Every operation lands in the audit log. Runs on Debian's etcd 3.4 (`KUBEFORGE_ETCD_BIN`).

use std::collections::BTreeMap;
use std::sync::Arc;

use kubeforge::exec::events::Collect;
use kubeforge::exec::{AuditLog, ExecOptions, execute};
use kubeforge::transport::fake::{FakeHost, Match};
use kubeforge::transport::{CommandOutput, Transport};
use kubeforge_playbooks::plan::{
    EtcdAction, Operation, Phase, PhasePlan, Plan, Run, SequencedStep, Step,
};
use kubeforge_tests::etcd::{EtcdCluster, etcd_binary};

fn available() -> bool {
    kubeforge_tests::etcd::require_etcd().is_some()
}

fn gate(cluster: &EtcdCluster, members: &[&str], timeout_ms: u64) -> SequencedStep {
    let names = members.iter().map(|m| m.to_string()).collect();
    cluster.step(members[0], EtcdAction::HealthGate { members: names, timeout_ms })
}

fn plan(hosts: BTreeMap<String, Vec<Step>>, sequence: Vec<SequencedStep>) -> Plan {
    Plan {
        cluster: "test".into(),
        operation: Operation::Apply,
        phases: vec![PhasePlan { phase: Phase::Etcd, hosts, sequence, batch: None }],
        blocked: BTreeMap::new(),
        departed: Vec::new(),
        deferred: Vec::new(),
    }
}

fn member_list(cluster: &EtcdCluster) -> Vec<(String, bool)> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ep = kubeforge::etcd::Endpoint::new("m1", cluster.member("m1").client_url());
        let tls = cluster.client_tls();
        let c = kubeforge::etcd::EtcdClient::connect(&ep, Some(&tls), Default::default())
            .await
            .unwrap();
        let mut list: Vec<(String, bool)> = c
            .member_list()
            .await
            .unwrap()
            .into_iter()
            .map(|m| {
                (if m.name.is_empty() { m.peer_urls[0].clone() } else { m.name }, m.is_learner)
            })
            .collect();
        list.sort();
        list
    })
}

#[test]
fn a_join_and_a_removal_run_through_tunnels_and_resume_idempotently() {
    if !available() {
        return;
    }
    let mut cluster = EtcdCluster::start(2, &etcd_binary());
    let (_, m3_peer) = cluster.reserve_member("m3");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::create(audit_dir.path(), "run").unwrap();

    // 1. Add m3 as a learner through m1's tunnel; the same plan again changes nothing.
    let add =
        plan(
            BTreeMap::new(),
            vec![cluster.step(
                "m1",
                EtcdAction::AddLearner { name: "m3".into(), peer_url: m3_peer.clone() },
            )],
        );
    let transports = cluster.fake_hosts(&["m1", "m2"]);
    let events = Collect::default();
    let report = rt.block_on(execute(&add, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded(), "{}", report.render_text());
    assert_eq!(report.changed, 1);
    assert!(member_list(&cluster).contains(&(m3_peer.clone(), true)));
    let again = rt.block_on(execute(&add, &transports, &ExecOptions::default(), &events, &audit));
    assert!(again.succeeded() && again.changed == 0 && again.unchanged == 1);

    // 2. m3 starts (as the plan's host steps would), then gate, promote, gate.
    let initial: Vec<(String, String)> =
        cluster.members.iter().map(|m| (m.name.clone(), m.peer_url())).collect();
    cluster.start_existing("m3", &initial);
    let transports = cluster.fake_hosts(&["m1", "m2", "m3"]);
    let promote = plan(
        BTreeMap::new(),
        vec![
            gate(&cluster, &["m1", "m2", "m3"], 60_000),
            cluster
                .step("m1", EtcdAction::Promote { name: "m3".into(), peer_url: m3_peer.clone() }),
            gate(&cluster, &["m1", "m2", "m3"], 60_000),
        ],
    );
    let report =
        rt.block_on(execute(&promote, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded(), "{}", report.render_text());
    assert_eq!(
        member_list(&cluster),
        [("m1".to_string(), false), ("m2".to_string(), false), ("m3".to_string(), false)]
    );
    // Promoting a voter again is "nothing to do".
    let report =
        rt.block_on(execute(&promote, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded() && report.changed == 0, "{}", report.render_text());

    // 3. Remove m2 through m3, then its process can go; removing again is nothing to do.
    let id = rt.block_on(async {
        let ep = kubeforge::etcd::Endpoint::new("m1", cluster.member("m1").client_url());
        let tls = cluster.client_tls();
        let c = kubeforge::etcd::EtcdClient::connect(&ep, Some(&tls), Default::default())
            .await
            .unwrap();
        c.member_id("m2").await.unwrap()
    });
    let remove = plan(
        BTreeMap::new(),
        vec![
            cluster.step("m3", EtcdAction::Remove { name: "m2".into(), id }),
            gate(&cluster, &["m1", "m3"], 60_000),
        ],
    );
    let report =
        rt.block_on(execute(&remove, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded(), "{}", report.render_text());
    cluster.stop("m2");
    assert_eq!(member_list(&cluster), [("m1".to_string(), false), ("m3".to_string(), false)]);
    let report =
        rt.block_on(execute(&remove, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded() && report.changed == 0, "{}", report.render_text());

    // Every etcd operation is in the audit log, with its outcome and no key material.
    let log = std::fs::read_to_string(audit.path().unwrap()).unwrap();
    let etcd_lines: Vec<&str> = log.lines().filter(|l| l.contains("\"op\":\"etcd\"")).collect();
    assert_eq!(etcd_lines.len(), 2 + 3 * 2 + 2 * 2, "{log}");
    assert!(log.contains("added m3 as learner") && log.contains("promoted m3"), "{log}");
    assert!(log.contains("removed m2") && log.contains("already gone"), "{log}");
    assert!(!log.contains("PRIVATE KEY"));
}

#[test]
fn a_failing_gate_names_the_member_and_stops_the_sequence() {
    if !available() {
        return;
    }
    let mut cluster = EtcdCluster::start(3, &etcd_binary());
    cluster.stop("m3");
    let transports = cluster.fake_hosts(&["m1", "m2", "m3"]);
    let after = SequencedStep {
        host: "m2".into(),
        step: Step::Run(Run {
            argv: vec!["touch".into(), "/after".into()],
            unless: None,
            why: "x".into(),
        }),
    };
    let p = plan(BTreeMap::new(), vec![gate(&cluster, &["m1", "m2", "m3"], 3_000), after]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let events = Collect::default();
    let report = rt.block_on(execute(
        &p,
        &transports,
        &ExecOptions::default(),
        &events,
        &AuditLog::disabled(),
    ));
    assert_eq!(report.failures.len(), 1, "{}", report.render_text());
    let f = &report.failures[0];
    assert_eq!((f.host.as_str(), f.phase.as_str()), ("m1", "etcd"));
    assert!(f.stderr_tail.contains("m3"), "{}", f.stderr_tail);
    assert!(f.remedy.contains("journalctl -u etcd"), "{}", f.remedy);
    let started: Vec<String> = events
        .events()
        .into_iter()
        .filter_map(|e| match e {
            kubeforge::exec::Event::StepStarted { step, .. } => Some(step),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1, "the step after the failed gate must not run: {started:?}");
}

#[test]
fn the_sequence_waits_for_the_hosts_and_does_not_run_after_a_host_failed() {
    // No etcd needed: plain commands on fake hosts show the order and the skip.
    let order = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let host = |name: &str, fail: bool| {
        let h = FakeHost::new(name);
        let order = order.clone();
        let n = name.to_string();
        h.on(Match::program("step"), move |cmd, _| {
            order.lock().unwrap().push(format!("{n}: {}", cmd.argv.join(" ")));
            CommandOutput { exit_status: if fail { 1 } else { 0 }, ..CommandOutput::default() }
        });
        Arc::new(h) as Arc<dyn Transport>
    };
    let run = |what: &str| {
        Step::Run(Run { argv: vec!["step".into(), what.into()], unless: None, why: "x".into() })
    };
    let hosts_part: BTreeMap<String, Vec<Step>> =
        [("a".to_string(), vec![run("install")]), ("b".to_string(), vec![run("install")])].into();
    let sequence = vec![
        SequencedStep { host: "b".into(), step: run("first") },
        SequencedStep { host: "a".into(), step: run("second") },
    ];
    let p = plan(hosts_part, sequence);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ok: BTreeMap<String, Arc<dyn Transport>> =
        [("a".to_string(), host("a", false)), ("b".to_string(), host("b", false))].into();
    let report = rt.block_on(execute(
        &p,
        &ok,
        &ExecOptions::default(),
        &Collect::default(),
        &AuditLog::disabled(),
    ));
    assert!(report.succeeded());
    let seen = order.lock().unwrap().clone();
    assert_eq!(&seen[2..], ["b: step first", "a: step second"], "{seen:?}");
    assert!(seen[..2].iter().all(|s| s.ends_with("install")));

    order.lock().unwrap().clear();
    let failing: BTreeMap<String, Arc<dyn Transport>> =
        [("a".to_string(), host("a", true)), ("b".to_string(), host("b", false))].into();
    let report = rt.block_on(execute(
        &p,
        &failing,
        &ExecOptions::default(),
        &Collect::default(),
        &AuditLog::disabled(),
    ));
    assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["a"]);
    let seen = order.lock().unwrap().clone();
    assert!(seen.iter().all(|s| s.ends_with("install")), "sequence ran after a failure: {seen:?}");
}
