//! The whole loop on stateful fake hosts: gather → plan → execute → gather → plan says "No
//! changes."; a failing host is reported with every field while the others complete; a re-run
//! resumes; an unreachable host is named while the others proceed; Ctrl-C stops at a step
//! boundary. Each fake host simulates a fresh Debian machine: files, units, sysctls, modules
//! and swap change when the matching commands run, and its probe answers from that state.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kubeforge_playbooks::facts::ProbeRequest;
use kubeforge_playbooks::model::*;
use kubeforge_playbooks::plan::{
    self, ArtifactInventory, Observed, Phase, PhaseSelection, Plan, PlanInput,
};
use kubeforge_playbooks::render::{NodeFile, RenderTree};

use super::events::Collect;
use super::*;
use crate::gather::{GatherTarget, gather};
use crate::transport::fake::{
    ConnectFailure, Failure, FakeConnector, FakeFile, FakeHost, Match, exit,
};
use crate::transport::{CommandOutput, HostKeyPolicy as TransportPolicy, SshTarget, sha256_hex};

const HOSTS: [(&str, &str, Role); 3] = [
    ("cp1", "10.0.0.11", Role::ControlPlane),
    ("cp2", "10.0.0.12", Role::ControlPlane),
    ("w1", "10.0.0.21", Role::Worker),
];

fn cluster() -> Cluster {
    let ssh = Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts_file: None,
        host_key_policy: HostKeyPolicy::AcceptNew,
        bastion: None,
    };
    Cluster {
        name: "demo".into(),
        kubernetes_version: KubeVersion { major: 1, minor: 33, patch: 1 },
        control_plane_endpoint: Some(Endpoint::ip("10.0.0.100".parse().unwrap(), 8443)),
        network: Network {
            pod_subnet: Cidr { network: "10.244.0.0".parse().unwrap(), prefix: 16 },
            service_subnet: Cidr { network: "10.96.0.0".parse().unwrap(), prefix: 12 },
            cluster_domain: "cluster.local".into(),
        },
        etcd: Etcd { topology: EtcdTopology::Stacked, version: "v3.5.21".into() },
        load_balancer: LoadBalancer {
            mode: LoadBalancerMode::KeepalivedHaproxy,
            vip: Some("10.0.0.100".parse().unwrap()),
        },
        pki: Pki {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            certificate_validity: Duration::from_secs(3600),
            ca_validity: Duration::from_secs(7200),
            extra_sans: vec![],
        },
        ssh: ssh.clone(),
        artifacts: ArtifactSource::Upstream,
        artifact_mirror: None,
        backup: None,
        hosts: HOSTS
            .iter()
            .map(|(name, addr, role)| Host {
                name: name.to_string(),
                address: addr.parse::<IpAddr>().unwrap(),
                roles: [*role].into(),
                ssh: ssh.clone(),
            })
            .collect(),
    }
}

fn tree() -> RenderTree {
    let mut tree = RenderTree::default();
    for (host, _, _) in HOSTS {
        let file =
            |s: &str, mode, secret| NodeFile { contents: s.as_bytes().to_vec(), mode, secret };
        tree.insert(
            host,
            "/etc/modules-load.d/kubernetes.conf",
            file("overlay\nbr_netfilter\n", 0o644, false),
        )
        .unwrap();
        tree.insert(
            host,
            "/etc/sysctl.d/99-kubernetes.conf",
            file("net.ipv4.ip_forward = 1\n", 0o644, false),
        )
        .unwrap();
        tree.insert(host, "/etc/containerd/config.toml", file("version = 3\n", 0o644, false))
            .unwrap();
        tree.insert(host, "/etc/kubernetes/pki/ca.key", file("KEY\n", 0o600, true)).unwrap();
    }
    tree
}

/// What a simulated machine knows beyond its files.
#[derive(Debug, Clone)]
struct Machine {
    hostname: String,
    swap_on: bool,
    sysctls: BTreeMap<String, String>,
    loaded: BTreeSet<String>,
    /// unit → (active, enabled)
    units: BTreeMap<String, (String, String)>,
}

