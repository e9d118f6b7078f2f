//! The restore plan on hand-built facts: its order (everything that can fail before anything
//! stops; stop before move-aside before the swap before the start before the gates), the same
//! snapshot, token and member list on every member, etcdctl for 3.4 and etcdutl for 3.5, the
//! control planes' static pods stopped and started exactly, and refusals that leave nothing to
//! run.

use std::collections::BTreeMap;

use super::super::tests::{cluster, fresh_facts, present_file};
use super::super::*;
use crate::facts::{FileState, UnitState};
use crate::model::{Cluster, EtcdTopology, Role};
use crate::render::NodeFile;
use crate::render::configs::etcd as unit;

const CP: &[Role] = &[Role::ControlPlane];
const WORKER: &[Role] = &[Role::Worker];
const ETCD: &[Role] = &[Role::Etcd];
const STAMP: &str = "20270102T030405Z";

fn stacked(version: &str) -> Cluster {
    let mut c = cluster(&[
        ("cp1", "10.0.0.11", CP),
        ("cp2", "10.0.0.12", CP),
        ("cp3", "10.0.0.13", CP),
        ("w1", "10.0.0.51", WORKER),
    ]);
    c.etcd.version = version.into();
    c
}

fn external() -> Cluster {
    let mut c = cluster(&[
        ("cp1", "10.0.0.11", CP),
        ("cp2", "10.0.0.12", CP),
        ("etcd1", "10.0.0.31", ETCD),
        ("etcd2", "10.0.0.32", ETCD),
        ("etcd3", "10.0.0.33", ETCD),
    ]);
    c.etcd.topology = EtcdTopology::External;
    c
}

fn tree(c: &Cluster) -> RenderTree {
    let mut tree = RenderTree::default();
    let file = |s: String, mode| NodeFile { contents: s.into_bytes(), mode, secret: false };
    for h in c.etcd_members() {
        tree.insert(&h.name, unit::UNIT, file(format!("[Service] # {}\n", h.name), 0o600)).unwrap();
        tree.insert(&h.name, unit::SYSUSERS, file("u etcd - \"etcd\"\n".into(), 0o644)).unwrap();
        for p in super::super::etcd::PKI_FILES {
            tree.insert(&h.name, p, file(format!("pem of {p} for {}", h.name), 0o600)).unwrap();
        }
    }
    tree
}

fn snapshot() -> RestoreSnapshot {
    RestoreSnapshot {
        from: "demo-20270101T000000Z".into(),
        spec_file: "cluster.yaml".into(),
        local_path: "/tmp/kubeforge-restore/snapshot.db".into(),
        sha256: "5".repeat(64),
        revision: 1007,
        stamp: STAMP.into(),
    }
}

/// Hosts on which `apply --until etcd` ran (etcd running with data); control planes also run
/// their static pods when `pods` is set.
fn converged(
    c: &Cluster,
    t: &RenderTree,
    tools: &[&str],
    pods: bool,
) -> BTreeMap<String, HostProbe> {
    c.hosts
        .iter()
        .map(|h| {
            let mut f = fresh_facts(&h.name);
            for (path, file) in t.hosts.get(&h.name).into_iter().flatten() {
                f.files.insert(path.clone(), present_file(&file.contents, file.mode));
            }
            if h.is_etcd_member_in(c) {
                for bin in tools.iter().chain(["etcd"].iter()) {
                    f.files.insert(format!("/usr/local/bin/{bin}"), present_file(b"bin", 0o755));
                }
                f.paths_exist.insert(unit::MEMBER_DIR.into(), true);
                f.units.insert(
                    "etcd.service".into(),
                    UnitState { active: "active".into(), enabled: "enabled".into() },
                );
            }
            if pods && h.is_control_plane() {
                for pod in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
                    f.files.insert(
                        format!("/etc/kubernetes/manifests/{pod}.yaml"),
                        present_file(pod.as_bytes(), 0o600),
                    );
                }
            }
            (h.name.clone(), Ok(f))
        })
        .collect()
}

