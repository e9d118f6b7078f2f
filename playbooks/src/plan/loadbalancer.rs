//! `loadbalancer`: the API load balancer, from the render tree. In `keepalived-haproxy` mode every
//! control plane runs haproxy (bound to the VIP) and keepalived (which moves the VIP); in
//! `node-local` mode every other kubelet host runs haproxy on its loopback. Which host gets which
//! file, and every backend list, is the render tree's decision, so a change in the set of control
//! planes reaches every haproxy.cfg and keepalived.conf through it.
//!
//! haproxy and keepalived come from the distribution's packages (binaries and units). This phase
//! puts their configs, checks a new haproxy config with `haproxy -c` before it replaces the
//! running one, enables and starts both units, reloads haproxy on a config change (established
//! connections survive) and restarts keepalived when its files change (it does not re-read its
//! include on reload). Gates: haproxy active and listening on its bind address, keepalived
//! active. A changed mode retires the old one at the end of the run ([`retire`]): the new
//! path gated from every host, then kubeforge's haproxy/keepalived that the new mode no longer
//! has stopped, disabled and their files removed. Pure: decides from the tree, the host's facts
//! and the applied record; does no I/O.

use super::PlanInput;
use super::files::{Wanted, put_file};
use super::restart::Loads;
use std::collections::BTreeMap;

use super::types::{
    FileReason, Gate, GateAcross, PutFile, Run, SequencedStep, Step, UnitAction, UnitStep,
};
use crate::facts::{HostFacts, UnitState};
use crate::model::Host;
use crate::render::NodeFile;

pub(crate) const HAPROXY_UNIT: &str = crate::node::unit::HAPROXY;
pub(crate) const KEEPALIVED_UNIT: &str = crate::node::unit::KEEPALIVED;
pub(crate) const HAPROXY_CONFIG: &str = "/etc/haproxy/haproxy.cfg";
/// A new haproxy config is written here first and checked, so a config haproxy rejects never
/// replaces the one it runs (and a re-run plans the change again).
pub(crate) const HAPROXY_CHECK_COPY: &str = "/etc/haproxy/.haproxy.cfg.kubeforge-check";
const HAPROXY_DIR: &str = "/etc/haproxy/";
pub(crate) const KEEPALIVED_CONFIG: &str = "/etc/keepalived/keepalived.conf";
const KEEPALIVED_DIR: &str = "/etc/keepalived/";
const KEEPALIVED_DROP_IN_DIR: &str = "/etc/systemd/system/keepalived.service.d/";
use crate::node::APISERVER_PORT;
const INTERFACE_SCRIPT: &str = "/usr/local/lib/kubeforge/keepalived-interface";

/// Whether the loadbalancer phase owns a render-tree path.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with(HAPROXY_DIR)
        || path.starts_with(KEEPALIVED_DIR)
        || path.starts_with(KEEPALIVED_DROP_IN_DIR)
        || path == INTERFACE_SCRIPT
}

fn is_keepalived_file(path: &str) -> bool {
    owns(path) && !path.starts_with(HAPROXY_DIR)
}

/// A scratch copy (not a managed file, so never in the facts): always written, whatever a
/// leftover from an interrupted run holds.
pub(crate) fn scratch_file(path: &str, contents: &[u8], secret: bool) -> PutFile {
    PutFile {
        path: path.to_string(),
        contents: contents.to_vec(),
        sha256: super::files::sha256_hex(contents),
        size: contents.len(),
        mode: 0o600,
        owner: "root".into(),
        group: "root".into(),
        secret,
        reason: FileReason::Create,
    }
}

fn content_changed(put: &PutFile) -> bool {
    !matches!(put.reason, FileReason::Metadata { .. })
}

fn run(argv: &[&str], why: &str) -> Step {
    Step::Run(Run {
        argv: argv.iter().map(|a| a.to_string()).collect(),
        unless: None,
        why: why.into(),
    })
}

/// `systemctl reset-failed` for a unit that failed: after repeated failures systemd refuses
/// to start it again for a while ("start request repeated too quickly").
fn reset_failed(unit: &str, state: Option<&UnitState>) -> Option<Step> {
    state.filter(|u| u.active == "failed").map(|_| {
        run(&["systemctl", "reset-failed", unit], "the unit failed before; clear its start limit")
    })
}

