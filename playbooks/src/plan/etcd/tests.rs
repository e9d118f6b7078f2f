//! The etcd phase on hand-built facts and observations: a new cluster, joins, removals,
//! refusals, and convergence checked by a stateful simulation of hosts and etcd (files
//! written stay written, started members join the member list, membership operations change
//! it) followed by a second plan that must be empty.

use std::collections::BTreeMap;

use super::super::tests::{cluster, fresh_facts, present_file, simulate_unit};
use super::super::*;
use super::{BIN_DIR, PKI_FILES};
use crate::etcd_membership::CurrentMember;
use crate::facts::{FileState, UnitState};
use crate::model::{Cluster, EtcdTopology, Role};
use crate::render::NodeFile;
use crate::render::configs::etcd as unit;

const CP: &[Role] = &[Role::ControlPlane];
const WORKER: &[Role] = &[Role::Worker];
const ETCD: &[Role] = &[Role::Etcd];

fn stacked(n: usize) -> Cluster {
    let hosts: Vec<(String, String)> =
        (1..=n).map(|i| (format!("cp{i}"), format!("10.0.0.{}", 10 + i))).collect();
    let mut spec: Vec<(&str, &str, &[Role])> =
        hosts.iter().map(|(n, a)| (n.as_str(), a.as_str(), CP)).collect();
    spec.push(("w1", "10.0.0.51", WORKER));
    cluster(&spec)
}

/// The etcd part of a render tree: unit, sysusers file and the etcd PKI files.
fn tree(cluster: &Cluster) -> RenderTree {
    let mut tree = RenderTree::default();
    for h in cluster.etcd_members() {
        let file = |s: String, mode| NodeFile { contents: s.into_bytes(), mode, secret: false };
        tree.insert(&h.name, unit::UNIT, file(format!("[Service] # {}\n", h.name), 0o600)).unwrap();
        tree.insert(&h.name, unit::SYSUSERS, file("# users\nu etcd - \"etcd\"\n".into(), 0o644))
            .unwrap();
        for p in PKI_FILES {
            tree.insert(&h.name, p, file(format!("pem of {p} for {}", h.name), 0o600)).unwrap();
        }
    }
    tree
}

fn artifacts() -> ArtifactInventory {
    ["etcd", "etcdctl", "etcdutl"]
        .iter()
        .map(|b| {
            let a = LocalArtifact {
                path: format!("/srv/a/etcd/v3.5.21/{b}"),
                sha256: "e".repeat(64),
                unverified: false,
            };
            (b.to_string(), a)
        })
        .collect()
}

/// Fresh machines that already have their PKI files (the pki phase ran before).
fn fresh(cluster: &Cluster, tree: &RenderTree) -> BTreeMap<String, HostProbe> {
    cluster
        .hosts
        .iter()
        .map(|h| {
            let mut f = fresh_facts(&h.name);
            for (path, file) in tree.hosts.get(&h.name).into_iter().flatten() {
                if path.starts_with("/etc/kubernetes/pki/") {
                    f.files.insert(path.clone(), present_file(&file.contents, file.mode));
                }
            }
            (h.name.clone(), Ok(f))
        })
        .collect()
}

fn etcd_only() -> PhaseSelection {
    etcd_until(Phase::Etcd)
}

/// The phases from etcd up to `last`, as `apply --until last` on a cluster whose earlier
/// phases ran.
fn etcd_until(last: Phase) -> PhaseSelection {
    PhaseSelection::new(Some(last), &[Phase::Preflight, Phase::Os, Phase::Runtime, Phase::Pki])
}

/// `apply`'s whole plan for `cluster` on the simulated hosts, after the applied `record`.
fn plan_after(
    cluster: &Cluster,
    tree: &RenderTree,
    sim: &Sim,
    record: &crate::applied::Applied,
    selection: &PhaseSelection,
) -> Plan {
    let artifacts = artifacts();
    let observed = sim.observed();
    let input = PlanInput {
        cluster,
        tree,
        facts: &sim.facts,
        artifacts: &artifacts,
        selection,
        observed: &observed,
        applied: Some(record),
    };
    plan(&Operation::Apply, input).unwrap()
}

fn plan_etcd(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    observed: &Observed,
) -> Result<PhasePlan, PlanError> {
    let artifacts = artifacts();
    let selection = etcd_only();
    let input = PlanInput {
        cluster,
        tree,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed,
        applied: None,
    };
    let plan = plan(&Operation::Apply, input)?;
    Ok(plan.phases.into_iter().find(|p| p.phase == Phase::Etcd).unwrap())
}

/// A simulated cluster: hosts' facts and etcd's member list, changed by executing a plan.
struct Sim {
    facts: BTreeMap<String, HostProbe>,
    members: Vec<CurrentMember>,
    next_id: u64,
    /// Every etcd operation executed, as the plan's text shows it.
    ops: Vec<String>,
    /// Members leadership was moved away from (before their removal).
    moved_away: Vec<u64>,
}

impl Sim {
    fn new(facts: BTreeMap<String, HostProbe>) -> Sim {
        Sim { facts, members: Vec::new(), next_id: 0x100, ops: Vec::new(), moved_away: Vec::new() }
    }

    fn observed(&self) -> Observed {
        let etcd = (!self.members.is_empty()).then(|| EtcdObserved {
            answered_by: "sim".into(),
            members: self.members.clone(),
            status: Default::default(),
        });
        Observed { etcd, local_pki_dir: "/state/pki".into() }
    }

    fn host(&mut self, host: &str) -> &mut crate::facts::HostFacts {
        match self.facts.get_mut(host) {
            Some(Ok(f)) => f,
            _ => panic!("step on unknown host {host}"),
        }
    }