trait Member {
    fn is_etcd_member_in(&self, c: &Cluster) -> bool;
}
impl Member for crate::model::Host {
    fn is_etcd_member_in(&self, c: &Cluster) -> bool {
        c.etcd_members().any(|m| m.name == self.name)
    }
}

fn plan_restore(c: &Cluster, t: &RenderTree, facts: &BTreeMap<String, HostProbe>) -> Plan {
    // The etcd binary on the hosts matches the artifact source's.
    let artifacts: ArtifactInventory = [(
        "etcd".to_string(),
        LocalArtifact {
            path: "/srv/etcd".into(),
            sha256: files::sha256_hex(b"bin"),
            unverified: false,
        },
    )]
    .into();
    let selection = PhaseSelection::new(Some(Phase::Etcd), &[]);
    let observed = Observed { etcd: None, local_pki_dir: "/state/pki".into() };
    let input = PlanInput {
        cluster: c,
        tree: t,
        facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &observed,
        applied: None,
    };
    plan(&Operation::Restore { snapshot: snapshot() }, input).unwrap()
}

/// The sequence as `host: what` lines.
fn sequence_lines(p: &Plan) -> Vec<String> {
    let etcd = p.phases.iter().find(|p| p.phase == Phase::Etcd).expect("etcd phase");
    etcd.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect()
}

fn position(lines: &[String], needle: &str) -> usize {
    lines
        .iter()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no `{needle}` in\n{}", lines.join("\n")))
}

fn last_position(lines: &[String], needle: &str) -> usize {
    lines.iter().rposition(|l| l.contains(needle)).unwrap()
}