fn unit(unit: &str, action: UnitAction, why: &str) -> Step {
    Step::Unit(UnitStep { unit: unit.into(), action, why: why.into() })
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let Some(files) = input.tree.hosts.get(&host.name) else { return Vec::new() };
    let mut steps = Vec::new();
    if let Some(config) = files.get(HAPROXY_CONFIG) {
        let loads = Loads::new(HAPROXY_UNIT).file(input, &host.name, facts, HAPROXY_CONFIG);
        steps.extend(haproxy(&host.name, facts, config, &loads));
    }
    if files.contains_key(KEEPALIVED_CONFIG) {
        let keepalived_files: Vec<_> =
            files.iter().filter(|(p, _)| is_keepalived_file(p)).collect();
        let loads = keepalived_files
            .iter()
            .fold(Loads::new(KEEPALIVED_UNIT), |l, (p, _)| l.file(input, &host.name, facts, p));
        steps.extend(keepalived(&host.name, facts, keepalived_files.into_iter(), &loads));
    }
    steps
}

fn haproxy(host: &str, facts: &HostFacts, config: &NodeFile, loads: &Loads) -> Vec<Step> {
    let mut steps = Vec::new();
    let wanted = |path| Wanted { path, contents: &config.contents, mode: 0o644, secret: false };
    let wanted_config =
        Wanted { mode: config.mode, secret: config.secret, ..wanted(HAPROXY_CONFIG) };
    // A config put now, or one an interrupted run put after haproxy last loaded its config.
    let reload = loads.stale(facts);
    if let Some(put) = put_file(host, facts, wanted_config) {
        if content_changed(&put) {
            let check_copy = scratch_file(HAPROXY_CHECK_COPY, &config.contents, config.secret);
            steps.push(Step::PutFile(check_copy));
            steps.push(run(
                &["haproxy", "-c", "-q", "-f", HAPROXY_CHECK_COPY],
                "haproxy must accept the new config before it replaces the running one",
            ));
            steps.push(Step::PutFile(put));
            steps.push(run(
                &["rm", "-f", "--", HAPROXY_CHECK_COPY],
                "the checked copy is no longer needed",
            ));
        } else {
            steps.push(Step::PutFile(put));
        }
    }
    let state = facts.units.get(HAPROXY_UNIT);
    if !state.is_some_and(|u| u.is_enabled()) {
        steps.push(unit(HAPROXY_UNIT, UnitAction::Enable, "haproxy must start at boot"));
    }
    if !state.is_some_and(|u| u.is_active()) {
        steps.extend(reset_failed(HAPROXY_UNIT, state));
        steps.push(unit(HAPROXY_UNIT, UnitAction::Start, "haproxy is not running"));
    } else if let Some(why) = reload {
        steps.push(unit(
            HAPROXY_UNIT,
            UnitAction::Reload,
            &format!("{why}; a reload keeps established connections"),
        ));
    }
    if !steps.is_empty() {
        steps.push(Step::Gate(haproxy_gate(&config.contents)));
        steps.extend(loads.record_step(host, facts));
    }
    steps
}