    /// The bootstrap file on `host`, parsed into (initial cluster, state).
    fn bootstrap_env(&mut self, host: &str) -> (String, String) {
        let f = self.host(host);
        let text =
            String::from_utf8(f.files[unit::BOOTSTRAP_ENV].contents().unwrap().to_vec()).unwrap();
        let value = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap().to_string()
        };
        (value("ETCD_INITIAL_CLUSTER"), value("ETCD_INITIAL_CLUSTER_STATE"))
    }

    fn step(&mut self, host: &str, step: &Step) {
        match step {
            Step::PutFile(p) => {
                self.host(host).files.insert(p.path.clone(), present_file(&p.contents, p.mode));
            }
            Step::PushArtifact(a) => {
                let state = FileState::Present {
                    sha256: a.sha256.clone(),
                    mode: Some(a.mode),
                    owner: Some("root".into()),
                    group: Some("root".into()),
                    contents: None,
                };
                self.host(host).files.insert(a.dest.clone(), state);
            }
            Step::Unit(u) => simulate_unit(&mut self.host(host).units, u),
            Step::Run(r) if r.argv[0] == "systemd-sysusers" => {}
            Step::Run(r) if r.argv[..3] == ["systemctl", "start", "--no-block"] => {
                self.start_member(host)
            }
            Step::Run(r) if r.argv[..2] == ["systemctl", "disable"] => {
                let f = self.host(host);
                f.units.insert(
                    "etcd.service".into(),
                    UnitState { active: "inactive".into(), enabled: "disabled".into() },
                );
            }
            Step::Run(r) if r.argv[..2] == ["systemctl", "stop"] => {
                self.host(host).units.get_mut("etcd.service").unwrap().active = "inactive".into();
            }
            Step::Run(r) if r.argv[0] == "sh" && r.argv[2].starts_with("mv -T /var/lib/etcd") => {
                self.host(host).paths_exist.insert(unit::MEMBER_DIR.into(), false);
            }
            Step::Run(r) => panic!("unexpected command {:?}", r.argv),
            Step::Gate(_) | Step::Guarded(_) => {}
            Step::Etcd(op) => {
                self.ops.push(format!("{host}: {}", op.action));
                match &op.action {
                    EtcdAction::AddLearner { peer_url, .. } => {
                        self.next_id += 1;
                        self.members.push(CurrentMember {
                            name: String::new(),
                            id: self.next_id,
                            peer_urls: vec![peer_url.clone()],
                            is_learner: true,
                            healthy: false,
                        });
                    }
                    EtcdAction::Promote { peer_url, .. } => {
                        let m = self.members.iter_mut().find(|m| &m.peer_urls[0] == peer_url);
                        let m = m.expect("promote of a member etcd does not have");
                        assert!(m.healthy, "promoted before it started");
                        m.is_learner = false;
                    }
                    EtcdAction::MoveLeader { id, .. } => self.moved_away.push(*id),
                    EtcdAction::Remove { id, .. } => {
                        let voter = self.members.iter().any(|m| m.id == *id && !m.is_learner);
                        assert!(
                            !voter || self.moved_away.contains(id),
                            "voter {id:x} removed without moving leadership away first"
                        );
                        self.members.retain(|m| m.id != *id)
                    }
                    EtcdAction::HealthGate { members, .. } => {
                        for name in members {
                            let ok = self.members.iter().any(|m| &m.name == name && m.healthy);
                            assert!(ok, "gate on {name}, which is not a healthy member");
                        }
                    }
                    EtcdAction::RestoredGate { .. } => panic!("apply planned a restore's gate"),
                    EtcdAction::VersionGate { .. } => panic!("apply planned an upgrade's gate"),
                }
            }
        }
    }

    /// etcd starting on `host`: with a bootstrap file of state `new` it forms the cluster
    /// named there; with `existing` it must already be in the member list (as a learner).
    fn start_member(&mut self, host: &str) {
        let (initial, state) = self.bootstrap_env(host);
        let f = self.host(host);
        assert!(f.files.contains_key(unit::UNIT), "etcd started before its unit exists");
        f.units.get_mut("etcd.service").unwrap().active = "active".into();
        f.paths_exist.insert(unit::MEMBER_DIR.into(), true);
        let mine = initial
            .split(',')
            .find_map(|p| p.strip_prefix(&format!("{host}=")))
            .expect("the initial cluster names the member itself")
            .to_string();
        if state == "new" {
            if let Some(m) = self.members.iter_mut().find(|m| m.peer_urls[0] == mine) {
                // A bootstrap member that starts late.
                assert!(!m.is_learner);
                m.healthy = true;
            } else {
                self.next_id += 1;
                self.members.push(CurrentMember {
                    name: host.into(),
                    id: self.next_id,
                    peer_urls: vec![mine],
                    is_learner: false,
                    healthy: true,
                });
            }
        } else {
            let listed = initial.split(',').count();
            assert_eq!(listed, self.members.len(), "initial cluster must list every member");
            let m = self.members.iter_mut().find(|m| m.peer_urls[0] == mine);
            let m = m.expect("a member joins only after it was added");
            m.name = host.into();
            m.healthy = true;
        }
    }

    fn run(&mut self, phase: &PhasePlan) {
        for (host, steps) in &phase.hosts {
            for step in steps {
                self.step(host, step);
            }
        }
        for s in &phase.sequence {
            self.step(&s.host, &s.step);
        }
    }

    /// Plans and runs until the plan is empty; returns how many applies it took (at most 3).
    fn converge(&mut self, cluster: &Cluster, tree: &RenderTree) -> usize {
        for applies in 0..3 {
            let phase = plan_etcd(cluster, tree, &self.facts, &self.observed()).unwrap();
            if phase.hosts.is_empty() && phase.sequence.is_empty() {
                return applies;
            }
            self.run(&phase);
        }
        panic!("no convergence after 3 applies");
    }
}

