//! Each stage of `certs rotate-ca` planned exactly on the facts of lab-like Debian machines that
//! run the whole cluster (etcd members, kube-apiserver's static pods, kubelets, every record of
//! what each service loaded), as `kubeforge_playbooks::rotation` selects its phases and batches
//! and `cli::commands::rotate` runs them. The lab cannot run Kubernetes, so this pins what it
//! cannot show, independently of any golden file: the bundle moves before the leaves, the leaves
//! (kubeconfigs too) before the old CA is dropped; after the files, etcd members restart one at a
//! time behind health gates, then each control plane's static pods one control plane at a time
//! behind `/readyz`, then the kubelets one at a time; a stage run again plans nothing; workers
//! never receive a CA or service-account key, and the `-next`/`-prev` files never leave the
//! state dir. The executor, on fake hosts, runs those restarts in that order and stops the
//! control planes at the first one that fails.

#[path = "render_support.rs"]
mod render_support;

use std::collections::{BTreeMap, BTreeSet};

use kubeforge_pki::{CaId, Rotated, RotationStage, SeededSerials, Store, rotate_stage};
use kubeforge_playbooks::etcd_membership::CurrentMember;
use kubeforge_playbooks::facts::{Binary, FileState, HostFacts, OsRelease, UnitState};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::pki_inputs::pki_request;
use kubeforge_playbooks::plan::{
    self, ArtifactInventory, EtcdObserved, HostProbe, MemberReport, Observed, Phase, Plan,
    PlanInput, Step, UnitAction,
};
use kubeforge_playbooks::render::{self, RenderInput, RenderTree};
use kubeforge_playbooks::rotation::{self, Installed};
use render_support::{example, secrets};
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_768_471_200).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn present(bytes: &[u8], mode: u32) -> FileState {
    FileState::Present {
        sha256: sha256_hex(bytes),
        mode: Some(mode),
        owner: Some("root".into()),
        group: Some("root".into()),
        contents: Some(bytes.to_vec()),
    }
}

fn tree(cluster: &Cluster, store: &Store) -> RenderTree {
    render::render(RenderInput { cluster, pki: store, secrets: &secrets() }).unwrap()
}

/// A lab machine (Debian 12) running what the spec gives it, every file of `tree` in place.
fn machine(cluster: &Cluster, tree: &RenderTree, host: &str) -> HostFacts {
    let h = cluster.host(host).unwrap();
    let unit = |active: &str| UnitState { active: active.into(), enabled: "enabled".into() };
    let mut units = BTreeMap::from([("containerd.service".to_string(), unit("active"))]);
    let mut binaries = BTreeMap::new();
    let mut files: BTreeMap<String, FileState> = tree.hosts[host]
        .iter()
        .map(|(path, file)| (path.clone(), present(&file.contents, file.mode)))
        .collect();
    let k8s = cluster.kubernetes_version.to_string();
    if h.runs_kubelet() {
        units.insert("kubelet.service".into(), unit("active"));
        binaries.insert(
            "kubelet".into(),
            Binary { path: Some("/usr/local/bin/kubelet".into()), version: Some(k8s.clone()) },
        );
        for b in ["kubelet", "kubectl", "crictl"] {
            files.insert(format!("/usr/local/bin/{b}"), present(b.as_bytes(), 0o755));
        }
    }
    if cluster.etcd_members().any(|m| m.name == host) {
        units.insert("etcd.service".into(), unit("active"));
        let version = cluster.etcd.version.to_string();
        binaries.insert(
            "etcd".into(),
            Binary { path: Some("/usr/local/bin/etcd".into()), version: Some(version) },
        );
        for b in ["etcd", "etcdctl", "etcdutl"] {
            files.insert(format!("/usr/local/bin/{b}"), present(b.as_bytes(), 0o755));
        }
    }
    HostFacts {
        os: OsRelease {
            id: "debian".into(),
            version_id: "12".into(),
            pretty_name: "Debian GNU/Linux 12 (bookworm)".into(),
        },
        arch: "x86_64".into(),
        kernel: "6.1.0-18-amd64".into(),
        cpus: 2,
        memory_kib: 4_000_000,
        swaps: vec![],
        hostname: host.into(),
        filesystems: BTreeSet::from(["overlay".to_string()]),
        clock_offset_ms: 0,
        listening_ports: BTreeSet::from([22]),
        units,
        binaries,
        files,
        paths_exist: BTreeMap::from([("/var/lib/etcd/member".to_string(), true)]),
        sysctls: BTreeMap::new(),
        commands: BTreeMap::new(),
    }
}