/// haproxy's listening address: the first `bind` line of its config (`10.0.0.100:6443`,
/// `127.0.0.1:6443`, `[::1]:6443`), written the way `ss` prints local addresses.
pub(crate) fn bind_address(config: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(config).ok()?;
    text.lines()
        .map(str::trim)
        .find_map(|line| line.strip_prefix("bind "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(str::to_string)
}

fn haproxy_gate(config: &[u8]) -> Gate {
    let active = format!("systemctl is-active --quiet {HAPROXY_UNIT}");
    let (what, script) = match bind_address(config) {
        // The address comes from our own config; it holds no quote (checked) and is matched as
        // a fixed string against the local-address column of `ss`.
        Some(bind) if !bind.contains('\'') => (
            format!("haproxy is active and listening on {bind}"),
            format!("{active} && ss -Hltn | awk '{{print $4}}' | grep -qxF '{bind}'"),
        ),
        _ => ("haproxy is active".to_string(), active),
    };
    Gate {
        what,
        argv: vec!["sh".into(), "-c".into(), script],
        across: None,
        attempts: 30,
        interval_ms: 1000,
    }
}

fn keepalived<'a>(
    host: &str,
    facts: &HostFacts,
    files: impl Iterator<Item = (&'a String, &'a NodeFile)>,
    loads: &Loads,
) -> Vec<Step> {
    let mut steps = Vec::new();
    let restart = loads.stale(facts);
    let mut unit_files_changed = false;
    for (path, file) in files {
        let wanted =
            Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
        if let Some(put) = put_file(host, facts, wanted) {
            unit_files_changed |= path.starts_with(KEEPALIVED_DROP_IN_DIR);
            steps.push(Step::PutFile(put));
        }
    }
    if unit_files_changed {
        steps.push(unit("", UnitAction::DaemonReload, "keepalived's unit drop-in changed"));
    }
    let state = facts.units.get(KEEPALIVED_UNIT);
    if !state.is_some_and(|u| u.is_enabled()) {
        steps.push(unit(KEEPALIVED_UNIT, UnitAction::Enable, "keepalived must start at boot"));
    }
    if !state.is_some_and(|u| u.is_active()) {
        steps.extend(reset_failed(KEEPALIVED_UNIT, state));
        steps.push(unit(KEEPALIVED_UNIT, UnitAction::Start, "keepalived is not running"));
    } else if let Some(why) = restart {
        steps.push(unit(
            KEEPALIVED_UNIT,
            UnitAction::Restart,
            &format!("{why} (a restart re-reads its interface and peers)"),
        ));
    }
    if !steps.is_empty() {
        steps.push(Step::Gate(Gate {
            what: "keepalived is active".into(),
            argv: vec![
                "systemctl".into(),
                "is-active".into(),
                "--quiet".into(),
                KEEPALIVED_UNIT.into(),
            ],
            across: None,
            attempts: 30,
            interval_ms: 1000,
        }));
        steps.extend(loads.record_step(host, facts));
    }
    steps
}

/// The phase's cluster-level gates, after every host's steps, when anything changed in
/// keepalived-haproxy mode: exactly one control plane holds the VIP (keepalived enters MASTER
/// seconds after it starts, and haproxy binds the VIP non-locally, so haproxy's own gate passes
/// before any host has it), then the endpoint accepts connections through the VIP.
pub(crate) fn sequence(
    input: PlanInput<'_>,
    hosts: &BTreeMap<String, Vec<Step>>,
    ready: &BTreeMap<&str, &HostFacts>,
) -> Vec<SequencedStep> {
    let cluster = input.cluster;
    let Some(vip) = cluster.load_balancer.vip else { return Vec::new() };
    if cluster.load_balancer.mode != crate::model::LoadBalancerMode::KeepalivedHaproxy
        || hosts.is_empty()
    {
        return Vec::new();
    }
    let holders: Vec<String> = cluster
        .control_planes()
        .map(|h| h.name.clone())
        .filter(|h| ready.contains_key(h.as_str()))
        .collect();
    let Some(first) = holders.first().cloned() else { return Vec::new() };
    let endpoint = crate::model::Endpoint::ip(vip, APISERVER_PORT).to_string();
    let (host, port) = endpoint.rsplit_once(':').unwrap_or((&endpoint, "6443"));
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let holds_vip = format!("test -n \"$(ip -o addr show to {vip})\"");
    let connects = format!("exec 3<>/dev/tcp/{host}/{port}");
    vec![
        SequencedStep {
            host: first.clone(),
            step: Step::Gate(Gate {
                what: format!("exactly one control plane holds the VIP {vip}"),
                argv: vec!["sh".into(), "-c".into(), holds_vip],
                across: Some(GateAcross { hosts: holders, exactly: 1 }),
                attempts: 30,
                interval_ms: 1000,
            }),
        },
        SequencedStep {
            host: first,
            step: Step::Gate(Gate {
                what: format!("the endpoint {endpoint} accepts connections through the VIP"),
                argv: vec!["timeout".into(), "3".into(), "bash".into(), "-c".into(), connects],
                across: None,
                attempts: 30,
                interval_ms: 1000,
            }),
        },
    ]
}

// ---------------------------------------------------------------------------------------------
// Changing modes: retiring what the old mode left.
//
// A host whose render tree no longer has haproxy's (or keepalived's) config, but where kubeforge
// ran it (the applied record lists the config for the host, or the host holds kubeforge's
// restart record of the unit), is left with a service of the old mode. It is retired at the
// end of the run, after the new path is up and gated from every host (the phase's own gates
// first, then one gate per host in the run's last sequence), and only when nothing still uses
// the old path: every spec host finished this run (a blocked or unreachable one still uses
// the old path) and no host keeps a kubeconfig or manifest that still names the old path
// after this run (a file under /etc/kubernetes/ that differs from the tree while its phase is
// not selected, e.g. `apply --until loadbalancer` on a cluster whose kubeconfigs name the
// VIP). Otherwise the old mode keeps running until a run that can retire it.

/// The render-tree files of haproxy anywhere, plus what kubeforge writes beside them.
fn haproxy_files() -> Vec<String> {
    vec![
        HAPROXY_CONFIG.to_string(),
        HAPROXY_CHECK_COPY.to_string(),
        super::restart::record_path(HAPROXY_UNIT),
    ]
}

/// keepalived's files anywhere: its config, unit drop-in, the interface script and the
/// include it writes at start, the non-local bind sysctl that lets haproxy bind the VIP, and
/// the restart record.
fn keepalived_files() -> Vec<String> {
    use crate::render::configs::loadbalancer as lb;
    vec![
        KEEPALIVED_CONFIG.to_string(),
        lb::KEEPALIVED_DROP_IN.to_string(),
        lb::INTERFACE_SCRIPT.to_string(),
        lb::INTERFACE_INCLUDE.to_string(),
        lb::NONLOCAL_BIND_SYSCTL.to_string(),
        super::restart::record_path(KEEPALIVED_UNIT),
    ]
}

/// Facts a mode change needs beyond the tree's files: every file either mode may have left.
pub(crate) fn extend_request(request: &mut crate::facts::ProbeRequest) {
    for path in haproxy_files().into_iter().chain(keepalived_files()) {
        request.hash_files.insert(path);
    }
}

/// One service of an old mode that a host still has.
struct Leftover {
    unit: &'static str,
    files: Vec<String>,
}

fn on_host(facts: &HostFacts, path: &str) -> bool {
    facts.files.get(path).and_then(|f| f.sha256()).is_some()
}

/// What of the old mode `host` still has: haproxy and keepalived when kubeforge ran them there
/// (applied record or restart record) and the tree no longer has their config.
fn leftovers(input: PlanInput<'_>, host: &str, facts: &HostFacts) -> Vec<Leftover> {
    let tree = input.tree.hosts.get(host);
    let applied = input.applied.and_then(|a| a.hosts.get(host));
    let mut out = Vec::new();
    for (unit, config, files) in [
        (KEEPALIVED_UNIT, KEEPALIVED_CONFIG, keepalived_files()),
        (HAPROXY_UNIT, HAPROXY_CONFIG, haproxy_files()),
    ] {
        if tree.is_some_and(|t| t.contains_key(config)) {
            continue;
        }
        let applied_here = applied.is_some_and(|a| a.files.contains_key(config));
        let recorded = on_host(facts, &super::restart::record_path(unit));
        if !applied_here && !recorded {
            // Not kubeforge's: an operator's own haproxy or keepalived is left alone.
            continue;
        }
        let files: Vec<String> = files
            .into_iter()
            .filter(|p| on_host(facts, p) && !tree.is_some_and(|t| t.contains_key(p)))
            .collect();
        let state = facts.units.get(unit);
        let running = state.is_some_and(|u| {
            matches!(u.active.as_str(), "active" | "activating" | "reloading" | "deactivating")
        });
        let enabled =
            state.is_some_and(|u| matches!(u.enabled.as_str(), "enabled" | "enabled-runtime"));
        if running || enabled || !files.is_empty() {
            out.push(Leftover { unit, files });
        }
    }
    out
}

/// The steps that retire a host's leftovers: units stopped (keepalived first, so the VIP is
/// released before haproxy goes), disabled, their files removed, systemd reloaded when a unit
/// drop-in went.
fn retire_host(facts: &HostFacts, leftovers: &[Leftover]) -> Vec<Step> {
    let mut steps = Vec::new();
    for l in leftovers {
        if facts.units.get(l.unit).is_some_and(|u| {
            matches!(u.active.as_str(), "active" | "activating" | "reloading" | "deactivating")
        }) {
            steps.push(unit(
                l.unit,
                UnitAction::Stop,
                "the load-balancer mode changed: the old mode's service goes",
            ));
        }
    }
    for l in leftovers {
        if facts
            .units
            .get(l.unit)
            .is_some_and(|u| matches!(u.enabled.as_str(), "enabled" | "enabled-runtime"))
        {
            steps.push(unit(
                l.unit,
                UnitAction::Disable,
                "the old mode's service must not start at boot",
            ));
        }
    }
    let files: Vec<String> = leftovers.iter().flat_map(|l| l.files.iter().cloned()).collect();
    if !files.is_empty() {
        let mut argv = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
        argv.extend(files.iter().cloned());
        steps.push(Step::Run(Run {
            argv,
            unless: None,
            why: format!("the old mode's {} file(s), restart records included", files.len()),
        }));
        if files.iter().any(|p| p.starts_with(KEEPALIVED_DROP_IN_DIR)) {
            steps.push(unit("", UnitAction::DaemonReload, "keepalived's unit drop-in went"));
        }
    }
    steps
}

/// Whether Kubernetes runs on any host of the run (a kubelet is active): then running
/// components loaded the old path and keep using it until they restart.
fn kubernetes_runs(ready: &BTreeMap<&str, &HostFacts>) -> bool {
    ready.values().any(|f| f.units.get(crate::node::unit::KUBELET).is_some_and(|u| u.is_active()))
}

/// The phase that rewrites a file under /etc/kubernetes/ (kubeconfigs embed keys: pki).
fn kube_file_phase(path: &str) -> super::Phase {
    if super::pki::owns(path) {
        super::Phase::Pki
    } else if super::addons::owns(path) {
        super::Phase::Addons
    } else {
        super::Phase::ControlPlane
    }
}

/// Why the old mode cannot be retired in this run, or `None`.
pub(crate) fn still_in_use(
    input: PlanInput<'_>,
    ready: &BTreeMap<&str, &HostFacts>,
) -> Option<String> {
    use super::Phase;
    if !input.selection.contains(Phase::LoadBalancer) {
        return Some("the loadbalancer phase is not selected".into());
    }
    if let Some(h) = input.cluster.hosts.iter().find(|h| !ready.contains_key(h.name.as_str())) {
        return Some(format!("{} does not take part in this run", h.name));
    }
    // Running kubelets, static pods and kube-proxy loaded the old path: only a run that
    // restarts them onto the new one (control-plane, workers, addons) may retire it.
    let restarts = [Phase::ControlPlane, Phase::Workers, Phase::Addons]
        .iter()
        .all(|p| input.selection.contains(*p));
    if kubernetes_runs(ready) && !restarts {
        return Some("Kubernetes runs and this run does not restart it onto the new path".into());
    }
    for (&host, &facts) in ready {
        for (path, file) in input.tree.hosts.get(host).into_iter().flatten() {
            let names_endpoint =
                path.starts_with("/etc/kubernetes/") && !path.starts_with("/etc/kubernetes/pki/");
            if !names_endpoint || input.selection.contains(kube_file_phase(path)) {
                continue;
            }
            let stale = facts
                .files
                .get(path)
                .and_then(|f| f.sha256())
                .is_some_and(|sha| sha != super::files::sha256_hex(&file.contents));
            if stale {
                return Some(format!(
                    "{host}'s {path} still names the old path (its phase is not selected)"
                ));
            }
        }
    }
    None
}

/// With Kubernetes running: kube-proxy reads its API server from a ConfigMap at start only,
/// so its DaemonSets are restarted (and awaited) through the first control plane before the
/// old path goes.
fn restart_kube_proxy(input: PlanInput<'_>) -> Vec<SequencedStep> {
    use super::control_plane::{ADMIN_CONF, KUBECTL};
    let Some(applier) = super::addons::applier(input) else { return Vec::new() };
    let Ok(servers) = crate::render::configs::addons::kube_proxy_servers(input.cluster) else {
        return Vec::new();
    };
    let kubectl = |args: &[&str]| -> Vec<String> {
        [KUBECTL, "--kubeconfig", ADMIN_CONF, "-n", "kube-system"]
            .iter()
            .chain(args)
            .map(|a| a.to_string())
            .collect()
    };
    let mut out = Vec::new();
    for s in servers {
        let ds = format!("daemonset/{}", s.name);
        out.push(SequencedStep {
            host: applier.name.clone(),
            step: Step::Run(Run {
                argv: kubectl(&["rollout", "restart", &ds]),
                unless: None,
                why: "kube-proxy reads its API server at start: onto the new path".into(),
            }),
        });
        out.push(SequencedStep {
            host: applier.name.clone(),
            step: Step::Gate(Gate {
                what: format!("{} restarted on every node", s.name),
                argv: kubectl(&["rollout", "status", &ds, "--timeout=60s"]),
                across: None,
                attempts: 5,
                interval_ms: 1000,
            }),
        });
    }
    out
}

/// Gate that `host` reaches the API through the new path: its local haproxy (node-local),
/// the endpoint (keepalived-haproxy's VIP, an external balancer), or, where the host uses no
/// balancer, that it finished the run (the sequence stops at a host that failed earlier).
fn new_path_gate(input: PlanInput<'_>, host: &Host) -> Gate {
    use crate::model::LoadBalancerMode;
    let cluster = input.cluster;
    let tree = input.tree.hosts.get(&host.name);
    let local = tree.and_then(|t| t.get(HAPROXY_CONFIG)).and_then(|c| bind_address(&c.contents));
    let target = match cluster.load_balancer.mode {
        LoadBalancerMode::NodeLocal => local,
        _ if host.runs_kubelet() => cluster.control_plane_endpoint.as_ref().map(|e| e.to_string()),
        _ => None,
    };
    let (what, argv) = match target.as_ref().and_then(|t| t.rsplit_once(':')) {
        Some((addr, port)) if !addr.contains('\'') => {
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            (
                format!("{} reaches the API through the new path ({addr}:{port})", host.name),
                vec![
                    "timeout".into(),
                    "3".into(),
                    "bash".into(),
                    "-c".into(),
                    format!("exec 3<>/dev/tcp/{addr}/{port}"),
                ],
            )
        }
        _ => (
            format!(
                "{} came through this run (the old path goes only when every host did)",
                host.name
            ),
            vec!["true".into()],
        ),
    };
    Gate { what, argv, across: None, attempts: 30, interval_ms: 1000 }
}

/// What the end of the run does about an old load-balancer mode.
#[derive(Debug, Default)]
pub(crate) struct Retirement {
    /// The new path gated from every host, then each host's leftovers retired.
    pub steps: Vec<SequencedStep>,
    /// Why leftovers stay for a later run, naming them; `None` when nothing is left over or
    /// they go in this run.
    pub deferred: Option<String>,
}

/// The end of the run when the load-balancer mode changed: the new path gated from every host,
/// then each host's leftovers of the old mode retired (see above). Nothing when nothing is left
/// over; a deferral naming the leftovers when the old path is still in use, so the plan says so
/// and is not "No changes." while the old mode runs.
pub(crate) fn retire(input: PlanInput<'_>, ready: &BTreeMap<&str, &HostFacts>) -> Retirement {
    let mut teardown = Vec::new();
    // Hosts by what the old mode left on them ("keepalived and haproxy" → cp1, cp2).
    let mut left_over: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (&name, &facts) in ready {
        let left = leftovers(input, name, facts);
        if !left.is_empty() {
            let units: Vec<&str> =
                left.iter().map(|l| l.unit.trim_end_matches(".service")).collect();
            left_over.entry(units.join(" and ")).or_default().push(name);
        }
        let steps = retire_host(facts, &left);
        teardown
            .extend(steps.into_iter().map(|step| SequencedStep { host: name.to_string(), step }));
    }
    if teardown.is_empty() {
        return Retirement::default();
    }
    if let Some(why) = still_in_use(input, ready) {
        let deferred = format!(
            "the old load-balancer mode stays ({}): {why}. An apply of every phase that reaches \
             every host retires it",
            left_over
                .iter()
                .map(|(units, hosts)| format!("{units} on {}", hosts.join(", ")))
                .collect::<Vec<_>>()
                .join("; ")
        );
        return Retirement { steps: Vec::new(), deferred: Some(deferred) };
    }
    let mut out: Vec<SequencedStep> = input
        .cluster
        .hosts
        .iter()
        .map(|h| SequencedStep { host: h.name.clone(), step: Step::Gate(new_path_gate(input, h)) })
        .collect();
    if kubernetes_runs(ready) {
        out.extend(restart_kube_proxy(input));
    }
    out.extend(teardown);
    Retirement { steps: out, deferred: None }
}