fn fresh_machine(hostname: &str) -> Machine {
    Machine {
        hostname: hostname.into(),
        swap_on: true,
        sysctls: [("net.ipv4.ip_forward".to_string(), "0".to_string())].into(),
        loaded: ["/sys/module/overlay".to_string()].into(),
        units: [("containerd.service".to_string(), ("active".to_string(), "enabled".to_string()))]
            .into(),
    }
}

/// The probe's answer, from the machine's state, in the format the script prints.
fn probe_output(
    req: &ProbeRequest,
    m: &Machine,
    files: &crate::transport::fake::FakeFiles,
) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    let mut s = String::new();
    let mut sec =
        |name: &str, arg: &str, body: &str| s.push_str(&format!("\n@@kf {name} {arg}\n{body}\n"));
    sec("clock", "", &format!("{}.{:09}", now.as_secs(), now.subsec_nanos()));
    sec(
        "os-release",
        "",
        "ID=debian\nVERSION_ID=\"12\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"",
    );
    sec("arch", "", "x86_64");
    sec("kernel", "", "6.1.0-18-amd64");
    sec("nproc", "", "2");
    sec("meminfo", "", "MemTotal:        4000000 kB");
    let swaps = if m.swap_on { "\n/dev/vda3 partition 1000 0 -2" } else { "" };
    sec("swaps", "", &format!("Filename Type Size Used Priority{swaps}"));
    sec("hostname", "", &m.hostname);
    sec("filesystems", "", "nodev\tsysfs\nnodev\toverlay\n\text4");
    sec("ports-ss", "", "LISTEN 0 128 0.0.0.0:22 0.0.0.0:*");
    for unit in &req.units {
        let (a, e) = m.units.get(unit).cloned().unwrap_or(("inactive".into(), String::new()));
        sec("unit", unit, &format!("active={a}\nenabled={e}"));
    }
    for b in &req.binaries {
        let body = match b.as_str() {
            "containerd" => {
                "path=/usr/bin/containerd\ncontainerd github.com/containerd/containerd 1.6.20~ds1 x"
            }
            "runc" => "path=/usr/sbin/runc\nrunc version 1.1.5+ds1",
            _ => "@absent",
        };
        sec("binary", b, body);
    }
    for p in &req.paths_exist {
        sec("exists", p, if m.loaded.contains(p) { "yes" } else { "no" });
    }
    for k in &req.sysctls {
        sec("sysctl", k, m.sysctls.get(k).map(String::as_str).unwrap_or("@absent"));
    }
    let wanted: BTreeSet<&String> = req.hash_files.union(&req.read_files).collect();
    let present: Vec<(&String, &FakeFile)> =
        wanted.iter().filter_map(|p| files.get(*p).map(|f| (*p, f))).collect();
    sec(
        "sha256",
        "",
        &present
            .iter()
            .map(|(p, f)| format!("{}  {p}", sha256_hex(&f.bytes)))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    sec(
        "stat",
        "",
        &present
            .iter()
            .map(|(p, f)| format!("{:o} {} {} {p}", f.mode, f.owner, f.group))
            .collect::<Vec<_>>()
            .join("\n"),
    );
    for p in &req.read_files {
        use base64::Engine;
        let body = files
            .get(p)
            .map(|f| base64::engine::general_purpose::STANDARD.encode(&f.bytes))
            .unwrap_or("@unread".into());
        sec("read", p, &body);
    }
    sec("end", "", "");
    s
}