/// etcd as the CLI observes a healthy cluster.
fn observed(cluster: &Cluster) -> Observed {
    let members: Vec<CurrentMember> = cluster
        .etcd_members()
        .enumerate()
        .map(|(i, h)| CurrentMember {
            name: h.name.clone(),
            id: 100 + i as u64,
            peer_urls: vec![render::configs::etcd::peer_url(h.address)],
            is_learner: false,
            healthy: true,
        })
        .collect();
    let status = cluster
        .etcd_members()
        .enumerate()
        .map(|(i, h)| {
            let version = cluster.etcd.version.to_string();
            (h.name.clone(), MemberReport { version, is_leader: i == 0 })
        })
        .collect();
    let answered_by = members[0].name.clone();
    Observed {
        etcd: Some(EtcdObserved { answered_by, members, status }),
        local_pki_dir: String::new(),
    }
}

struct Lab {
    cluster: Cluster,
    facts: BTreeMap<String, HostProbe>,
    observed: Observed,
}

impl Lab {
    /// The plan of one stage's roll-out, as the CLI makes it.
    fn plan(&self, store: &Store) -> Plan {
        let tree = tree(&self.cluster, store);
        let installed = Installed { control_plane: true, workers: true };
        let selection = rotation::selection(installed);
        let artifacts = ArtifactInventory::new();
        let input = PlanInput {
            cluster: &self.cluster,
            tree: &tree,
            facts: &self.facts,
            artifacts: &artifacts,
            selection: &selection,
            observed: &self.observed,
            applied: None,
        };
        let plan = plan::plan(&plan::Operation::Apply, input).unwrap();
        assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
        rotation::roll_out(plan)
    }

    /// What the hosts look like after the plan ran: files written, units (re)started.
    fn run(&mut self, plan: &Plan) {
        for phase in &plan.phases {
            let seq = phase.sequence.iter().map(|s| (&s.host, &s.step));
            let steps = phase.hosts.iter().flat_map(|(h, steps)| steps.iter().map(move |s| (h, s)));
            for (host, step) in steps.chain(seq) {
                let Some(Ok(f)) = self.facts.get_mut(host) else { continue };
                match step {
                    Step::PutFile(p) => {
                        f.files.insert(p.path.clone(), present(&p.contents, p.mode));
                    }
                    Step::Unit(u) if !u.unit.is_empty() => {
                        let s = f.units.entry(u.unit.clone()).or_insert(UnitState {
                            active: "inactive".into(),
                            enabled: "disabled".into(),
                        });
                        match u.action {
                            UnitAction::Start | UnitAction::Restart | UnitAction::Reload => {
                                s.active = "active".into()
                            }
                            UnitAction::Stop => s.active = "inactive".into(),
                            UnitAction::Enable => s.enabled = "enabled".into(),
                            UnitAction::Disable => s.enabled = "disabled".into(),
                            UnitAction::DaemonReload => {}
                        }
                    }
                    _ => {}
                }
            }
        }
    }

    /// A lab running `store`: every file in place, every record of what was loaded written
    /// (the apply that brought it up, converged).
    fn up(name: &str, store: &Store) -> Lab {
        let cluster = example(name);
        let tree = tree(&cluster, store);
        let facts = cluster
            .hosts
            .iter()
            .map(|h| (h.name.clone(), Ok(machine(&cluster, &tree, &h.name))))
            .collect();
        let observed = observed(&cluster);
        let mut lab = Lab { cluster, facts, observed };
        for _ in 0..3 {
            let plan = lab.plan(store);
            if plan.has_no_steps() {
                return lab;
            }
            lab.run(&plan);
        }
        let left = lab.plan(store);
        panic!("the running lab does not converge:\n{}", plan::render_text(&left));
    }
}

fn labels(steps: &[Step]) -> Vec<String> {
    steps.iter().map(Step::label).collect()
}

/// Files a phase puts on `host`.
fn puts(plan: &Plan, phase: Phase, host: &str) -> BTreeSet<String> {
    let Some(p) = plan.phases.iter().find(|p| p.phase == phase) else { return BTreeSet::new() };
    p.hosts
        .get(host)
        .into_iter()
        .flatten()
        .filter_map(|s| match s {
            Step::PutFile(f) => Some(f.path.clone()),
            _ => None,
        })
        .collect()
}

