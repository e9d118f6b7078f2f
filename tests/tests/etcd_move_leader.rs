//! The executor's MoveLeader against real etcd: before the leader is removed, leadership is
//! handed to the member of the step's host by a request sent to the leader itself (through the
//! tunnel to its host), then the removal goes through at once and the members that stay are
//! healthy; for a member that does not lead, nothing is done. Runs on Debian's etcd 3.4
//! (`KUBEFORGE_ETCD_BIN`).

use std::collections::BTreeMap;

use kubeforge::etcd::EtcdClient;
use kubeforge::exec::events::Collect;
use kubeforge::exec::{AuditLog, ExecOptions, execute};
use kubeforge_playbooks::plan::{EtcdAction, Operation, Phase, PhasePlan, Plan, SequencedStep};
use kubeforge_tests::etcd::{EtcdCluster, etcd_binary};

fn plan(sequence: Vec<SequencedStep>) -> Plan {
    Plan {
        cluster: "test".into(),
        operation: Operation::Apply,
        phases: vec![PhasePlan {
            phase: Phase::Etcd,
            hosts: BTreeMap::new(),
            sequence,
            batch: None,
        }],
        blocked: BTreeMap::new(),
        departed: Vec::new(),
        deferred: Vec::new(),
    }
}

/// (leader's name, name → id), as `via` sees them.
async fn leader(cluster: &EtcdCluster, via: &str) -> (String, BTreeMap<String, u64>) {
    let ep = kubeforge::etcd::Endpoint::new(via, cluster.member(via).client_url());
    let c =
        EtcdClient::connect(&ep, Some(&cluster.client_tls()), Default::default()).await.unwrap();
    let ids: BTreeMap<String, u64> =
        c.member_list().await.unwrap().into_iter().map(|m| (m.name, m.id)).collect();
    for _ in 0..50 {
        let l = c.status().await.unwrap().leader;
        if let Some((name, _)) = ids.iter().find(|(_, id)| **id == l) {
            return (name.clone(), ids);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    panic!("no leader");
}

#[test]
fn leadership_moves_to_a_staying_member_before_the_leader_is_removed() {
    if kubeforge_tests::etcd::require_etcd().is_none() {
        return;
    }
    let mut cluster = EtcdCluster::start(3, &etcd_binary());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let audit_dir = tempfile::tempdir().unwrap();
    let audit = AuditLog::create(audit_dir.path(), "run").unwrap();
    let transports = cluster.fake_hosts(&["m1", "m2", "m3"]);
    let events = Collect::default();
    let (lead, ids) = rt.block_on(leader(&cluster, "m1"));
    let stay: Vec<&str> = ["m1", "m2", "m3"].into_iter().filter(|m| *m != lead).collect();
    let follower = stay[1];
    let via = stay[0];

    // A member that does not lead: nothing to do.
    let noop = plan(vec![
        cluster.step(via, EtcdAction::MoveLeader { name: follower.into(), id: ids[follower] }),
    ]);
    let report = rt.block_on(execute(&noop, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded() && report.changed == 0, "{}", report.render_text());

    // The leader: moved to `via` first, then removed at once; the others stay healthy.
    let names: Vec<String> = stay.iter().map(|s| s.to_string()).collect();
    let remove = plan(vec![
        cluster.step(via, EtcdAction::MoveLeader { name: lead.clone(), id: ids[&lead] }),
        cluster.step(via, EtcdAction::Remove { name: lead.clone(), id: ids[&lead] }),
        cluster.step(via, EtcdAction::HealthGate { members: names, timeout_ms: 60_000 }),
    ]);
    let report =
        rt.block_on(execute(&remove, &transports, &ExecOptions::default(), &events, &audit));
    assert!(report.succeeded(), "{}", report.render_text());
    assert_eq!(report.changed, 2, "{}", report.render_text());
    cluster.stop(&lead);
    let (now, ids_after) = rt.block_on(leader(&cluster, via));
    assert!(stay.contains(&now.as_str()), "{now} leads");
    assert!(!ids_after.contains_key(&lead), "{lead} was removed: {ids_after:?}");
    let log = std::fs::read_to_string(audit.path().unwrap()).unwrap();
    assert!(log.contains(&format!("{via} leads instead of {lead}")), "{log}");
    assert!(log.contains(&format!("{follower} does not lead")), "{log}");
    assert!(log.contains(&format!("removed {lead}")), "{log}");
}