/// A fake Debian host whose commands change its state.
fn machine_host(name: &str, request: ProbeRequest) -> (FakeHost, Arc<Mutex<Machine>>) {
    let machine = Arc::new(Mutex::new(fresh_machine(name)));
    let host = FakeHost::new(name)
        .with_coreutils()
        .with_file("/etc/hosts", FakeFile::new("127.0.0.1\tlocalhost\n", 0o644))
        .with_file(
            "/etc/fstab",
            FakeFile::new("UUID=1 / ext4 defaults 0 1\n/dev/vda3 none swap sw 0 0\n", 0o644),
        )
        .with_file("/etc/containerd/config.toml", FakeFile::new("version = 2\n", 0o644));
    let m = machine.clone();
    let machine_for_sh = machine.clone();
    host.on(Match::program("sh"), move |cmd, files| {
        let script = cmd.argv.get(2).cloned().unwrap_or_default();
        let m = m.lock().unwrap();
        if script.starts_with("LC_ALL=C") {
            return CommandOutput {
                exit_status: 0,
                stdout: probe_output(&request, &m, files).into_bytes(),
                stderr: vec![],
            };
        }
        if script.starts_with("systemctl restart containerd.service") {
            // containerd's restart, tried twice by the plan: the first attempt succeeds here.
            drop(m);
            let mut m = machine_for_sh.lock().unwrap();
            m.units
                .entry("containerd.service".into())
                .or_insert(("inactive".into(), "disabled".into()))
                .0 = "active".into();
            return exit(0, "", "");
        }
        let ok = if script.contains("/proc/swaps") {
            !m.swap_on
        } else if script.contains("systemctl is-active") {
            m.units.get("containerd.service").is_some_and(|u| u.0 == "active")
        } else if let Some(rest) = script.split("/proc/sys/").nth(1) {
            let key = rest.split(' ').next().unwrap_or("").replace('/', ".");
            let want = script.rsplit('\'').nth(1).unwrap_or("");
            m.sysctls.get(&key).map(String::as_str) == Some(want)
        } else {
            return exit(2, "", "sh: unsupported by the machine fake\n");
        };
        exit(i32::from(!ok), "", "")
    });
    let m = machine.clone();
    host.on(Match::program("test"), move |cmd, _| {
        exit(i32::from(!m.lock().unwrap().loaded.contains(&cmd.argv[2])), "", "")
    });
    let m = machine.clone();
    host.on(Match::program("modprobe"), move |cmd, _| {
        let evidence = if cmd.argv[1] == "br_netfilter" {
            "/proc/sys/net/bridge".to_string()
        } else {
            format!("/sys/module/{}", cmd.argv[1])
        };
        m.lock().unwrap().loaded.insert(evidence);
        exit(0, "", "")
    });
    let m = machine.clone();
    host.on(Match::program("sysctl"), move |cmd, _| {
        let (k, v) = cmd.argv[2].split_once('=').unwrap();
        m.lock().unwrap().sysctls.insert(k.into(), v.into());
        exit(0, &format!("{k} = {v}\n"), "")
    });
    let m = machine.clone();
    host.on(Match::program("swapoff"), move |_, _| {
        m.lock().unwrap().swap_on = false;
        exit(0, "", "")
    });
    let m = machine.clone();
    host.on(Match::program("systemctl"), move |cmd, _| {
        let mut m = m.lock().unwrap();
        let unit = cmd.argv.get(2).cloned().unwrap_or_default();
        match cmd.argv[1].as_str() {
            "daemon-reload" => {}
            "enable" => {
                m.units.entry(unit).or_insert(("inactive".into(), "disabled".into())).1 =
                    "enabled".into()
            }
            "start" | "restart" => {
                m.units.entry(unit).or_insert(("inactive".into(), "disabled".into())).0 =
                    "active".into()
            }
            other => return exit(1, "", &format!("unknown verb {other}\n")),
        }
        exit(0, "", "")
    });
    (host, machine)
}

struct Lab {
    cluster: Cluster,
    tree: RenderTree,
    connector: FakeConnector,
    hosts: BTreeMap<String, FakeHost>,
}

fn lab() -> Lab {
    let cluster = cluster();
    let tree = tree();
    let connector = FakeConnector::new();
    let mut hosts = BTreeMap::new();
    for h in &cluster.hosts {
        let (host, _) = machine_host(&h.name, plan::probe_request(&cluster, &tree, &h.name));
        hosts.insert(h.name.clone(), connector.add(host));
    }
    Lab { cluster, tree, connector, hosts }
}

fn targets(lab: &Lab) -> Vec<GatherTarget> {
    lab.cluster
        .hosts
        .iter()
        .map(|h| GatherTarget {
            target: SshTarget {
                host: h.name.clone(),
                address: h.address.to_string(),
                port: 22,
                user: "root".into(),
                identity_file: None,
                known_hosts_file: "/nonexistent".into(),
                host_key_policy: TransportPolicy::AcceptNew,
                bastion: None,
            },
            request: plan::probe_request(&lab.cluster, &lab.tree, &h.name),
        })
        .collect()
}