/// The bytes the pki phase puts at `path` on `host`.
fn put_contents(plan: &Plan, host: &str, path: &str) -> Option<Vec<u8>> {
    let p = plan.phases.iter().find(|p| p.phase == Phase::Pki)?;
    p.hosts.get(host)?.iter().find_map(|s| match s {
        Step::PutFile(f) if f.path == path => Some(f.contents.clone()),
        _ => None,
    })
}

fn phase(plan: &Plan, phase: Phase) -> &plan::PhasePlan {
    plan.phases.iter().find(|p| p.phase == phase).unwrap()
}

/// The position of the first step whose label contains `needle`.
fn at(labels: &[String], needle: &str) -> Option<usize> {
    labels.iter().position(|l| l.contains(needle))
}

/// The static pods of `host` restarted through the CRI, then its /readyz and the endpoint's.
fn assert_static_pods_restart_behind_readyz(plan: &Plan, host: &str, stage: RotationStage) {
    let cp = phase(plan, Phase::ControlPlane);
    let l = labels(&cp.hosts[host]);
    let stop = at(&l, "crictl stop").unwrap_or_else(|| panic!("{stage} {host}: no restart {l:?}"));
    let own = at(&l, "/readyz at https://").unwrap_or_else(|| panic!("{stage} {host}: {l:?}"));
    let endpoint =
        at(&l, "the API answers /readyz").unwrap_or_else(|| panic!("{stage} {host}: {l:?}"));
    assert!(stop < own && own < endpoint, "{stage} {host}: {l:?}");
    // The record of what the pods loaded follows their restart.
    let record = at(&l, "/var/lib/kubeforge/loaded/static-pods").unwrap();
    assert!(endpoint < record, "{stage} {host}: {l:?}");
}

/// The plan's sequence of the etcd phase: each member restarted, then a health gate, in turn.
fn etcd_restarts(plan: &Plan) -> Vec<String> {
    let etcd = phase(plan, Phase::Etcd);
    let mut order = Vec::new();
    let mut gated = true;
    for s in &etcd.sequence {
        match &s.step {
            Step::Unit(u) if u.action == UnitAction::Restart => {
                assert!(gated, "{} restarted before the member before it was gated", s.host);
                order.push(s.host.clone());
                gated = false;
            }
            Step::Etcd(_) => gated = true,
            _ => {}
        }
    }
    assert!(gated, "the last etcd restart is not followed by a health gate");
    order
}

fn assert_no_signing_keys_leave(cluster: &Cluster, plan: &Plan) {
    for p in &plan.phases {
        for (host, steps) in &p.hosts {
            let worker = !cluster.host(host).unwrap().is_control_plane();
            for s in steps {
                let Step::PutFile(f) = s else { continue };
                assert!(
                    !f.path.contains("-next") && !f.path.contains("-prev"),
                    "{host}: {}",
                    f.path
                );
                if worker {
                    let name = f.path.rsplit('/').next().unwrap();
                    assert!(
                        !(f.path.starts_with("/etc/kubernetes/pki/")
                            && (name.ends_with("ca.key") || name.starts_with("sa."))),
                        "worker {host} receives {}",
                        f.path
                    );
                }
            }
        }
    }
}

fn stage(cluster: &Cluster, store: &Store, what: Rotated, st: RotationStage) -> Store {
    rotate_stage(
        &pki_request(cluster),
        store,
        what,
        st,
        now(),
        &mut SeededSerials::new(7 + st as u64),
    )
    .unwrap_or_else(|e| panic!("{what} {st}: {e}"))
    .store
}

fn fresh(cluster: &Cluster) -> Store {
    kubeforge_pki::generate(&pki_request(cluster), &Store::new(), now(), &mut SeededSerials::new(1))
        .unwrap()
        .store
}

const ETCD_LEAVES: [&str; 4] = [
    "/etc/kubernetes/pki/etcd/server.crt",
    "/etc/kubernetes/pki/etcd/peer.crt",
    "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    "/etc/kubernetes/pki/apiserver-etcd-client.crt",
];

