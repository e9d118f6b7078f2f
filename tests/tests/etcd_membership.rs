//! Membership changes planned by `etcd_membership` and run with `kubeforge::etcd` against real
//! etcd: 2 → 3 members (learner added, started with initial-cluster-state=existing, promoted),
//! then 3 → 2 (member removed before its process is stopped), the cluster writable throughout.
//! Runs on Debian's etcd 3.4 and, when `KUBEFORGE_ETCD35_BIN` is set, on etcd 3.5.

use std::path::Path;
use std::time::Duration;

use kubeforge::etcd::{Endpoint, EtcdClient, Timeouts, wait_healthy};
use kubeforge_playbooks::etcd_membership::{CurrentMember, DesiredMember, Step, plan_membership};
use kubeforge_tests::etcd::{EtcdCluster, etcd_binary, require_etcd35};

const T: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    request: Duration::from_secs(5),
    reconfigure: Duration::from_secs(30),
};

fn endpoints(cluster: &EtcdCluster, names: &[&str]) -> Vec<Endpoint> {
    names.iter().map(|n| Endpoint::new(*n, cluster.member(n).client_url())).collect()
}

/// The member list as the planner wants it, health measured per member.
async fn current(cluster: &EtcdCluster, via: &EtcdClient) -> Vec<CurrentMember> {
    let mut out = Vec::new();
    for m in via.member_list().await.unwrap() {
        let healthy = match m.client_urls.first() {
            Some(url) => {
                let ep = Endpoint::new(m.name.clone(), url.clone());
                kubeforge::etcd::probe(&ep, Some(&cluster.client_tls()), T).await.is_healthy()
            }
            None => false,
        };
        out.push(CurrentMember {
            name: m.name,
            id: m.id,
            peer_urls: m.peer_urls,
            is_learner: m.is_learner,
            healthy,
        });
    }
    out
}

/// Runs planned steps the way the executor will: against the cluster's voting members.
async fn execute(cluster: &mut EtcdCluster, leader_side: &EtcdClient, steps: &[Step]) {
    for step in steps {
        match step {
            Step::AddLearner { peer_url, .. } => {
                let (added, _) =
                    leader_side.add_learner(std::slice::from_ref(peer_url)).await.unwrap();
                assert!(added.is_learner);
            }
            Step::StartExisting { name, initial_cluster } => {
                cluster.start_existing(name, initial_cluster)
            }
            Step::Promote { name } => {
                let id = leader_side.member_id(name).await.unwrap();
                leader_side
                    .promote(id)
                    .await
                    .unwrap_or_else(|e| panic!("{e}\n{}", cluster.log_tail(name)));
            }
            Step::Remove { id, .. } => {
                leader_side.remove(*id).await.unwrap();
            }
            Step::Decommission { name } => cluster.stop(name),
            Step::HealthGate { members } => {
                let names: Vec<&str> = members.iter().map(String::as_str).collect();
                wait_healthy(
                    &endpoints(cluster, &names),
                    Some(&cluster.client_tls()),
                    T,
                    Duration::from_secs(30),
                )
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            }
            Step::Bootstrap { .. } => panic!("an existing cluster is never bootstrapped"),
        }
    }
}

async fn grow_and_shrink(binary: &Path) {
    let mut cluster = EtcdCluster::start(2, binary);
    let m1 = EtcdClient::connect(
        &Endpoint::new("m1", cluster.member("m1").client_url()),
        Some(&cluster.client_tls()),
        T,
    )
    .await
    .unwrap();
    wait_healthy(
        &endpoints(&cluster, &["m1", "m2"]),
        Some(&cluster.client_tls()),
        T,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    m1.put("/kubeforge/before", b"1").await.unwrap();

    // 2 → 3
    let (_, m3_peer) = cluster.reserve_member("m3");
    let desired: Vec<DesiredMember> = ["m1", "m2"]
        .iter()
        .map(|n| DesiredMember { name: n.to_string(), peer_url: cluster.member(n).peer_url() })
        .chain([DesiredMember { name: "m3".into(), peer_url: m3_peer }])
        .collect();
    let now = current(&cluster, &m1).await;
    assert!(now.iter().all(|m| m.healthy && !m.is_learner), "{now:?}");
    let steps = plan_membership(&now, &desired).unwrap();
    assert!(matches!(steps[0], Step::AddLearner { .. }), "{steps:?}");
    execute(&mut cluster, &m1, &steps).await;
    let members = m1.member_list().await.unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(members.iter().all(|m| !m.is_learner && !m.name.is_empty()), "{members:?}");
    let m3 = EtcdClient::connect(
        &Endpoint::new("m3", cluster.member("m3").client_url()),
        Some(&cluster.client_tls()),
        T,
    )
    .await
    .unwrap();
    assert_eq!(m3.linearizable_get("/kubeforge/before").await.unwrap().as_deref(), Some(&b"1"[..]));

    // Planning again is a no-op.
    assert_eq!(plan_membership(&current(&cluster, &m1).await, &desired).unwrap(), []);

    // 3 → 2: m2 is removed, then its process stops; the cluster stays writable.
    let desired: Vec<DesiredMember> = desired.into_iter().filter(|d| d.name != "m2").collect();
    let steps = plan_membership(&current(&cluster, &m1).await, &desired).unwrap();
    assert!(matches!(&steps[0], Step::Remove { name, .. } if name == "m2"), "{steps:?}");
    assert!(matches!(&steps[1], Step::Decommission { name } if name == "m2"), "{steps:?}");
    execute(&mut cluster, &m1, &steps).await;
    assert!(!cluster.member("m2").is_running());
    let members = m1.member_list().await.unwrap();
    let mut names: Vec<_> = members.iter().map(|m| m.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["m1", "m3"]);
    m1.put("/kubeforge/after", b"2").await.unwrap();
    assert_eq!(m3.linearizable_get("/kubeforge/after").await.unwrap().as_deref(), Some(&b"2"[..]));
}

#[tokio::test]
async fn grow_two_to_three_with_a_learner_then_shrink_keeps_writing_etcd_3_4() {
    grow_and_shrink(&etcd_binary()).await;
}

#[tokio::test]
async fn grow_two_to_three_with_a_learner_then_shrink_keeps_writing_etcd_3_5() {
    let Some(binary) = require_etcd35() else { return };
    grow_and_shrink(&binary).await;
}