async fn plan_lab(lab: &Lab) -> (Plan, BTreeMap<String, Arc<dyn crate::transport::Transport>>) {
    let gathered = gather(Arc::new(lab.connector.clone()), targets(lab), 16).await;
    let selection = PhaseSelection::new(Some(Phase::Runtime), &[]);
    let artifacts = ArtifactInventory::new();
    let input = PlanInput {
        cluster: &lab.cluster,
        tree: &lab.tree,
        facts: &gathered.facts,
        artifacts: &artifacts,
        selection: &selection,
        observed: &Observed::default(),
        applied: None,
    };
    (plan::plan(&plan::Operation::Apply, input).unwrap(), gathered.transports)
}

pub(super) fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// `execute` with the default options, events collected and no audit log.
pub(super) async fn execute_plain(
    plan: &Plan,
    transports: &BTreeMap<String, Arc<dyn crate::transport::Transport>>,
) -> RunReport {
    execute(plan, transports, &ExecOptions::default(), &Collect::default(), &AuditLog::disabled())
        .await
}

#[test]
fn apply_then_replan_says_no_changes() {
    rt().block_on(async {
        let lab = lab();
        let (first, transports) = plan_lab(&lab).await;
        assert!(!first.has_no_steps());
        let events = Collect::default();
        let dir = tempfile::tempdir().unwrap();
        let audit = AuditLog::create(dir.path(), "run").unwrap();
        let report = execute(&first, &transports, &ExecOptions::default(), &events, &audit).await;
        assert!(report.succeeded(), "{}", report.render_text());
        assert!(report.changed > 0);
        let cp1 = &lab.hosts["cp1"];
        assert!(
            String::from_utf8_lossy(&cp1.file("/etc/hosts").unwrap().bytes)
                .contains("10.0.0.21\tw1\n")
        );
        assert_eq!(cp1.file("/etc/containerd/config.toml").unwrap().bytes, b"version = 3\n");
        assert!(
            cp1.commands()
                .iter()
                .any(|c| c[0] == "sh" && c[2].starts_with("systemctl restart containerd.service")),
            "containerd was restarted: {:?}",
            cp1.commands()
        );
        assert!(cp1.file("/etc/kubernetes/pki/ca.key").is_none(), "the pki phase was not selected");

        let (second, _) = plan_lab(&lab).await;
        assert!(second.is_converged(), "{}", plan::render_text(&second));
        assert!(plan::render_text(&second).ends_with("No changes.\n"));

        // The audit log has every remote command with its status, and no file contents.
        let log = std::fs::read_to_string(audit.path().unwrap()).unwrap();
        assert!(log.lines().count() >= report.changed);
        assert!(
            log.contains("\"target\":[\"swapoff\",\"-a\"]") && log.contains("\"exit_status\":0"),
            "{log}"
        );
        assert!(!log.contains("version = 3"));
        let finished =
            events.events().into_iter().filter(|e| matches!(e, Event::StepFinished { .. })).count();
        assert_eq!(finished, report.changed + report.unchanged);
    });
}