#[test]
fn a_new_cluster_installs_everything_then_starts_all_members_together() {
    let c = stacked(3);
    let t = tree(&c);
    let facts = fresh(&c, &t);
    let phase = plan_etcd(&c, &t, &facts, &Observed::default()).unwrap();
    assert_eq!(phase.hosts.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"]);
    let labels: Vec<String> = phase.hosts["cp2"].iter().map(Step::label).collect();
    assert_eq!(
        labels,
        [
            "push etcd to /usr/local/bin/etcd",
            "push etcdctl to /usr/local/bin/etcdctl",
            "push etcdutl to /usr/local/bin/etcdutl",
            "systemd-sysusers --inline u etcd - \"etcd\"",
            "create /etc/sysusers.d/kubeforge-etcd.conf",
            "create /etc/systemd/system/etcd.service",
            "systemctl daemon-reload",
            "systemctl enable etcd.service",
            "create /etc/kubeforge/etcd-bootstrap.env",
            "systemctl start --no-block etcd.service",
        ]
    );
    let Step::PutFile(env) = &phase.hosts["cp2"][8] else { panic!() };
    assert_eq!(
        String::from_utf8_lossy(&env.contents).lines().skip(2).collect::<Vec<_>>(),
        [
            "ETCD_INITIAL_CLUSTER=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,cp3=https://10.0.0.13:2380",
            "ETCD_INITIAL_CLUSTER_STATE=new",
            "ETCD_INITIAL_CLUSTER_TOKEN=demo",
        ]
    );
    // Then one health gate over all three, through their tunnels, with the state dir's cert,
    // and a record per member of the files it loaded.
    assert_eq!(phase.sequence.len(), 4);
    let records: Vec<String> =
        phase.sequence[1..].iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        records,
        ["cp1", "cp2", "cp3"]
            .map(|h| format!("{h}: create /var/lib/kubeforge/loaded/etcd.service"))
    );
    let Step::Etcd(gate) = &phase.sequence[0].step else { panic!() };
    assert_eq!(
        gate.action,
        EtcdAction::HealthGate {
            members: vec!["cp1".into(), "cp2".into(), "cp3".into()],
            timeout_ms: 120_000
        }
    );
    assert_eq!(gate.tls.cert, "nodes/cp1/etcd/healthcheck-client.crt");

    let mut sim = Sim::new(facts);
    assert_eq!(sim.converge(&c, &t), 1, "one apply, then \"No changes.\"");
    assert_eq!(sim.members.len(), 3);
    assert!(!sim.facts["w1"].as_ref().unwrap().files.contains_key(unit::BOOTSTRAP_ENV));
}

#[test]
fn the_bootstrap_file_is_not_diffed_once_a_member_has_data() {
    let c = stacked(3);
    let t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    // An operator edits the file: etcd ignores it now, so does the plan.
    let f = sim.host("cp1");
    f.files.insert(unit::BOOTSTRAP_ENV.into(), present_file(b"edited\n", 0o600));
    assert_eq!(sim.converge(&c, &t), 0);
    // Gone entirely: the unit needs it to start, so it is written again (state existing).
    sim.host("cp1").files.insert(unit::BOOTSTRAP_ENV.into(), FileState::Absent);
    let phase = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap();
    assert_eq!(phase.hosts["cp1"].len(), 1);
    assert!(phase.sequence.is_empty());
    sim.run(&phase);
    assert_eq!(sim.bootstrap_env("cp1").1, "existing");
}

#[test]
fn scale_out_joins_each_member_as_a_learner_one_at_a_time() {
    let three = stacked(3);
    let mut sim = Sim::new(fresh(&three, &tree(&three)));
    sim.converge(&three, &tree(&three));
    let five = stacked(5);
    let t = tree(&five);
    for (h, f) in fresh(&five, &t) {
        sim.facts.entry(h).or_insert(f);
    }
    let phase = plan_etcd(&five, &t, &sim.facts, &sim.observed()).unwrap();
    // New hosts are installed in parallel but not started there.
    for h in ["cp4", "cp5"] {
        assert!(phase.hosts[h].iter().all(|s| !s.label().contains("start")), "{h}");
    }
    let seq: Vec<String> =
        phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp1: etcd: member add cp4 (https://10.0.0.14:2380) as learner",
            "cp4: create /etc/kubeforge/etcd-bootstrap.env",
            "cp4: systemctl start --no-block etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3,cp4 are healthy (up to 120 s)",
            "cp1: etcd: member promote cp4",
            "cp1: etcd: wait until cp1,cp2,cp3,cp4 are healthy (up to 120 s)",
            "cp1: etcd: member add cp5 (https://10.0.0.15:2380) as learner",
            "cp5: create /etc/kubeforge/etcd-bootstrap.env",
            "cp5: systemctl start --no-block etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3,cp4,cp5 are healthy (up to 120 s)",
            "cp1: etcd: member promote cp5",
            "cp1: etcd: wait until cp1,cp2,cp3,cp4,cp5 are healthy (up to 120 s)",
            "cp4: create /var/lib/kubeforge/loaded/etcd.service",
            "cp5: create /var/lib/kubeforge/loaded/etcd.service",
        ]
    );
    assert_eq!(sim.converge(&five, &t), 1);
    assert_eq!(sim.bootstrap_env("cp5").1, "existing");
    assert!(sim.members.iter().all(|m| !m.is_learner && m.healthy) && sim.members.len() == 5);
}

