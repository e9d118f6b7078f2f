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
//! active. Pure: decides from the tree and the host's facts; does no I/O.

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