/// Rolls `what` through its three stages on a running `example`, checking what each plan does
/// with `check(stage, plan)`, and that each stage run again plans nothing.
fn rotate(example_name: &str, what: Rotated, mut check: impl FnMut(&Lab, RotationStage, &Plan)) {
    let cluster = example(example_name);
    let mut store = fresh(&cluster);
    let mut lab = Lab::up(example_name, &store);
    for st in RotationStage::ALL {
        store = stage(&lab.cluster, &store, what, st);
        let plan = lab.plan(&store);
        let order: Vec<Phase> = plan.phases.iter().map(|p| p.phase).collect();
        assert_eq!(order, vec![Phase::Pki, Phase::Etcd, Phase::ControlPlane, Phase::Workers]);
        assert_eq!(phase(&plan, Phase::ControlPlane).batch, Some(1), "{st}");
        assert_eq!(phase(&plan, Phase::Workers).batch, Some(1), "{st}");
        assert_no_signing_keys_leave(&lab.cluster, &plan);
        check(&lab, st, &plan);
        lab.run(&plan);
        let again = lab.plan(&store);
        assert!(again.has_no_steps(), "{what} {st} again:\n{}", plan::render_text(&again));
    }
}

#[test]
fn etcd_ca_stages_restart_members_then_each_apiserver_behind_readyz() {
    for example_name in ["stacked", "external"] {
        rotate(example_name, Rotated::Ca(CaId::Etcd), |lab, st, plan| {
            let members: Vec<String> = lab.cluster.etcd_members().map(|h| h.name.clone()).collect();
            let cps: Vec<String> = lab.cluster.control_planes().map(|h| h.name.clone()).collect();
            for m in &members {
                let files = puts(plan, Phase::Pki, m);
                let leaves = files.contains("/etc/kubernetes/pki/etcd/server.crt");
                // The bundle every member loads: both CAs until the leaves have moved.
                let cas = put_contents(plan, m, "/etc/kubernetes/pki/etcd/ca.crt")
                    .map(|c| String::from_utf8(c).unwrap().matches("BEGIN CERTIFICATE").count());
                match st {
                    // Bundles first, no leaf yet; then leaves (the bundle re-ordered, new CA
                    // first), then the new CA alone.
                    RotationStage::TrustBoth => {
                        assert!(cas == Some(2) && !leaves, "{st} {m}: {files:?}")
                    }
                    RotationStage::ReissueLeaves => {
                        assert!(cas == Some(2) && leaves, "{st} {m}: {files:?}")
                    }
                    RotationStage::DropOld => {
                        assert!(cas == Some(1) && !leaves, "{st} {m}: {files:?}")
                    }
                }
            }
            for cp in &cps {
                let files = puts(plan, Phase::Pki, cp);
                assert_eq!(
                    files.contains("/etc/kubernetes/pki/apiserver-etcd-client.crt"),
                    st == RotationStage::ReissueLeaves,
                    "{st} {cp}: {files:?}"
                );
                assert_static_pods_restart_behind_readyz(plan, cp, st);
            }
            // Every member restarted, one at a time, behind a gate; the control planes' pods
            // after them (a later phase); the kubelets untouched (they do not read the etcd CA).
            assert_eq!(etcd_restarts(plan), members, "{example_name} {st}");
            let cp_hosts: Vec<&String> = phase(plan, Phase::ControlPlane).hosts.keys().collect();
            assert_eq!(cp_hosts, cps.iter().collect::<Vec<_>>(), "{st}");
            assert!(phase(plan, Phase::Workers).hosts.is_empty(), "{st}");
            for leaf in ETCD_LEAVES {
                let workers = lab.cluster.hosts.iter().filter(|h| !h.is_control_plane());
                for w in workers.filter(|h| !members.contains(&h.name)) {
                    assert!(!puts(plan, Phase::Pki, &w.name).contains(leaf));
                }
            }
        });
    }
}