#[test]
fn scale_in_removes_members_first_and_decommissions_hosts_still_in_the_spec() {
    let five = stacked(5);
    let t5 = tree(&five);
    let mut sim = Sim::new(fresh(&five, &t5));
    sim.converge(&five, &t5);
    // cp4 leaves the spec; cp5 stays as a worker (so kubeforge can reach it).
    let mut three = stacked(3);
    let mut cp5 = five.host("cp5").unwrap().clone();
    cp5.roles = [Role::Worker].into();
    three.hosts.push(cp5);
    sim.facts.remove("cp4");
    let t3 = tree(&three);
    let phase = plan_etcd(&three, &t3, &sim.facts, &sim.observed()).unwrap();
    let seq: Vec<String> =
        phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp1: etcd: move leadership away from cp4 (104) if it leads",
            "cp1: etcd: member remove cp4 (104)",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp1: etcd: move leadership away from cp5 (105) if it leads",
            "cp1: etcd: member remove cp5 (105)",
            "cp5: systemctl disable --now etcd.service",
            "cp5: sh -c mv -T /var/lib/etcd \"/var/lib/etcd.removed-$(date -u +%Y%m%dT%H%M%SZ)\"",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
        ]
    );
    let Step::Etcd(remove) = &phase.sequence[1].step else { panic!() };
    assert!(remove.why.contains("no longer in the spec"), "{}", remove.why);
    assert_eq!(sim.converge(&three, &t3), 1);
    assert_eq!(sim.members.len(), 3);

    // Put back, cp5 joins again: its old data was moved aside, so it joins with an empty dir.
    let mut again = stacked(3);
    again.hosts.push(five.host("cp5").unwrap().clone());
    let ta = tree(&again);
    assert_eq!(sim.converge(&again, &ta), 1);
    assert_eq!(sim.members.len(), 4);
}

#[test]
fn a_host_with_stale_data_joins_after_its_data_is_moved_aside() {
    let three = stacked(3);
    let t = tree(&three);
    let mut sim = Sim::new(fresh(&three, &t));
    sim.converge(&three, &t);
    let mut four = stacked(3);
    let mut cp4 = stacked(4).host("cp4").unwrap().clone();
    cp4.roles = [Role::ControlPlane].into();
    four.hosts.push(cp4);
    let t4 = tree(&four);
    let mut f = fresh(&four, &t4).remove("cp4").unwrap().unwrap();
    f.paths_exist.insert(unit::MEMBER_DIR.into(), true);
    sim.facts.insert("cp4".into(), Ok(f));
    let phase = plan_etcd(&four, &t4, &sim.facts, &sim.observed()).unwrap();
    let on_cp4: Vec<String> =
        phase.sequence.iter().filter(|s| s.host == "cp4").map(|s| s.step.label()).collect();
    assert_eq!(on_cp4[0], "systemctl stop etcd.service");
    assert!(on_cp4[1].starts_with("sh -c mv -T /var/lib/etcd"));
    assert_eq!(sim.converge(&four, &t4), 1);
}

#[test]
fn refusals_name_why_and_what_to_do() {
    let three = stacked(3);
    let t = tree(&three);
    let mut sim = Sim::new(fresh(&three, &t));
    sim.converge(&three, &t);
    let one = stacked(1);
    let err = plan_etcd(&one, &tree(&one), &sim.facts, &sim.observed()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcd membership change refused: removing 2 of 3 etcd members in one apply (cp2, cp3) is \
         refused: at most 1 may be removed at once so that the members that stay are a majority \
         of the current cluster; remove 1 per apply"
    );
    for m in &mut sim.members[1..] {
        m.healthy = false;
    }
    let err = plan_etcd(&three, &t, &sim.facts, &sim.observed()).unwrap_err();
    assert!(err.to_string().contains("etcd has no quorum: 1 of 3"), "{err}");
}

#[test]
fn existing_data_without_a_member_list_is_never_bootstrapped_over() {
    let c = stacked(3);
    let t = tree(&c);
    let mut facts = fresh(&c, &t);
    if let Some(Ok(f)) = facts.get_mut("cp2") {
        f.paths_exist.insert(unit::MEMBER_DIR.into(), true);
    }
    let err = plan_etcd(&c, &t, &facts, &Observed::default()).unwrap_err();
    assert!(err.to_string().starts_with("etcd data exists on cp2 (/var/lib/etcd/member)"), "{err}");
}

#[test]
fn missing_pki_files_and_binaries_are_named() {
    let c = stacked(3);
    let t = tree(&c);
    let mut facts = fresh(&c, &t);
    if let Some(Ok(f)) = facts.get_mut("cp3") {
        f.files.remove("/etc/kubernetes/pki/etcd/peer.key");
    }
    let err = plan_etcd(&c, &t, &facts, &Observed::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "etcd member cp3 lacks /etc/kubernetes/pki/etcd/peer.key; the pki phase puts them: apply \
         without skipping `pki` (or put them there), then apply again"
    );
    let facts = fresh(&c, &t);
    let selection = etcd_only();
    let none = ArtifactInventory::new();
    let input = PlanInput {
        cluster: &c,
        tree: &t,
        facts: &facts,
        artifacts: &none,
        selection: &selection,
        observed: &Observed::default(),
        applied: None,
    };
    let err = plan(&Operation::Apply, input).unwrap_err();
    assert!(
        err.to_string().starts_with(&format!("etcd member cp1 has no {BIN_DIR}/etcd")),
        "{err}"
    );
}

