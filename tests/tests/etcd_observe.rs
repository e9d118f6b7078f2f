//! `kubeforge::observe` against real etcd through fake hosts' tunnels: the member list with
//! each member's measured health; nothing observed when no member host has etcd; and, when
//! the facts say etcd exists but no member answers, an error instead of "new cluster".
//! Runs on Debian's etcd 3.4 (`KUBEFORGE_ETCD_BIN`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use kubeforge::gather::Gathered;
use kubeforge::state::StateDir;
use kubeforge::transport::Transport;
use kubeforge::transport::fake::FakeHost;
use kubeforge_playbooks::facts::{HostFacts, OsRelease, UnitState};
use kubeforge_playbooks::plan::{Phase, PhaseSelection};
use kubeforge_tests::etcd::{EtcdCluster, etcd_binary};

const SPEC: &str = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: observe
spec:
  kubernetesVersion: v1.33.1
  etcd:
    topology: external
  loadBalancer:
    mode: none
  hosts:
    - {name: m1, address: 10.77.0.31, roles: [etcd]}
    - {name: m2, address: 10.77.0.32, roles: [etcd]}
    - {name: m3, address: 10.77.0.33, roles: [etcd]}
    - {name: cp1, address: 10.77.0.11, roles: [control-plane]}
";

fn facts(etcd_active: bool) -> HostFacts {
    let state = if etcd_active { "active" } else { "inactive" };
    HostFacts {
        os: OsRelease { id: "debian".into(), version_id: "12".into(), pretty_name: String::new() },
        arch: "x86_64".into(),
        kernel: "6.1".into(),
        cpus: 2,
        memory_kib: 4_000_000,
        swaps: vec![],
        hostname: String::new(),
        clock_offset_ms: 0,
        filesystems: Default::default(),
        listening_ports: Default::default(),
        units: BTreeMap::from([(
            "etcd.service".to_string(),
            UnitState { active: state.into(), enabled: "enabled".into() },
        )]),
        binaries: BTreeMap::new(),
        files: BTreeMap::new(),
        paths_exist: BTreeMap::from([("/var/lib/etcd/member".to_string(), etcd_active)]),
        sysctls: BTreeMap::new(),
        commands: BTreeMap::new(),
    }
}

/// Fake hosts m1..m3 (each tunneling to its real member when `expose`) and a state dir whose
/// PKI holds the test cluster's CA and client certificate where kubeforge looks for them.
fn setup(cluster: &EtcdCluster, expose: bool) -> (tempfile::TempDir, StateDir, Gathered) {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::open(dir.path()).unwrap();
    let pki = state.pki_dir();
    std::fs::create_dir_all(pki.join("etcd")).unwrap();
    std::fs::create_dir_all(pki.join("nodes/m1/etcd")).unwrap();
    std::fs::write(pki.join("etcd/ca.crt"), cluster.ca_pem()).unwrap();
    std::fs::write(pki.join("nodes/m1/etcd/healthcheck-client.crt"), cluster.client.cert_pem())
        .unwrap();
    std::fs::write(pki.join("nodes/m1/etcd/healthcheck-client.key"), cluster.client.key_pem())
        .unwrap();
    let mut gathered = Gathered::default();
    for name in ["m1", "m2", "m3", "cp1"] {
        let host = FakeHost::new(name);
        if expose && name != "cp1" {
            let addr: SocketAddr = ([127, 0, 0, 1], cluster.member(name).client_port).into();
            host.expose_port(2379, addr);
        }
        gathered.transports.insert(name.into(), Arc::new(host) as Arc<dyn Transport>);
        gathered.facts.insert(name.into(), Ok(facts(name != "cp1")));
    }
    (dir, state, gathered)
}

#[test]
fn members_and_their_health_are_read_through_the_tunnels() {
    if kubeforge_tests::etcd::require_etcd().is_none() {
        return;
    }
    let mut cluster = EtcdCluster::start(3, &etcd_binary());
    let spec = kubeforge_playbooks::spec::load_str(SPEC, "observe.yaml").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let etcd_selected = PhaseSelection::new(Some(Phase::Etcd), &[]);

    let (_dir, state, gathered) = setup(&cluster, true);
    let observed =
        rt.block_on(kubeforge::observe::observe(&spec, &state, &etcd_selected, &gathered)).unwrap();
    let etcd = observed.etcd.expect("an existing cluster is observed");
    let mut seen: Vec<(String, bool, bool)> =
        etcd.members.iter().map(|m| (m.name.clone(), m.healthy, m.is_learner)).collect();
    seen.sort();
    let all_healthy: Vec<(String, bool, bool)> =
        ["m1", "m2", "m3"].iter().map(|n| (n.to_string(), true, false)).collect();
    assert_eq!(seen, all_healthy);
    assert!(observed.local_pki_dir.starts_with('/'), "{}", observed.local_pki_dir);

    // A member that is down is observed as unhealthy (the others still answer).
    cluster.stop("m3");
    let observed =
        rt.block_on(kubeforge::observe::observe(&spec, &state, &etcd_selected, &gathered)).unwrap();
    let m3 = observed.etcd.unwrap().members.into_iter().find(|m| m.name == "m3").unwrap();
    assert!(!m3.healthy);

    // Phases before etcd observe nothing.
    let until_pki = PhaseSelection::new(Some(Phase::Pki), &[]);
    let observed =
        rt.block_on(kubeforge::observe::observe(&spec, &state, &until_pki, &gathered)).unwrap();
    assert!(observed.etcd.is_none());
}

#[test]
fn existing_etcd_that_does_not_answer_is_an_error_not_a_new_cluster() {
    if kubeforge_tests::etcd::require_etcd().is_none() {
        return;
    }
    let cluster = EtcdCluster::start(3, &etcd_binary());
    let spec = kubeforge_playbooks::spec::load_str(SPEC, "observe.yaml").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let selection = PhaseSelection::new(Some(Phase::Etcd), &[]);

    // The facts say etcd runs on m1..m3, but no tunnel reaches a member.
    let (_dir, state, gathered) = setup(&cluster, false);
    let err =
        rt.block_on(kubeforge::observe::observe(&spec, &state, &selection, &gathered)).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("etcd exists on m1, m2, m3"), "{text}");
    assert!(text.contains("m2: m2: nothing listens on 127.0.0.1:2379"), "{text}");
    let help = err.help().map(|h| h.to_string()).unwrap_or_default();
    assert!(help.contains("never treats existing etcd data as a new cluster"), "{help}");

    // No member host has etcd running or data: a new cluster, nothing to read.
    let (_dir2, state2, mut fresh) = setup(&cluster, false);
    for f in fresh.facts.values_mut() {
        *f = Ok(facts(false));
    }
    let observed =
        rt.block_on(kubeforge::observe::observe(&spec, &state2, &selection, &fresh)).unwrap();
    assert!(observed.etcd.is_none());
}