#[test]
fn kubernetes_ca_stages_move_bundles_then_leaves_and_kubeconfigs_then_drop_in_rolling_order() {
    rotate("stacked", Rotated::Ca(CaId::Kubernetes), |lab, st, plan| {
        let cps: Vec<String> = lab.cluster.control_planes().map(|h| h.name.clone()).collect();
        let workers: Vec<String> = lab
            .cluster
            .hosts
            .iter()
            .filter(|h| h.runs_kubelet() && !h.is_control_plane())
            .map(|h| h.name.clone())
            .collect();
        assert!(!workers.is_empty());
        for cp in &cps {
            let files = puts(plan, Phase::Pki, cp);
            let leaves = [
                "/etc/kubernetes/pki/apiserver.crt",
                "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
                "/var/lib/kubelet/pki/kubelet.crt",
            ];
            let has_leaves = leaves.iter().filter(|l| files.contains(**l)).count();
            // Kubeconfigs carry the bundle (certificate-authority-data) in every stage and their
            // client certificate in reissue-leaves: they change each time.
            for conf in ["admin.conf", "controller-manager.conf", "scheduler.conf", "kubelet.conf"]
            {
                assert!(files.contains(&format!("/etc/kubernetes/{conf}")), "{st} {cp} {conf}");
            }
            match st {
                RotationStage::TrustBoth | RotationStage::DropOld => {
                    assert!(files.contains("/etc/kubernetes/pki/ca.crt"), "{st} {cp}");
                    assert_eq!(has_leaves, 0, "{st} {cp}: {files:?}");
                }
                RotationStage::ReissueLeaves => {
                    // ca.crt switches its order (new CA first, it signs now).
                    assert_eq!(has_leaves, leaves.len(), "{st} {cp}: {files:?}");
                }
            }
            // etcd's files are not this rotation's.
            assert!(!files.iter().any(|f| f.contains("/pki/etcd/")), "{st} {cp}: {files:?}");
            assert_static_pods_restart_behind_readyz(plan, cp, st);
        }
        assert!(etcd_restarts(plan).is_empty(), "{st}: etcd does not read the Kubernetes CA");
        // Every worker's kubelet restarted, after every control plane (a later phase), one at a
        // time (batch 1), each followed by its gate.
        let w = phase(plan, Phase::Workers);
        assert_eq!(w.hosts.keys().cloned().collect::<Vec<_>>(), workers, "{st}");
        for host in &workers {
            let files = puts(plan, Phase::Pki, host);
            assert!(files.contains("/etc/kubernetes/kubelet.conf"), "{st} {host}");
            let l = labels(&w.hosts[host]);
            let restart = at(&l, "systemctl restart kubelet")
                .unwrap_or_else(|| panic!("{st} {host}: kubelet not restarted: {l:?}"));
            assert!(l[restart..].iter().any(|x| x.starts_with("wait")), "{st} {host}: {l:?}");
        }
    });
}

#[test]
fn front_proxy_all_and_sa_rotations_restart_only_the_control_plane_readers() {
    rotate("stacked", Rotated::Ca(CaId::FrontProxy), |lab, st, plan| {
        for cp in lab.cluster.control_planes() {
            let files = puts(plan, Phase::Pki, &cp.name);
            let want: BTreeSet<String> = match st {
                RotationStage::ReissueLeaves => [
                    "/etc/kubernetes/pki/front-proxy-client.crt",
                    "/etc/kubernetes/pki/front-proxy-client.key",
                    "/etc/kubernetes/pki/front-proxy-ca.key",
                ]
                .into_iter()
                .chain(["/etc/kubernetes/pki/front-proxy-ca.crt"])
                .map(String::from)
                .collect(),
                _ => BTreeSet::from(["/etc/kubernetes/pki/front-proxy-ca.crt".to_string()]),
            };
            let files: BTreeSet<String> =
                files.into_iter().filter(|f| !f.starts_with("/var/lib/kubeforge/")).collect();
            assert_eq!(files, want, "{st} {}", cp.name);
            assert_static_pods_restart_behind_readyz(plan, &cp.name, st);
        }
        assert!(phase(plan, Phase::Workers).hosts.is_empty(), "{st}");
    });
    rotate("stacked", Rotated::AllCas, |lab, st, plan| {
        let members: Vec<String> = lab.cluster.etcd_members().map(|h| h.name.clone()).collect();
        assert_eq!(etcd_restarts(plan), members, "{st}");
        for cp in lab.cluster.control_planes() {
            assert_static_pods_restart_behind_readyz(plan, &cp.name, st);
        }
        assert!(!phase(plan, Phase::Workers).hosts.is_empty(), "{st}");
    });
    rotate("stacked", Rotated::ServiceAccount, |lab, st, plan| {
        for cp in lab.cluster.control_planes() {
            let files: BTreeSet<String> = puts(plan, Phase::Pki, &cp.name);
            let want: BTreeSet<String> = match st {
                RotationStage::ReissueLeaves => {
                    ["/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/sa.pub"]
                        .map(String::from)
                        .into()
                }
                _ => BTreeSet::from(["/etc/kubernetes/pki/sa.pub".to_string()]),
            };
            assert_eq!(files, want, "{st} {}", cp.name);
            assert_static_pods_restart_behind_readyz(plan, &cp.name, st);
        }
        assert!(etcd_restarts(plan).is_empty(), "{st}");
        assert!(phase(plan, Phase::Workers).hosts.is_empty(), "{st}");
    });
}