#[test]
fn a_new_cluster_waits_for_every_member_host() {
    let c = stacked(3);
    let t = tree(&c);
    let mut facts = fresh(&c, &t);
    facts.insert("cp3".into(), Err("no route to host".into()));
    let phase = plan_etcd(&c, &t, &facts, &Observed::default()).unwrap();
    // cp1 and cp2 are installed, nothing starts, no membership step.
    assert_eq!(phase.hosts.keys().collect::<Vec<_>>(), ["cp1", "cp2"]);
    assert!(phase.hosts.values().flatten().all(|s| !s.label().contains("start")));
    assert!(phase.sequence.is_empty());
}

#[test]
fn external_topology_runs_etcd_on_etcd_hosts_only() {
    let mut c = cluster(&[
        ("cp1", "10.0.0.11", CP),
        ("cp2", "10.0.0.12", CP),
        ("etcd1", "10.0.0.31", ETCD),
        ("etcd2", "10.0.0.32", ETCD),
        ("etcd3", "10.0.0.33", ETCD),
    ]);
    c.etcd.topology = EtcdTopology::External;
    let t = tree(&c);
    let facts = fresh(&c, &t);
    let phase = plan_etcd(&c, &t, &facts, &Observed::default()).unwrap();
    assert_eq!(phase.hosts.keys().collect::<Vec<_>>(), ["etcd1", "etcd2", "etcd3"]);
    let mut sim = Sim::new(facts);
    assert_eq!(sim.converge(&c, &t), 1);
    assert_eq!(sim.members.len(), 3);
}

#[test]
fn a_changed_unit_restarts_running_members_one_at_a_time() {
    let c = stacked(3);
    let mut t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    for h in ["cp1", "cp2", "cp3"] {
        let f = t.hosts.get_mut(h).unwrap().get_mut(unit::UNIT).unwrap();
        f.contents.extend_from_slice(b"# new flag\n");
    }
    let phase = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap();
    let seq: Vec<String> =
        phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp1: systemctl restart etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp2: systemctl restart etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp3: systemctl restart etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp1: change /var/lib/kubeforge/loaded/etcd.service",
            "cp2: change /var/lib/kubeforge/loaded/etcd.service",
            "cp3: change /var/lib/kubeforge/loaded/etcd.service",
        ]
    );
    assert_eq!(sim.converge(&c, &t), 1);
}

#[test]
fn the_plan_text_shows_the_sequence_and_json_keeps_its_shape() {
    let c = stacked(3);
    let t = tree(&c);
    let facts = fresh(&c, &t);
    let artifacts = artifacts();
    let selection = etcd_only();
    let observed = Observed { etcd: None, local_pki_dir: "/state/pki".into() };
    let input = PlanInput {
        cluster: &c,
        tree: &t,
        facts: &facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    let plan = plan(&Operation::Apply, input).unwrap();
    let text = render_text(&plan);
    assert!(text.contains(
        "  then, one step at a time:\n    1. on cp1:\n      ? etcd wait until cp1,cp2,cp3 are healthy (up to 120 s)"
    ), "{text}");
    assert!(text.contains("client certificate /state/pki/nodes/cp1/etcd/healthcheck-client.crt"));
    let json = serde_json::to_value(&plan).unwrap();
    let etcd = json["phases"].as_array().unwrap().iter().find(|p| p["phase"] == "etcd").unwrap();
    assert_eq!(etcd["sequence"][0]["step"]["kind"], "etcd");
    assert_eq!(etcd["sequence"][0]["step"]["action"]["kind"], "health-gate");
    // Phases without a sequence keep the JSON they had.
    let other = json["phases"].as_array().unwrap().iter().find(|p| p["phase"] != "etcd");
    assert!(other.is_none_or(|p| p.get("sequence").is_none()));
}

#[test]
fn reissued_etcd_certificates_restart_members_one_at_a_time_when_pki_runs_too() {
    let c = stacked(3);
    let mut t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    let server = "/etc/kubernetes/pki/etcd/server.crt";
    t.hosts.get_mut("cp2").unwrap().get_mut(server).unwrap().contents = b"renewed".to_vec();
    // Without the pki phase the host keeps its file and etcd its certificate: nothing to do.
    assert_eq!(sim.converge(&c, &t), 0);
    // With it, the pki phase puts the new file and etcd on cp2 must restart to load it.
    let artifacts = artifacts();
    let selection =
        PhaseSelection::new(Some(Phase::Etcd), &[Phase::Preflight, Phase::Os, Phase::Runtime]);
    let observed = sim.observed();
    let input = PlanInput {
        cluster: &c,
        tree: &t,
        facts: &sim.facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    let plan = plan(&Operation::Apply, input).unwrap();
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).unwrap();
    let seq: Vec<String> =
        etcd.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp2: systemctl restart etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp2: change /var/lib/kubeforge/loaded/etcd.service",
        ]
    );
}