#[test]
fn a_failing_host_is_reported_in_full_others_complete_and_a_rerun_resumes() {
    rt().block_on(async {
        let lab = lab();
        lab.hosts["cp2"].fail(Match::program("sysctl"), Failure::exit(255, "sysctl: permission denied on key \"net.ipv4.ip_forward\""), Some(1));
        let (first, transports) = plan_lab(&lab).await;
        let report = execute_plain(&first, &transports).await;
        assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["cp2"]);
        let f = &report.failures[0];
        assert_eq!((f.host.as_str(), f.phase.as_str()), ("cp2", "os"));
        assert_eq!(f.step, "sysctl -w net.ipv4.ip_forward=1");
        assert_eq!(f.command, "sysctl -w net.ipv4.ip_forward=1");
        assert_eq!(f.exit_status, Some(255));
        assert!(f.stderr_tail.contains("permission denied"));
        assert!(f.remedy.contains("run `kubeforge apply` again"), "{}", f.remedy);
        let text = report.render_text();
        assert!(text.contains("host:    cp2\n  phase:   os\n  step:    sysctl -w net.ipv4.ip_forward=1\n  command: sysctl -w net.ipv4.ip_forward=1\n  exit:    255\n"), "{text}");
        // cp2 stopped: its runtime phase never ran; the others finished theirs.
        assert_eq!(lab.hosts["cp2"].file("/etc/containerd/config.toml").unwrap().bytes, b"version = 2\n");
        assert_eq!(lab.hosts["w1"].file("/etc/containerd/config.toml").unwrap().bytes, b"version = 3\n");

        // Re-running plans only what cp2 still lacks, and converges.
        let (resume, transports) = plan_lab(&lab).await;
        assert_eq!(resume.hosts_with_steps(), ["cp2"]);
        // Steps cp2 finished before failing (swap off, module loaded) are not planned again.
        let again: Vec<String> = resume.phases[1].hosts["cp2"].iter().map(|s| s.label()).collect();
        assert!(!again.contains(&"modprobe br_netfilter".to_string()), "{again:?}");
        let report = execute_plain(&resume, &transports).await;
        assert!(report.succeeded(), "{}", report.render_text());
        assert!(plan_lab(&lab).await.0.is_converged());
    });
}

#[test]
fn an_unreachable_host_is_named_while_the_others_proceed() {
    rt().block_on(async {
        let lab = lab();
        lab.connector.fail_connect("w1", ConnectFailure::Refused);
        let (plan, transports) = plan_lab(&lab).await;
        assert_eq!(plan.blocked.keys().collect::<Vec<_>>(), ["w1"]);
        assert!(
            plan::render_text(&plan)
                .contains("w1 [preflight/reachable]: no facts: w1: cannot connect to 10.0.0.21:22")
        );
        let report = execute_plain(&plan, &transports).await;
        assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["w1"]);
        assert!(lab.hosts["w1"].commands().is_empty());
        lab.connector.heal("w1");
        let (plan, _) = plan_lab(&lab).await;
        assert_eq!(plan.hosts_with_steps(), ["w1"], "cp1 and cp2 converged while w1 was away");
    });
}

#[test]
fn cancellation_stops_at_a_step_boundary_and_reports() {
    rt().block_on(async {
        let lab = lab();
        let (plan, transports) = plan_lab(&lab).await;
        let options = ExecOptions { concurrency: 1, ..ExecOptions::default() };
        let cancel = options.cancel.clone();
        // Cancel as soon as the first step has finished.
        struct CancelAfterFirst(tokio_util::sync::CancellationToken);
        impl EventSink for CancelAfterFirst {
            fn emit(&self, e: &Event) {
                if matches!(e, Event::StepFinished { .. }) {
                    self.0.cancel();
                }
            }
        }
        let report =
            execute(&plan, &transports, &options, &CancelAfterFirst(cancel), &AuditLog::disabled())
                .await;
        assert!(report.interrupted && !report.succeeded());
        assert_eq!(report.changed + report.unchanged, 1, "exactly one step ran");
        assert!(report.render_text().contains("Interrupted"));
    });
}

/// Three control planes each restart a serving component (cp2's fails), in a phase that goes
/// one host at a time when `rolling`; then a later phase touches every control plane.
fn restart_plan(rolling: bool) -> Plan {
    let step = |program: &str, host: &str| {
        vec![Step::Run(plan::Run {
            argv: vec![program.into(), host.into()],
            unless: None,
            why: "its manifest changed".into(),
        })]
    };
    let hosts =
        |program: &str| ["cp1", "cp2", "cp3"].map(|h| (h.to_string(), step(program, h))).into();
    Plan {
        cluster: "t".into(),
        operation: plan::Operation::Apply,
        phases: vec![
            plan::PhasePlan {
                phase: Phase::ControlPlane,
                hosts: hosts("restart-apiserver"),
                sequence: Vec::new(),
                batch: rolling.then_some(1),
            },
            plan::PhasePlan {
                phase: Phase::Addons,
                hosts: hosts("later-phase"),
                sequence: Vec::new(),
                batch: None,
            },
        ],
        blocked: BTreeMap::new(),
        departed: Vec::new(),
        deferred: Vec::new(),
    }
}