/// The executor runs a stage's reader restarts as planned: on fake hosts (every command
/// recorded in one timeline), the Kubernetes CA's `trust-both` goes control plane by control
/// plane (each one's pods stopped, then its `/readyz`, before the next one's stop), then the
/// kubelets one worker at a time. When cp2's pods cannot be restarted, cp3 is left untouched
/// (still serving with what it loaded) and named. (The workers' phase still runs on them: every
/// stage's files work with any mix of restarted and not yet restarted components, and the
/// rotation stops before its next stage.)
#[test]
fn the_executor_restarts_one_control_plane_at_a_time_and_stops_at_one_that_fails() {
    use std::sync::{Arc, Mutex};

    use kubeforge::exec::events::Collect;
    use kubeforge::exec::{AuditLog, ExecOptions, execute};
    use kubeforge::transport::Transport;
    use kubeforge::transport::fake::{Failure, FakeHost, Match, exit};

    let cluster = example("stacked");
    let store = fresh(&cluster);
    let lab = Lab::up("stacked", &store);
    let store = stage(&cluster, &store, Rotated::Ca(CaId::Kubernetes), RotationStage::TrustBoth);
    let mut plan = lab.plan(&store);
    // etcd's phase talks to members through tunnels the fake hosts do not have; it has nothing
    // to do in this rotation anyway.
    assert!(etcd_restarts(&plan).is_empty());
    plan.phases.retain(|p| p.phase != Phase::Etcd);

    for fail_cp2 in [false, true] {
        let timeline: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let mut transports: BTreeMap<String, Arc<dyn Transport>> = BTreeMap::new();
        for h in &cluster.hosts {
            let host = FakeHost::new(h.name.as_str());
            for program in ["sh", "systemctl", "/usr/local/bin/kubectl"] {
                let (t, name) = (timeline.clone(), h.name.clone());
                host.on(Match::program(program), move |cmd, _| {
                    t.lock().unwrap().push((name.clone(), cmd.argv.join(" ")));
                    exit(0, "", "")
                });
            }
            if fail_cp2 && h.name == "cp2" {
                host.fail(
                    Match::contains("crictl stop"),
                    Failure::exit(1, "crictl: timeout"),
                    None,
                );
            }
            transports.insert(h.name.clone(), Arc::new(host));
        }
        // As `certs rotate-ca` runs a stage.
        let options =
            ExecOptions { concurrency: 16, stop_at_first_failure: true, ..ExecOptions::default() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let report = rt.block_on(execute(
            &plan,
            &transports,
            &options,
            &Collect::default(),
            &AuditLog::disabled(),
        ));
        let timeline = timeline.lock().unwrap().clone();
        let first = |host: &str, needle: &str| {
            timeline.iter().position(|(h, c)| h == host && c.contains(needle))
        };
        let stop = |h: &str| first(h, "crictl stop");
        let ready = |h: &str| first(h, "/readyz");
        let kubelet = |h: &str| first(h, "restart kubelet");
        if !fail_cp2 {
            assert!(report.succeeded(), "{}", report.render_text());
            let (s1, s2, s3) = (stop("cp1").unwrap(), stop("cp2").unwrap(), stop("cp3").unwrap());
            assert!(s1 < ready("cp1").unwrap() && ready("cp1").unwrap() < s2, "{timeline:?}");
            assert!(s2 < ready("cp2").unwrap() && ready("cp2").unwrap() < s3, "{timeline:?}");
            let (k1, k2) = (kubelet("worker1").unwrap(), kubelet("worker2").unwrap());
            assert!(ready("cp3").unwrap() < k1 && k1 < k2, "{timeline:?}");
        } else {
            assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["cp2"]);
            // (cp2's failed stop is not in the timeline: the injected failure answers first.)
            assert!(ready("cp1").is_some(), "{timeline:?}");
            assert_eq!(stop("cp3"), None, "cp3 restarted after cp2 failed: {timeline:?}");
            assert_eq!(ready("cp2"), None, "{timeline:?}");
            assert!(report.not_reached.contains_key("cp3"), "{:?}", report.not_reached);
            assert_eq!(kubelet("worker1"), None, "a kubelet restarted after cp2 failed");
            assert_eq!(report.not_started, ["workers"], "{}", report.render_text());
        }
    }
}