/// Issue 10 item 6: `certs renew`, `apply --until pki` (the file is put, nothing restarts),
/// then `apply`: the renewed certificate is on the host and matches the tree, yet etcd still
/// serves the old one. The record of what etcd loaded says so, and the member is restarted;
/// with the same facts but no interruption (record up to date) nothing is planned.
#[test]
fn a_certificate_put_by_an_interrupted_run_still_restarts_the_member_next_time() {
    let c = stacked(3);
    let mut t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    let server = "/etc/kubernetes/pki/etcd/server.crt";
    t.hosts.get_mut("cp2").unwrap().get_mut(server).unwrap().contents = b"renewed".to_vec();
    // The interrupted run: only the pki phase ran on cp2.
    sim.facts
        .get_mut("cp2")
        .unwrap()
        .as_mut()
        .unwrap()
        .files
        .insert(server.to_string(), present_file(b"renewed", t.hosts["cp2"][server].mode));
    let phase = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap();
    let seq: Vec<String> =
        phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp2: systemctl restart etcd.service",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp2: change /var/lib/kubeforge/loaded/etcd.service",
        ]
    );
    let Step::Unit(restart) = &phase.sequence[0].step else { panic!() };
    assert!(restart.why.contains(server), "the reason names the file: {}", restart.why);
    // After that run the record is current: nothing more to do.
    assert_eq!(sim.converge(&c, &t), 1);
    assert_eq!(sim.converge(&c, &t), 0);
}

#[test]
fn an_interrupted_bootstrap_starts_the_member_that_never_ran() {
    let c = stacked(3);
    let t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    // cp3 never started: etcd lists it (named from the initial cluster) but it has no data.
    sim.members.iter_mut().find(|m| m.name == "cp3").unwrap().healthy = false;
    let f = sim.host("cp3");
    f.paths_exist.insert(unit::MEMBER_DIR.into(), false);
    f.units.get_mut("etcd.service").unwrap().active = "failed".into();
    let phase = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap();
    let on_cp3: Vec<String> = phase.hosts["cp3"].iter().map(Step::label).collect();
    assert_eq!(on_cp3, ["systemctl start --no-block etcd.service"]);
    assert_eq!(phase.sequence.len(), 1, "a gate follows the start");
    assert_eq!(sim.converge(&c, &t), 1);
    assert_eq!(sim.bootstrap_env("cp3").1, "new");
    assert!(sim.members.iter().all(|m| m.healthy));
}

#[test]
fn stopped_members_without_quorum_are_started_rather_than_refused() {
    let c = stacked(3);
    let t = tree(&c);
    let mut sim = Sim::new(fresh(&c, &t));
    sim.converge(&c, &t);
    for h in ["cp2", "cp3"] {
        sim.members.iter_mut().find(|m| m.name == h).unwrap().healthy = false;
        sim.host(h).units.get_mut("etcd.service").unwrap().active = "inactive".into();
    }
    let phase = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap();
    assert_eq!(phase.hosts.keys().collect::<Vec<_>>(), ["cp2", "cp3"]);
    assert_eq!(sim.converge(&c, &t), 1);
    assert!(sim.members.iter().all(|m| m.healthy));
    // A member kubeforge cannot start (its host unreachable) keeps the refusal.
    sim.members.iter_mut().for_each(|m| m.healthy = m.name == "cp1");
    sim.host("cp2").units.get_mut("etcd.service").unwrap().active = "inactive".into();
    sim.facts.insert("cp3".into(), Err("no route to host".into()));
    let err = plan_etcd(&c, &t, &sim.facts, &sim.observed()).unwrap_err();
    assert!(err.to_string().contains("etcd has no quorum"), "{err}");
}

#[test]
fn a_dead_member_given_a_new_machine_is_removed_then_the_new_one_joins_as_a_learner() {
    let three = stacked(3);
    let t = tree(&three);
    let mut sim = Sim::new(fresh(&three, &t));
    sim.converge(&three, &t);
    // cp3's machine is powered off for good: its member no longer answers.
    let old_id = sim.members.iter().find(|m| m.name == "cp3").unwrap().id;
    sim.members.iter_mut().find(|m| m.id == old_id).unwrap().healthy = false;
    // The spec gives cp3 a new machine (new address); its facts are a fresh machine's.
    let mut replaced = three.clone();
    let cp3 = replaced.hosts.iter_mut().find(|h| h.name == "cp3").unwrap();
    cp3.address = "10.0.0.99".parse().unwrap();
    let tr = tree(&replaced);
    let new_facts = fresh(&replaced, &tr).remove("cp3").unwrap();
    sim.facts.insert("cp3".into(), new_facts);
    let phase = plan_etcd(&replaced, &tr, &sim.facts, &sim.observed()).unwrap();
    let seq: Vec<String> =
        phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq[..4],
        [
            format!("cp1: etcd: move leadership away from cp3 ({old_id:x}) if it leads"),
            format!("cp1: etcd: member remove cp3 ({old_id:x})"),
            "cp1: etcd: wait until cp1,cp2 are healthy (up to 120 s)".to_string(),
            "cp1: etcd: member add cp3 (https://10.0.0.99:2380) as learner".to_string(),
        ],
        "{seq:#?}"
    );
    // Nothing of the old member is on the new machine: it is not stopped or disabled there.
    assert!(!seq.iter().any(|s| s.contains("disable --now") || s.contains("mv -T")), "{seq:#?}");
    let Step::Etcd(remove) = &phase.sequence[1].step else { panic!() };
    assert!(remove.why.contains("new machine"), "{}", remove.why);
    // The new machine gets etcd installed and enabled, and is started as `existing`.
    assert!(phase.hosts["cp3"].iter().any(|s| s.label() == "systemctl enable etcd.service"));
    assert_eq!(sim.converge(&replaced, &tr), 1);
    let urls: Vec<(&str, &str, bool)> = sim
        .members
        .iter()
        .map(|m| (m.name.as_str(), m.peer_urls[0].as_str(), m.is_learner || !m.healthy))
        .collect();
    assert_eq!(
        urls,
        [
            ("cp1", "https://10.0.0.11:2380", false),
            ("cp2", "https://10.0.0.12:2380", false),
            ("cp3", "https://10.0.0.99:2380", false),
        ]
    );
    // A member that still answers is not moved: refused, with the way to do it.
    let mut alive = Sim::new(fresh(&three, &t));
    alive.converge(&three, &t);
    let err = plan_etcd(&replaced, &tr, &alive.facts, &alive.observed()).unwrap_err();
    assert!(err.to_string().contains("still answers"), "{err}");
}