fn three_control_planes() -> ([FakeHost; 3], BTreeMap<String, Arc<dyn crate::transport::Transport>>)
{
    let hosts = ["cp1", "cp2", "cp3"].map(|h| {
        let host = FakeHost::new(h);
        host.on(Match::program("restart-apiserver"), |_, _| exit(0, "", ""));
        host.on(Match::program("later-phase"), |_, _| exit(0, "", ""));
        host
    });
    let transports = ["cp1", "cp2", "cp3"]
        .iter()
        .zip(&hosts)
        .map(|(n, h)| (n.to_string(), Arc::new(h.clone()) as Arc<dyn crate::transport::Transport>))
        .collect();
    (hosts, transports)
}

#[test]
fn a_rolling_phase_goes_host_by_host_and_stops_at_the_first_failure() {
    rt().block_on(async {
        for rolling in [true, false] {
            let (hosts, transports) = three_control_planes();
            hosts[1].fail(Match::program("restart-apiserver"), Failure::exit(1, "not ready"), None);
            let options = ExecOptions::default();
            let report = execute(
                &restart_plan(rolling),
                &transports,
                &options,
                &Collect::default(),
                &AuditLog::disabled(),
            )
            .await;
            assert_eq!(report.failed_hosts().into_iter().collect::<Vec<_>>(), ["cp2"]);
            let ran = |i: usize, program: &str| {
                hosts[i].commands().iter().any(|c| c.first().map(String::as_str) == Some(program))
            };
            assert!(ran(0, "restart-apiserver") && ran(1, "restart-apiserver"));
            // Rolling: cp3 keeps serving untouched after cp2 failed; otherwise all went at once.
            assert_eq!(ran(2, "restart-apiserver"), !rolling, "rolling = {rolling}");
            // A host the rolling phase did not reach gets nothing from later phases either,
            // and the report names it; a host that finished the phase goes on.
            assert!(ran(0, "later-phase"), "cp1 finished the phase, so later phases run on it");
            assert!(!ran(1, "later-phase"), "cp2 failed");
            assert_eq!(ran(2, "later-phase"), !rolling, "rolling = {rolling}");
            if rolling {
                assert_eq!(
                    report.not_reached,
                    BTreeMap::from([("cp3".to_string(), "control-plane".to_string())])
                );
                let text = report.render_text();
                assert!(text.contains("Left untouched after a failure"), "{text}");
                assert!(text.contains("cp3: from control-plane"), "{text}");
                assert!(!report.succeeded());
            } else {
                assert!(report.not_reached.is_empty());
            }
        }
    });
}

#[test]
fn ctrl_c_ends_a_gate_at_once_and_says_what_was_left_undone() {
    rt().block_on(async {
        let (hosts, transports) = three_control_planes();
        for host in &hosts {
            // The gate never passes: only cancellation can end it before its hour is up.
            host.on(Match::program("is-ready"), |_, _| exit(1, "", "not yet"));
        }
        let mut plan = restart_plan(false);
        for steps in plan.phases[0].hosts.values_mut() {
            steps.push(Step::Gate(plan::Gate {
                what: "the apiserver is ready".into(),
                argv: vec!["is-ready".into()],
                across: None,
                attempts: 720,
                interval_ms: 5_000,
            }));
        }
        let options = ExecOptions::default();
        let cancel = options.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            cancel.cancel();
        });
        let started = std::time::Instant::now();
        let report =
            execute(&plan, &transports, &options, &Collect::default(), &AuditLog::disabled()).await;
        assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
        assert!(report.interrupted && report.failures.is_empty());
        assert_eq!(report.not_started, ["addons"]);
        let text = report.render_text();
        assert!(text.contains("Run `kubeforge apply` again"), "{text}");
        assert!(text.contains("Left undone: the phases addons."), "{text}");
        assert!(hosts.iter().all(|h| h.commands().iter().all(|c| c[0] != "later-phase")));
    });
}