#[test]
fn every_member_restores_the_same_snapshot_with_one_new_token_and_the_spec_members() {
    let c = stacked("v3.5.1");
    let t = tree(&c);
    let p = plan_restore(&c, &t, &converged(&c, &t, &["etcdutl", "etcdctl"], false));
    assert!(p.blocked.is_empty(), "{:?}", p.blocked);
    assert_eq!(p.operation.name(), "restore");
    let etcd = &p.phases[1];
    assert_eq!(etcd.hosts.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3"], "not the worker");
    let token = format!("--initial-cluster-token=demo-restore-{}", STAMP.to_ascii_lowercase());
    let members = "--initial-cluster=cp1=https://10.0.0.11:2380,cp2=https://10.0.0.12:2380,\
                   cp3=https://10.0.0.13:2380";
    for (host, steps) in &etcd.hosts {
        let Step::PushArtifact(push) = &steps[0] else { panic!("{host}: push first") };
        assert_eq!(push.local_path, "/tmp/kubeforge-restore/snapshot.db");
        assert_eq!(push.sha256, "5".repeat(64));
        assert_eq!(push.dest, format!("/var/lib/etcd.snapshot-{STAMP}.db"));
        assert_eq!(push.mode, 0o600);
        let Step::Run(restore) = &steps[1] else { panic!("{host}: restore second") };
        let address = c.host(host).unwrap().address;
        assert_eq!(
            restore.argv,
            [
                "/usr/local/bin/etcdutl".to_string(),
                "snapshot".into(),
                "restore".into(),
                push.dest.clone(),
                format!("--name={host}"),
                members.into(),
                token.clone(),
                format!("--initial-advertise-peer-urls=https://{address}:2380"),
                format!("--data-dir=/var/lib/etcd.restored-{STAMP}"),
            ]
        );
        let labels: Vec<String> = steps.iter().map(Step::label).collect();
        assert_eq!(
            labels[2..],
            [
                format!("chown -R etcd:etcd /var/lib/etcd.restored-{STAMP}"),
                format!("chmod 0700 /var/lib/etcd.restored-{STAMP}"),
                format!("rm -f /var/lib/etcd.snapshot-{STAMP}.db"),
            ]
        );
    }
    // The unit starts the restored member with the new token and the spec's members.
    let env: Vec<&PutFile> = etcd
        .sequence
        .iter()
        .filter_map(|s| match &s.step {
            Step::PutFile(f) if f.path == unit::BOOTSTRAP_ENV => Some(f),
            _ => None,
        })
        .collect();
    assert_eq!(env.len(), 3);
    for f in env {
        let text = String::from_utf8(f.contents.clone()).unwrap();
        assert!(
            text.contains(&format!(
                "ETCD_INITIAL_CLUSTER_TOKEN=demo-restore-{}",
                STAMP.to_ascii_lowercase()
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "ETCD_INITIAL_CLUSTER={}",
                &members["--initial-cluster=".len()..]
            )),
            "{text}"
        );
        assert!(text.contains("ETCD_INITIAL_CLUSTER_STATE=new"), "{text}");
    }
}

#[test]
fn stop_comes_before_move_aside_before_swap_before_start_before_gates() {
    let c = stacked("v3.4.23");
    let t = tree(&c);
    let p = plan_restore(&c, &t, &converged(&c, &t, &["etcdctl"], false));
    let lines = sequence_lines(&p);
    let last_stop = last_position(&lines, "systemctl stop etcd.service");
    let first_aside = position(&lines, "mv -T /var/lib/etcd /var/lib/etcd.before-restore-");
    let last_swap = last_position(&lines, "mv -T /var/lib/etcd.restored-");
    let first_start = position(&lines, "systemctl start --no-block etcd.service");
    let last_start = last_position(&lines, "systemctl start --no-block etcd.service");
    let health = position(&lines, "are healthy");
    let restored = position(&lines, "at revision 1007");
    assert!(last_stop < first_aside, "{lines:#?}");
    assert!(last_swap < first_start, "{lines:#?}");
    assert!(last_start < health && health < restored, "{lines:#?}");
    for host in ["cp1", "cp2", "cp3"] {
        assert!(lines.contains(&format!("{host}: systemctl stop etcd.service")));
        assert!(lines.contains(&format!(
            "{host}: mv -T /var/lib/etcd /var/lib/etcd.before-restore-{STAMP}"
        )));
    }
    // The old data is moved, never deleted; only the pushed copy is removed.
    let all: Vec<String> = p.phases[1]
        .hosts
        .values()
        .flatten()
        .chain(p.phases[1].sequence.iter().map(|s| &s.step))
        .map(Step::label)
        .collect();
    let removals: Vec<&String> = all.iter().filter(|l| l.contains("rm ")).collect();
    assert!(
        removals.iter().all(|l| l.starts_with("rm -f /var/lib/etcd.snapshot-")),
        "{removals:?}"
    );
    // The gates hold the expected revision and every member.
    let etcd = &p.phases[1];
    let gate = etcd
        .sequence
        .iter()
        .find_map(|s| match &s.step {
            Step::Etcd(op) => match &op.action {
                EtcdAction::RestoredGate { members, revision, .. } => Some((members, *revision)),
                _ => None,
            },
            _ => None,
        })
        .unwrap();
    assert_eq!(gate, (&vec!["cp1".to_string(), "cp2".into(), "cp3".into()], 1007));
    // The host steps restore with 3.4's etcdctl (API v3).
    let Step::Run(restore) = &etcd.hosts["cp1"][1] else { panic!() };
    assert_eq!(
        restore.argv[..5],
        ["env", "ETCDCTL_API=3", "/usr/local/bin/etcdctl", "snapshot", "restore"]
    );
    // No static pods on these hosts (the lab): no apiserver steps.
    assert!(!lines.iter().any(|l| l.contains("manifests")), "{lines:#?}");
}

#[test]
fn control_plane_pods_stop_before_etcd_and_start_after_the_gates() {
    let c = stacked("v3.5.1");
    let t = tree(&c);
    let p = plan_restore(&c, &t, &converged(&c, &t, &["etcdutl"], true));
    let lines = sequence_lines(&p);
    let first_etcd_stop = position(&lines, "systemctl stop etcd.service");
    let restored = position(&lines, "at revision 1007");
    for host in ["cp1", "cp2", "cp3"] {
        for pod in ["kube-apiserver", "kube-controller-manager", "kube-scheduler"] {
            let aside = position(
                &lines,
                &format!(
                    "{host}: sh -c mkdir -p -m 0700 /etc/kubernetes/manifests-restore && mv -f \
                     /etc/kubernetes/manifests/{pod}.yaml /etc/kubernetes/manifests-restore/{pod}.yaml"
                ),
            );
            let back = position(
                &lines,
                &format!(
                    "{host}: mv -f /etc/kubernetes/manifests-restore/{pod}.yaml \
                     /etc/kubernetes/manifests/{pod}.yaml"
                ),
            );
            assert!(aside < first_etcd_stop && restored < back, "{lines:#?}");
        }
        let stopped =
            position(&lines, &format!("{host}: wait: kube-apiserver on {host} has stopped"));
        assert!(stopped < first_etcd_stop);
        let ready =
            position(&lines, &format!("{host}: wait: kube-apiserver on {host} answers /readyz"));
        assert!(ready > restored);
    }
    let api = position(&lines, "wait: the API answers /readyz through https://10.0.0.100:8443");
    assert_eq!(api, lines.len() - 1, "{lines:#?}");
    // Manifests left aside by an interrupted restore are put back too.
    let mut facts = converged(&c, &t, &["etcdutl"], false);
    if let Some(Ok(f)) = facts.get_mut("cp2") {
        f.paths_exist.insert("/etc/kubernetes/manifests-restore/kube-apiserver.yaml".into(), true);
    }
    let lines = sequence_lines(&plan_restore(&c, &t, &facts));
    assert!(lines.iter().any(|l| {
        l.starts_with("cp2: mv -f /etc/kubernetes/manifests-restore/kube-apiserver.yaml")
    }));
    assert!(!lines.iter().any(|l| l.starts_with("cp1:") && l.contains("manifests")));
}

#[test]
fn external_topology_restores_etcd_hosts_and_stops_the_control_planes_apiservers() {
    let c = external();
    let t = tree(&c);
    let p = plan_restore(&c, &t, &converged(&c, &t, &["etcdutl"], true));
    assert!(p.blocked.is_empty(), "{:?}", p.blocked);
    assert_eq!(p.phases[1].hosts.keys().collect::<Vec<_>>(), ["etcd1", "etcd2", "etcd3"]);
    let lines = sequence_lines(&p);
    let first_stop = position(&lines, "etcd1: systemctl stop etcd.service");
    assert!(position(&lines, "cp2: wait: kube-apiserver on cp2 has stopped") < first_stop);
    assert!(!lines.iter().any(|l| l.starts_with("cp1: systemctl")), "{lines:#?}");
}

#[test]
fn a_restore_is_refused_whole_when_a_member_is_unreachable_or_not_installed() {
    let c = stacked("v3.5.1");
    let t = tree(&c);
    let mut facts = converged(&c, &t, &["etcdutl"], false);
    facts.insert("cp2".into(), Err("connection refused".into()));
    if let Some(Ok(f)) = facts.get_mut("cp3") {
        f.files.insert(unit::UNIT.into(), FileState::Absent);
        f.files.remove("/usr/local/bin/etcdutl");
    }
    let p = plan_restore(&c, &t, &facts);
    assert!(p.has_no_steps(), "nothing may run: {p:#?}");
    assert_eq!(p.blocked.keys().collect::<Vec<_>>(), ["cp2", "cp3"]);
    let cp3: Vec<&str> = p.blocked["cp3"].iter().map(|p| p.check.as_str()).collect();
    assert_eq!(cp3, ["etcd-installed", "restore-tool"]);
    assert!(p.blocked["cp3"][0].remedy.contains("kubeforge apply -f <spec> --until etcd"));
    let text = render_text(&p);
    assert!(text.contains("Blocked hosts"), "{text}");
}