/// An applied record of `cluster` with every host's render-tree files.
fn applied_record(cluster: &Cluster, tree: &RenderTree) -> crate::applied::Applied {
    crate::applied::Applied::next(None, cluster, tree, "apply", &[], "t".into(), |b| {
        format!("len{}", b.len())
    })
}

#[test]
fn hosts_that_left_the_spec_leave_etcd_first_then_are_cleaned_and_an_unreachable_one_is_named() {
    use crate::applied::Cleanup;
    let five = stacked(5);
    let mut t5 = tree(&five);
    let lb = |s: &str| NodeFile { contents: s.as_bytes().to_vec(), mode: 0o644, secret: false };
    for h in ["cp1", "cp2", "cp3", "cp4", "cp5"] {
        t5.insert(h, "/etc/haproxy/haproxy.cfg", lb("global\n")).unwrap();
        t5.insert(h, "/etc/keepalived/keepalived.conf", lb("vrrp\n")).unwrap();
    }
    let mut sim = Sim::new(fresh(&five, &t5));
    sim.converge(&five, &t5);
    let record = applied_record(&five, &t5);
    // cp4 and cp5 leave the spec; cp4 runs haproxy and keepalived with its files, cp5 does
    // not answer over SSH.
    let three = stacked(3);
    let t3 = tree(&three);
    {
        let cp4 = sim.host("cp4");
        for u in ["haproxy.service", "keepalived.service"] {
            cp4.units
                .insert(u.into(), UnitState { active: "active".into(), enabled: "enabled".into() });
        }
        for (path, file) in &t5.hosts["cp4"] {
            cp4.files.insert(path.clone(), present_file(&file.contents, file.mode));
        }
    }
    sim.facts.insert("cp5".into(), Err("connection refused".into()));
    let plan = plan_after(&three, &t3, &sim, &record, &etcd_until(Phase::LoadBalancer));
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).unwrap();
    let seq: Vec<String> =
        etcd.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    assert_eq!(
        seq,
        [
            "cp1: etcd: move leadership away from cp4 (104) if it leads",
            "cp1: etcd: member remove cp4 (104)",
            "cp4: systemctl disable --now etcd.service",
            "cp4: sh -c mv -T /var/lib/etcd \"/var/lib/etcd.removed-$(date -u +%Y%m%dT%H%M%SZ)\"",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
            "cp1: etcd: move leadership away from cp5 (105) if it leads",
            "cp1: etcd: member remove cp5 (105)",
            "cp1: etcd: wait until cp1,cp2,cp3 are healthy (up to 120 s)",
        ]
    );
    // The unreachable member is still removed, and the reason says what is left to do.
    let Step::Etcd(remove5) = &etcd.sequence[6].step else { panic!() };
    assert!(remove5.why.contains("cannot reach it"), "{}", remove5.why);
    // First in the loadbalancer phase's ordered steps, cp4's teardown: haproxy and
    // keepalived stopped and disabled, every file it was given removed; etcd was done above.
    let last = plan.phases.last().unwrap();
    assert_eq!(last.phase, Phase::LoadBalancer);
    let cleanup: Vec<String> =
        last.sequence.iter().filter(|s| s.host == "cp4").map(|s| s.step.label()).collect();
    assert_eq!(
        cleanup[..4],
        [
            "systemctl stop keepalived.service",
            "systemctl stop haproxy.service",
            "systemctl disable keepalived.service",
            "systemctl disable haproxy.service",
        ],
        "{cleanup:#?}"
    );
    let rm = cleanup.iter().find(|s| s.starts_with("rm -f -- ")).expect("files removed");
    for path in t5.hosts["cp4"].keys() {
        assert!(rm.contains(path.as_str()), "{path} not removed: {rm}");
    }
    assert!(!cleanup.iter().any(|s| s.contains("etcd.service") && s.contains("stop")));
    assert!(!last.sequence.iter().any(|s| s.host == "cp5"), "nothing runs on cp5");
    // What the plan says about each.
    let cp4 = plan.departed.iter().find(|d| d.name == "cp4").unwrap();
    assert_eq!(cp4.cleanup, Cleanup::Cleaned);
    let cp5 = plan.departed.iter().find(|d| d.name == "cp5").unwrap();
    let Cleanup::Unreachable { reason, left } = &cp5.cleanup else { panic!("{cp5:?}") };
    assert_eq!(reason, "connection refused");
    assert!(left.iter().any(|l| l == "etcd's data in /var/lib/etcd"), "{left:?}");
    assert_eq!(plan.departed_cleaned(), ["cp4"]);
    let text = render_text(&plan);
    assert!(text.contains("cp4 (10.0.0.14, control-plane; applied in generation 1"), "{text}");
    assert!(text.contains("NOT REACHED (connection refused)"), "{text}");
    assert!(text.contains("cleaned by this run"), "{text}");
    // After the run succeeds, the record forgets cp4 and keeps cp5 with what it was given.
    let mut next =
        crate::applied::Applied::next(Some(&record), &three, &t3, "apply", &[], "t2".into(), |b| {
            format!("len{}", b.len())
        });
    next.forget_departed(&plan.departed_cleaned());
    let left: Vec<&str> = next.departed.keys().map(String::as_str).collect();
    assert_eq!(left, ["cp5"]);
}

