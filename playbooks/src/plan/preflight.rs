//! `preflight`: checks judged from facts before anything changes. Each failing check names the
//! host, what is wrong and what to do; a failing host is blocked while the others proceed.

use std::collections::BTreeMap;

use super::types::Problem;
use super::{Phase, PlanInput, runtime};
use crate::facts::HostFacts;
use crate::model::{Host, LoadBalancerMode};

/// Supported distributions: `ID` → accepted `VERSION_ID`s.
pub(crate) const SUPPORTED_OS: [(&str, &[&str]); 2] =
    [("debian", &["12", "13"]), ("ubuntu", &["22.04", "24.04"])];

/// Largest tolerated clock offset to the operator's machine (certificates and etcd leases
/// misbehave beyond this).
pub(crate) const MAX_CLOCK_OFFSET_MS: i64 = 2000;

/// kubeadm's minimums for a control plane.
const MIN_CONTROL_PLANE_CPUS: u32 = 2;
const MIN_CONTROL_PLANE_MEMORY_KIB: u64 = 1700 * 1024;

fn problem(check: &str, message: String, remedy: impl Into<String>) -> Problem {
    Problem { phase: Phase::Preflight, check: check.into(), message, remedy: remedy.into() }
}

/// Every failing check, per host.
pub(crate) fn check(
    input: PlanInput<'_>,
    reachable: &BTreeMap<&str, &HostFacts>,
) -> BTreeMap<String, Vec<Problem>> {
    let mut out: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    for (&name, &facts) in reachable {
        let Some(host) = input.cluster.host(name) else { continue };
        let problems = host_checks(input, host, facts);
        if !problems.is_empty() {
            out.insert(name.to_string(), problems);
        }
    }
    // Hostnames must be unique across the cluster: etcd member names and node names derive
    // from them on kubeadm-style systems, and duplicate names confuse every tool.
    let mut by_hostname: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (&name, facts) in reachable {
        by_hostname.entry(facts.hostname.as_str()).or_default().push(name);
    }
    for (hostname, hosts) in by_hostname.iter().filter(|(_, h)| h.len() > 1) {
        for &host in hosts {
            out.entry(host.to_string()).or_default().push(problem(
                "unique-hostname",
                format!("hostname `{hostname}` is shared by hosts {}", hosts.join(", ")),
                format!(
                    "give each machine its own hostname, e.g. `hostnamectl set-hostname {host}`"
                ),
            ));
        }
    }
    out
}

fn host_checks(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Problem> {
    let mut problems = Vec::new();
    let os = &facts.os;
    let supported = SUPPORTED_OS
        .iter()
        .any(|(id, versions)| *id == os.id && versions.contains(&os.version_id.as_str()));
    if !supported {
        problems.push(problem(
            "supported-os",
            format!(
                "`{}` (ID={} VERSION_ID={}) is not supported",
                os.pretty_name, os.id, os.version_id
            ),
            "use Debian 12 or 13, or Ubuntu 22.04 or 24.04",
        ));
    }
    if !matches!(facts.arch.as_str(), "x86_64" | "aarch64") {
        problems.push(problem(
            "architecture",
            format!("architecture `{}` is not supported", facts.arch),
            "use an x86_64 (amd64) or aarch64 (arm64) machine",
        ));
    }
    if !facts.swaps.is_empty() && !input.selection.contains(Phase::Os) {
        let areas: Vec<&str> = facts.swaps.iter().map(|s| s.filename.as_str()).collect();
        problems.push(problem(
            "swap",
            format!(
                "swap is on ({}) and the os phase, which turns it off, is not selected",
                areas.join(", ")
            ),
            "include the os phase, or run `swapoff -a` and remove swap from /etc/fstab",
        ));
    }
    if facts.clock_offset_ms.abs() > MAX_CLOCK_OFFSET_MS {
        problems.push(problem(
            "clock",
            format!(
                "clock is {} ms off the operator's (at most {MAX_CLOCK_OFFSET_MS} ms allowed)",
                facts.clock_offset_ms
            ),
            "synchronise clocks with NTP (`timedatectl set-ntp true`, or chrony/systemd-timesyncd)",
        ));
    }
    if host.is_control_plane() {
        if facts.cpus < MIN_CONTROL_PLANE_CPUS {
            problems.push(problem(
                "cpus",
                format!(
                    "{} CPU(s); a control plane needs at least {MIN_CONTROL_PLANE_CPUS}",
                    facts.cpus
                ),
                "give the machine more CPUs or move the control-plane role to a bigger one",
            ));
        }
        if facts.memory_kib < MIN_CONTROL_PLANE_MEMORY_KIB {
            problems.push(problem(
                "memory",
                format!(
                    "{} MiB of memory; a control plane needs at least 1700 MiB",
                    facts.memory_kib / 1024
                ),
                "give the machine more memory or move the control-plane role to a bigger one",
            ));
        }
    }
    for (port, what, owner) in ports_for(input, host) {
        let owner_active = facts.units.get(owner).is_some_and(|u| u.is_active());
        if facts.listening_ports.contains(&port) && !owner_active {
            problems.push(problem(
                "ports",
                format!("port {port} ({what}) is already in use, and not by {owner}"),
                format!("stop whatever listens on {port} (`ss -tlnp 'sport = :{port}'` names it)"),
            ));
        }
    }
    if input.selection.contains(Phase::Runtime) {
        for name in runtime::REQUIRED_BINARIES {
            let on_host = facts.binaries.get(name).is_some_and(|b| b.path.is_some());
            if !on_host && !input.artifacts.contains_key(name) {
                problems.push(problem(
                    "artifacts",
                    format!("`{name}` is neither installed on the host nor in the artifact source"),
                    format!(
                        "install it on the host (Debian/Ubuntu: `apt-get install {name}`) or add it to \
                         the artifact directory as {name}/<version>/{name} (artifacts.source: dir:<path>)"
                    ),
                ));
            }
        }
    }
    problems
}

/// The ports a host will need, what uses them, and the unit that owns them once kubeforge has
/// set the host up (a port held by its own owner is not a conflict: this is a re-run).
fn ports_for(input: PlanInput<'_>, host: &Host) -> Vec<(u16, &'static str, &'static str)> {
    let cluster = input.cluster;
    let mut ports = Vec::new();
    if host.is_control_plane() {
        ports.push((6443, "kube-apiserver", "kubelet.service"));
        ports.push((10257, "kube-controller-manager", "kubelet.service"));
        ports.push((10259, "kube-scheduler", "kubelet.service"));
    }
    if cluster.etcd_members().any(|m| m.name == host.name) {
        ports.push((2379, "etcd clients", "etcd.service"));
        ports.push((2380, "etcd peers", "etcd.service"));
    }
    if host.runs_kubelet() {
        ports.push((10250, "kubelet", "kubelet.service"));
    }
    let lb_port = cluster.control_plane_endpoint.as_ref().map(|e| e.port).filter(|p| *p != 6443);
    let runs_haproxy = match cluster.load_balancer.mode {
        LoadBalancerMode::KeepalivedHaproxy => host.is_control_plane(),
        LoadBalancerMode::NodeLocal => !host.is_control_plane() && host.runs_kubelet(),
        LoadBalancerMode::External | LoadBalancerMode::None => false,
    };
    if let (Some(port), true) = (lb_port, runs_haproxy) {
        ports.push((port, "haproxy (API load balancer)", "haproxy.service"));
    }
    ports
}