#[test]
fn a_departed_host_is_cleaned_only_by_a_run_covering_etcd_and_the_load_balancer() {
    use crate::applied::Cleanup;
    let four = stacked(4);
    let t4 = tree(&four);
    let mut sim = Sim::new(fresh(&four, &t4));
    sim.converge(&four, &t4);
    let record = applied_record(&four, &t4);
    let three = stacked(3);
    let t3 = tree(&three);
    let plan = plan_after(&three, &t3, &sim, &record, &etcd_only());
    let cp4 = plan.departed.iter().find(|d| d.name == "cp4").unwrap();
    assert!(matches!(cp4.cleanup, Cleanup::Deferred { .. }), "{cp4:?}");
    assert!(plan.departed_cleaned().is_empty());
    // Its member is still removed (and its etcd stopped) by the etcd phase.
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).unwrap();
    assert!(etcd.sequence.iter().any(|s| s.step.label() == "etcd: member remove cp4 (104)"));
}

#[test]
fn a_departed_hosts_old_address_now_used_by_a_spec_host_is_not_torn_down() {
    use crate::applied::Cleanup;
    let four = stacked(4);
    let t4 = tree(&four);
    let mut sim = Sim::new(fresh(&four, &t4));
    sim.converge(&four, &t4);
    let record = applied_record(&four, &t4);
    // cp4's machine now serves as w1 (the spec gives w1 cp4's old address).
    let mut three = stacked(3);
    three.hosts.iter_mut().find(|h| h.name == "w1").unwrap().address = "10.0.0.14".parse().unwrap();
    let t3 = tree(&three);
    assert!(departed_address_reused(&three, &record.hosts["cp4"]));
    let plan = plan_after(&three, &t3, &sim, &record, &etcd_until(Phase::LoadBalancer));
    let cp4 = plan.departed.iter().find(|d| d.name == "cp4").unwrap();
    let Cleanup::Deferred { why } = &cp4.cleanup else { panic!("{cp4:?}") };
    assert!(why.contains("now belongs to w1"), "{why}");
    let lb = plan.phases.iter().find(|p| p.phase == Phase::LoadBalancer).unwrap();
    assert!(!lb.sequence.iter().any(|s| s.host == "cp4"), "nothing runs under cp4's name");
    let etcd = plan.phases.iter().find(|p| p.phase == Phase::Etcd).unwrap();
    assert!(!etcd.sequence.iter().any(|s| s.host == "cp4"), "its etcd is not stopped there");
    assert!(etcd.sequence.iter().any(|s| s.step.label() == "etcd: member remove cp4 (104)"));
}

#[test]
fn a_departed_node_whose_kubelet_runs_is_drained_from_a_staying_control_plane_first() {
    use crate::applied::Cleanup;
    let three = stacked(3);
    let mut with_w2 = three.clone();
    let mut w2 = three.host("w1").unwrap().clone();
    w2.name = "w2".into();
    w2.address = "10.0.0.52".parse().unwrap();
    with_w2.hosts.push(w2);
    let mut t = tree(&with_w2);
    let file = |s: &str| NodeFile { contents: s.as_bytes().to_vec(), mode: 0o644, secret: false };
    t.insert("w2", "/etc/systemd/system/kubelet.service", file("[Service]\n")).unwrap();
    let mut sim = Sim::new(fresh(&with_w2, &t));
    sim.converge(&with_w2, &t);
    let record = applied_record(&with_w2, &t);
    {
        let w2 = sim.host("w2");
        let up = UnitState { active: "active".into(), enabled: "enabled".into() };
        w2.units.insert("kubelet.service".into(), up);
        w2.files.insert(
            "/etc/systemd/system/kubelet.service".into(),
            present_file(b"[Service]\n", 0o644),
        );
    }
    let t3 = tree(&three);
    let plan_with = |selection: &PhaseSelection| plan_after(&three, &t3, &sim, &record, selection);
    // Without the control-plane phase there is no kubectl to drain it: not cleaned yet.
    let p = plan_with(&etcd_until(Phase::LoadBalancer));
    assert!(matches!(p.departed[0].cleanup, Cleanup::Deferred { .. }), "{:?}", p.departed);
    // With it: drained and its Node deleted on cp1, then the kubelet stopped on w2.
    let p = plan_with(&etcd_until(Phase::ControlPlane));
    assert_eq!(p.departed[0].cleanup, Cleanup::Cleaned);
    let lb = p.phases.iter().find(|ph| ph.phase == Phase::LoadBalancer).unwrap();
    let seq: Vec<String> =
        lb.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect();
    let k = "/usr/local/bin/kubectl --kubeconfig /etc/kubernetes/admin.conf";
    assert_eq!(
        seq[..4],
        [
            format!(
                "cp1: {k} drain w2 --ignore-daemonsets --delete-emptydir-data --force \
                 --timeout=300s"
            ),
            format!("cp1: {k} delete node w2 --ignore-not-found"),
            "w2: systemctl stop kubelet.service".to_string(),
            "w2: sh -c command -v crictl >/dev/null || exit 0; test -S \
             /run/containerd/containerd.sock || exit 0; crictl rmp --force --all"
                .to_string(),
        ],
        "{seq:#?}"
    );
    let Step::Run(drain) = &lb.sequence[0].step else { panic!() };
    let unless = drain.unless.as_ref().unwrap().join(" ");
    assert!(unless.ends_with("get node w2 2>&1 | grep -q NotFound"), "{unless}");
}
