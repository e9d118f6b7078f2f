//! `preflight`: checks judged from facts before anything changes. Each failing check names the
//! host, what is wrong and what to do; a failing host is blocked while the others proceed.
//! The `artifacts` check names every file a selected phase needs on the host that the artifact
//! source lacks (component, version, the path or URL looked at, and how to provide it); the
//! runtime's binaries may instead be installed on the host from its packages.

use std::collections::BTreeMap;

use super::types::Problem;
use super::{Phase, PlanInput};
use crate::artifacts::needs::{self, Need};
use crate::artifacts::{Arch, Component};
use crate::facts::HostFacts;
use crate::model::{ArtifactSource, Host, LoadBalancerMode};
use crate::node::{
    APISERVER_PORT, CONTROLLER_MANAGER_PORT, ETCD_CLIENT_PORT, ETCD_PEER_PORT, KUBELET_PORT,
    SCHEDULER_PORT, unit,
};

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
    // Hostnames must be unique across the cluster. kubeforge names nodes and etcd members after
    // the spec, not the hostname, but machines that share a hostname are usually clones (same
    // machine-id, same SSH host keys) and confuse every tool that does go by hostname.
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

/// A kubelet runs on the machine under its hostname, which is not the spec's name: its unit is
/// active and the drop-in it was started from (on the host now) lacks `--hostname-override`.
fn registered_under_hostname(host: &Host, facts: &HostFacts) -> bool {
    let running = facts.units.get(unit::KUBELET).is_some_and(|u| u.is_active());
    let drop_in =
        facts.files.get(crate::render::configs::kubelet::DROP_IN).and_then(|f| f.contents());
    let overridden = drop_in.is_some_and(|d| {
        String::from_utf8_lossy(d).split_whitespace().any(|w| w.starts_with("--hostname-override="))
    });
    running && !overridden && facts.hostname.to_lowercase() != host.name
}

/// A change of the etcd topology (stacked ↔ external) that `apply` refuses: `(from, to, how it
/// is known)`. Moving etcd between the control planes and dedicated hosts changes every member,
/// every apiserver's `--etcd-servers` and the etcd client certificates at once; kubeforge has
/// no safe sequence for it (quorum, a writer's data and the apiservers' connection would all
/// be at stake), so nothing is planned. Known from the applied record's topology, or, without
/// one, from a control plane that runs etcd while the spec says `external`.
pub(crate) fn etcd_topology_change(
    input: PlanInput<'_>,
    reachable: &BTreeMap<&str, &HostFacts>,
) -> Option<(String, String, String)> {
    use crate::model::EtcdTopology;
    let name = |t: EtcdTopology| match t {
        EtcdTopology::Stacked => "stacked",
        EtcdTopology::External => "external",
    };
    let wanted = name(input.cluster.etcd.topology);
    if let Some(applied) = input.applied
        && applied.etcd_topology != wanted
    {
        let why = format!(
            "the last apply (generation {}) put etcd {}",
            applied.generation, applied.etcd_topology
        );
        return Some((applied.etcd_topology.clone(), wanted.to_string(), why));
    }
    if input.cluster.etcd.topology == EtcdTopology::External {
        let stacked = input.cluster.control_planes().find(|h| {
            !h.roles.contains(&crate::model::Role::Etcd)
                && reachable
                    .get(h.name.as_str())
                    .and_then(|f| f.units.get(unit::ETCD))
                    .is_some_and(|u| u.is_active())
        });
        if let Some(h) = stacked {
            let why = format!("control plane {} runs etcd", h.name);
            return Some(("stacked".into(), wanted.to_string(), why));
        }
    }
    None
}

fn host_checks(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Problem> {
    let mut problems = Vec::new();
    // The kubelet registers its node under the spec's name (`--hostname-override`), whatever
    // the machine's hostname, so a different hostname is fine. What is not: a kubelet running
    // now without that flag on a machine whose hostname differs. It registered a Node under
    // the hostname; switching it to the spec's name would leave that Node (and its pods) behind
    // while a second one appears, so it is refused until the old Node is gone.
    let kubelet_phases =
        input.selection.contains(Phase::ControlPlane) || input.selection.contains(Phase::Workers);
    if kubelet_phases && host.runs_kubelet() && registered_under_hostname(host, facts) {
        problems.push(problem(
            "node-name",
            format!(
                "the kubelet runs without --hostname-override, so it may have registered this \
                 machine as node `{hostname}`, while kubeforge names the node `{name}` (its \
                 certificate is for system:node:{name}); switching a running kubelet would \
                 leave node `{hostname}` and its pods behind",
                hostname = facts.hostname.to_lowercase(),
                name = host.name,
            ),
            format!(
                "if `kubectl get node {hostname}` finds it, drain and delete it (`kubectl drain \
                 {hostname} --ignore-daemonsets --delete-emptydir-data`, `kubectl delete node \
                 {hostname}`); stop the kubelet on the machine (`systemctl stop kubelet`), then \
                 apply again: the kubelet starts as node `{name}`",
                hostname = facts.hostname.to_lowercase(),
                name = host.name,
            ),
        ));
    }
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
                "clock is at least {} ms off the operator's (at most {MAX_CLOCK_OFFSET_MS} ms allowed)",
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
    let ports = ports_for(input, host);
    // A port can have two owners: with the endpoint on 6443, haproxy binds the VIP's 6443 and
    // the kube-apiserver the host address's 6443.
    let held_by_owner = |port: u16| {
        ports
            .iter()
            .filter(|(p, _, _, _)| *p == port)
            .any(|(_, _, owner, _)| facts.units.get(*owner).is_some_and(|u| u.is_active()))
    };
    let mut reported = std::collections::BTreeSet::new();
    for &(port, what, owner, phases) in &ports {
        let needed = phases.iter().any(|p| input.selection.contains(*p));
        if needed
            && facts.listening_ports.contains(&port)
            && !held_by_owner(port)
            && reported.insert(port)
        {
            problems.push(problem(
                "ports",
                format!("port {port} ({what}) is already in use, and not by {owner}"),
                format!("stop whatever listens on {port} (`ss -tlnp 'sport = :{port}'` names it)"),
            ));
        }
    }
    problems.extend(artifact_problems(input, host, facts));
    problems
}

/// The ports a host will need, what uses them, the unit that owns them once kubeforge has
/// set the host up (a port held by its own owner is not a conflict: this is a re-run), and the
/// phases that start what listens there. Kubernetes' own ports are checked only when a kubelet
/// phase is selected, like the node name: `apply --until loadbalancer` starts no apiserver, so
/// a process on 6443 (a stand-in behind haproxy) is no conflict for it, and the first run that
/// starts Kubernetes checks them. etcd's and haproxy's ports are checked in every run.
fn ports_for(
    input: PlanInput<'_>,
    host: &Host,
) -> Vec<(u16, &'static str, &'static str, &'static [Phase])> {
    const KUBELET: &[Phase] = &[Phase::ControlPlane, Phase::Workers];
    let cluster = input.cluster;
    let mut ports = Vec::new();
    if host.is_control_plane() {
        ports.push((APISERVER_PORT, "kube-apiserver", unit::KUBELET, KUBELET));
        ports.push((CONTROLLER_MANAGER_PORT, "kube-controller-manager", unit::KUBELET, KUBELET));
        ports.push((SCHEDULER_PORT, "kube-scheduler", unit::KUBELET, KUBELET));
    }
    if cluster.etcd_members().any(|m| m.name == host.name) {
        ports.push((ETCD_CLIENT_PORT, "etcd clients", unit::ETCD, &Phase::ALL));
        ports.push((ETCD_PEER_PORT, "etcd peers", unit::ETCD, &Phase::ALL));
    }
    if host.runs_kubelet() {
        ports.push((KUBELET_PORT, "kubelet", unit::KUBELET, KUBELET));
    }
    let lb_port = cluster.control_plane_endpoint.as_ref().map(|e| e.port);
    let runs_haproxy = match cluster.load_balancer.mode {
        LoadBalancerMode::KeepalivedHaproxy => host.is_control_plane(),
        LoadBalancerMode::NodeLocal => !host.is_control_plane() && host.runs_kubelet(),
        LoadBalancerMode::External | LoadBalancerMode::None => false,
    };
    if let (Some(port), true) = (lb_port, runs_haproxy) {
        ports.push((port, "haproxy (API load balancer)", unit::HAPROXY, &Phase::ALL));
    }
    ports
}

/// One problem per component version a selected phase needs on this host and the artifact
/// source lacks, in phase and install order.
fn artifact_problems(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Problem> {
    let installed = |name: &str| facts.binaries.get(name).is_some_and(|b| b.path.is_some());
    let mut missing: Vec<(&Need, Vec<&'static str>)> = Vec::new();
    let wanted = needs::selected(input.cluster, input.selection);
    for need in &wanted {
        if !needs::in_scope(input.cluster, host, need.hosts)
            || input.artifacts.contains_key(&need.key)
            || (need.host_may_provide && installed(need.component.name()))
        {
            continue;
        }
        let same = |(n, _): &&mut (&Need, Vec<&'static str>)| {
            n.phase == need.phase && n.component == need.component && n.version == need.version
        };
        match missing.iter_mut().find(same) {
            Some((_, files)) => files.push(need.file),
            None => missing.push((need, vec![need.file])),
        }
    }
    let arch = Arch::from_uname(&facts.arch);
    let mut problems: Vec<Problem> = wrong_arch(input, host, arch, &wanted).into_iter().collect();
    let named = missing.into_iter().map(|(need, files)| {
        let (what, remedy) =
            needs::describe_missing(input.cluster, need.component, &need.version, &files, arch);
        let message = if need.host_may_provide {
            format!(
                "{} phase: `{}` is not installed on the host, and {what}",
                need.phase,
                need.component.name()
            )
        } else {
            format!("{} phase: {what}", need.phase)
        };
        let remedy = match need.component {
            Component::Containerd | Component::Runc => format!(
                "install it on the host (Debian/Ubuntu: `apt-get install {}`), or {remedy}",
                need.component.name()
            ),
            _ => remedy,
        };
        problem("artifacts", message, remedy)
    });
    problems.extend(named);
    problems
}

/// `upstream` downloads are for one architecture per run (the cli's `KUBEFORGE_ARTIFACT_ARCH`,
/// amd64 by default, chosen before any host is probed): a host of another architecture must
/// not get them.
fn wrong_arch(
    input: PlanInput<'_>,
    host: &Host,
    arch: Option<Arch>,
    wanted: &[Need],
) -> Option<Problem> {
    let (ArtifactSource::Upstream, Some(arch)) = (&input.cluster.artifacts, arch) else {
        return None;
    };
    let mut other: Vec<&str> = wanted
        .iter()
        .filter(|n| needs::in_scope(input.cluster, host, n.hosts))
        .filter_map(|n| needs::cached_arch(&input.artifacts.get(&n.key)?.path))
        .filter(|a| *a != arch)
        .map(Arch::as_str)
        .collect();
    other.sort_unstable();
    other.dedup();
    (!other.is_empty()).then(|| {
        problem(
            "artifacts",
            format!(
                "the host is linux/{arch}, but the artifacts were downloaded for linux/{}",
                other.join(", linux/")
            ),
            format!(
                "run kubeforge with KUBEFORGE_ARTIFACT_ARCH={arch} for these hosts (one \
                 architecture per run; use --skip-phases or a spec per architecture for mixed \
                 clusters)"
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use super::super::tests::{cluster, fresh_facts, tree};
    use super::super::{
        ArtifactInventory, HostProbe, LocalArtifact, Observed, Phase, PhaseSelection, PlanInput,
        Problem,
    };
    use crate::facts::HostFacts;
    use crate::model::{ArtifactSource, Cluster, Role};
    use crate::node::{APISERVER_PORT, ETCD_PEER_PORT, unit};

    const CP: &[Role] = &[Role::ControlPlane];
    const WORKER: &[Role] = &[Role::Worker];

    /// The lab's situation: a directory with etcd v3.5.1 only, containerd and runc installed.
    fn lab() -> (Cluster, BTreeMap<String, HostProbe>, ArtifactInventory) {
        let mut c = cluster(&[("cp1", "10.0.0.11", CP), ("w1", "10.0.0.21", WORKER)]);
        c.artifacts = ArtifactSource::Dir(PathBuf::from("/srv/lab-artifacts"));
        c.etcd.version = "v3.5.1".into();
        let facts = ["cp1", "w1"].iter().map(|h| (h.to_string(), Ok(fresh_facts(h)))).collect();
        let inventory = ["etcd", "etcdctl", "etcdutl"]
            .iter()
            .map(|b| {
                let path = format!("/srv/lab-artifacts/etcd/v3.5.1/{b}");
                (b.to_string(), LocalArtifact { path, sha256: "ab".repeat(32), unverified: false })
            })
            .collect();
        (c, facts, inventory)
    }

    /// The problems of one preflight `check` per host, from the preflight checks alone (other
    /// phases' planners are not involved); hosts without such a problem are left out.
    fn problems_of(
        c: &Cluster,
        facts: &BTreeMap<String, HostProbe>,
        inventory: &ArtifactInventory,
        until: Phase,
        check: &str,
    ) -> BTreeMap<String, Vec<Problem>> {
        let tree = tree(&["cp1", "w1"]);
        let selection = PhaseSelection::new(Some(until), &[]);
        let input = PlanInput {
            cluster: c,
            tree: &tree,
            facts,
            artifacts: inventory,
            selection: &selection,
            observed: &Observed::default(),
            applied: None,
        };
        let reachable = facts
            .iter()
            .filter_map(|(h, f)| Some((h.as_str(), f.as_ref().ok()?)))
            .collect::<BTreeMap<&str, &HostFacts>>();
        super::check(input, &reachable)
            .into_iter()
            .filter_map(|(host, problems)| {
                let found: Vec<Problem> =
                    problems.into_iter().filter(|p| p.check == check).collect();
                (!found.is_empty()).then_some((host, found))
            })
            .collect()
    }

    /// The `artifacts` problems per host, as (message, remedy).
    fn artifact_messages(
        c: &Cluster,
        facts: &BTreeMap<String, HostProbe>,
        inventory: &ArtifactInventory,
        until: Phase,
    ) -> BTreeMap<String, Vec<(String, String)>> {
        problems_of(c, facts, inventory, until, "artifacts")
            .into_iter()
            .map(|(host, ps)| (host, ps.into_iter().map(|p| (p.message, p.remedy)).collect()))
            .collect()
    }

    #[test]
    fn a_kubelet_host_whose_hostname_differs_from_its_spec_name_is_planned_under_the_spec_name() {
        let (c, mut facts, inventory) = lab();
        if let Some(Ok(f)) = facts.get_mut("w1") {
            f.hostname = "Worker-17".into();
        }
        // A fresh machine (no kubelet yet): nothing refused, in any phase selection.
        for until in [Phase::LoadBalancer, Phase::Workers, Phase::Addons] {
            let found = problems_of(&c, &facts, &inventory, until, "node-name");
            assert!(found.is_empty(), "until {until:?}: {found:?}");
        }
    }

    #[test]
    fn the_planner_no_longer_refuses_a_different_hostname_and_overrides_the_node_name() {
        use super::super::tests_phases::{example_text, facts_for, load, plan_phases, render};
        use super::super::{Operation, PutFile, Step};
        let c = load(example_text("stacked"));
        let tree = render(&c);
        let mut facts = facts_for(&c);
        if let Some(Ok(f)) = facts.get_mut("worker1") {
            f.hostname = "ip-10-88-0-21".into();
        }
        // Preflight with the kubelet phases selected: worker1 is not refused for its name.
        let selection = PhaseSelection::new(Some(Phase::Workers), &[]);
        let inventory = ArtifactInventory::new();
        let input = PlanInput {
            cluster: &c,
            tree: &tree,
            facts: &facts,
            artifacts: &inventory,
            selection: &selection,
            observed: &Observed::default(),
            applied: None,
        };
        let plan = super::super::plan(&Operation::Apply, input).unwrap();
        let named: Vec<_> = plan
            .blocked
            .iter()
            .flat_map(|(h, ps)| ps.iter().map(move |p| (h, p)))
            .filter(|(_, p)| p.check.contains("name"))
            .collect();
        assert!(named.is_empty(), "{named:?}");
        // The kubelet it gets registers the node under the spec's name.
        let plan = plan_phases(&c, &tree, &facts, &ArtifactInventory::new(), &[Phase::Workers]);
        let drop_in = plan.phases[0].hosts["worker1"]
            .iter()
            .find_map(|s| match s {
                Step::PutFile(p) if p.path == crate::render::configs::kubelet::DROP_IN => Some(p),
                _ => None,
            })
            .map(|p: &PutFile| String::from_utf8_lossy(&p.contents).into_owned())
            .expect("the kubelet drop-in is put");
        assert!(drop_in.contains("--hostname-override=worker1"), "{drop_in}");
        assert!(!drop_in.contains("ip-10-88-0-21"), "{drop_in}");
    }

    #[test]
    fn a_running_kubelet_registered_under_a_different_hostname_is_refused() {
        use crate::facts::{FileState, UnitState};
        use crate::render::configs::kubelet::DROP_IN;
        let (c, mut facts, inventory) = lab();
        let drop_in = |flags: &str| FileState::Present {
            sha256: "ab".repeat(32),
            mode: Some(0o600),
            owner: Some("root".into()),
            group: Some("root".into()),
            contents: Some(
                format!("[Service]\nExecStart=\nExecStart=/usr/local/bin/kubelet \\\n  {flags}\n")
                    .into_bytes(),
            ),
        };
        if let Some(Ok(f)) = facts.get_mut("w1") {
            f.hostname = "worker-17".into();
            f.units.insert(
                unit::KUBELET.into(),
                UnitState { active: "active".into(), enabled: "enabled".into() },
            );
            f.files.insert(DROP_IN.into(), drop_in("--config=/var/lib/kubelet/config.yaml"));
        }
        let none = problems_of(&c, &facts, &inventory, Phase::LoadBalancer, "node-name");
        assert!(none.is_empty(), "no kubelet phase selected: {none:?}");
        let found = problems_of(&c, &facts, &inventory, Phase::Workers, "node-name");
        assert_eq!(found.keys().collect::<Vec<_>>(), ["w1"], "{found:?}");
        let w1 = &found["w1"];
        assert_eq!(w1.len(), 1, "{w1:?}");
        assert!(w1[0].message.contains("node `worker-17`"), "{}", w1[0].message);
        assert!(w1[0].message.contains("system:node:w1"), "{}", w1[0].message);
        assert!(w1[0].remedy.contains("kubectl delete node worker-17"), "{}", w1[0].remedy);
        assert!(w1[0].remedy.contains("systemctl stop kubelet"), "{}", w1[0].remedy);
        // Started by kubeforge with the override: its node is already `w1`.
        if let Some(Ok(f)) = facts.get_mut("w1") {
            f.files.insert(DROP_IN.into(), drop_in("--hostname-override=w1"));
        }
        assert!(problems_of(&c, &facts, &inventory, Phase::Workers, "node-name").is_empty());
        // Stopped (the remedy): the next start registers `w1`.
        if let Some(Ok(f)) = facts.get_mut("w1") {
            f.files.insert(DROP_IN.into(), drop_in("--config=/var/lib/kubelet/config.yaml"));
            f.units.insert(
                unit::KUBELET.into(),
                UnitState { active: "inactive".into(), enabled: "enabled".into() },
            );
        }
        assert!(problems_of(&c, &facts, &inventory, Phase::Workers, "node-name").is_empty());
    }

    #[test]
    fn kubernetes_ports_are_checked_only_by_runs_that_start_kubernetes() {
        let (c, mut facts, inventory) = lab();
        if let Some(Ok(f)) = facts.get_mut("cp1") {
            f.listening_ports.insert(APISERVER_PORT);
            f.listening_ports.insert(ETCD_PEER_PORT);
        }
        let ports = |until| -> Vec<String> {
            problems_of(&c, &facts, &inventory, until, "ports")
                .into_values()
                .flatten()
                .map(|p| p.message)
                .collect()
        };
        // etcd's ports are checked in every run; the apiserver's only with a kubelet phase.
        assert_eq!(
            ports(Phase::LoadBalancer),
            ["port 2380 (etcd peers) is already in use, and not by etcd.service"]
        );
        let all = ports(Phase::ControlPlane);
        assert!(all.iter().any(|m| m.starts_with("port 6443 (kube-apiserver)")), "{all:?}");
    }

    #[test]
    fn lab_passes_until_loadbalancer() {
        let (c, facts, inventory) = lab();
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::LoadBalancer);
        assert!(blocked.is_empty(), "{blocked:#?}");
    }

    #[test]
    fn lab_without_kubelet_fails_control_plane_naming_version_and_path() {
        let (c, facts, inventory) = lab();
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::ControlPlane);
        let cp1 = &blocked["cp1"];
        let (kubelet, remedy) = &cp1[0];
        assert_eq!(
            kubelet,
            "control-plane phase: kubelet v1.33.1: `kubelet` not found in the artifact directory; \
             looked for /srv/lab-artifacts/kubelet/v1.33.1/kubelet"
        );
        assert!(
            remedy.starts_with(
                "put the linux/amd64 file(s) at /srv/lab-artifacts/kubelet/v1.33.1/kubelet"
            ),
            "{remedy}"
        );
        let all = cp1.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>().join("\n");
        for expected in [
            "kubectl v1.33.1",
            "crictl v1.33.0",
            "`bridge`, `host-local`, `loopback`, `portmap`",
            "/srv/lab-artifacts/pause/3.10/pause.tar",
            "/srv/lab-artifacts/kube-apiserver/v1.33.1/kube-apiserver.tar",
        ] {
            assert!(all.contains(expected), "{expected} missing in\n{all}");
        }
        // The worker is not a control plane: the control-plane phase needs nothing there.
        assert!(!blocked.contains_key("w1"), "{blocked:#?}");
        let workers = artifact_messages(&c, &facts, &inventory, Phase::Workers);
        assert!(workers["w1"][0].0.starts_with("workers phase: kubelet v1.33.1"), "{workers:#?}");
        assert!(workers["w1"].iter().all(|(m, _)| !m.contains("kubectl")), "{workers:#?}");
    }

    #[test]
    fn missing_etcd_blocks_only_etcd_members() {
        let (c, facts, mut inventory) = lab();
        inventory.remove("etcdutl");
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::Etcd);
        assert_eq!(blocked.keys().collect::<Vec<_>>(), ["cp1"]);
        assert_eq!(
            blocked["cp1"][0].0,
            "etcd phase: etcd v3.5.1: `etcdutl` not found in the artifact directory; looked for \
             /srv/lab-artifacts/etcd/v3.5.1/etcdutl"
        );
        assert!(blocked["cp1"][0].1.contains("spec.etcd.version"), "{:?}", blocked["cp1"][0]);
    }

    #[test]
    fn runtime_binaries_installed_on_the_host_need_no_artifacts() {
        let (c, mut facts, inventory) = lab();
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::Runtime);
        assert!(blocked.is_empty(), "{blocked:#?}");
        if let Some(Ok(f)) = facts.get_mut("w1") {
            f.binaries.remove("runc");
        }
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::Runtime);
        let (message, remedy) = &blocked["w1"][0];
        assert_eq!(
            message,
            "runtime phase: `runc` is not installed on the host, and runc v1.3.4: `runc` not \
             found in the artifact directory; looked for /srv/lab-artifacts/runc/v1.3.4/runc"
        );
        assert!(
            remedy.starts_with("install it on the host (Debian/Ubuntu: `apt-get install runc`)")
        );
        assert!(!blocked.contains_key("cp1"));
    }

    #[test]
    fn upstream_downloads_for_another_architecture_are_refused() {
        let (mut c, mut facts, _) = lab();
        c.artifacts = ArtifactSource::Upstream;
        let inventory: ArtifactInventory = ["etcd", "etcdctl", "etcdutl"]
            .iter()
            .map(|b| {
                let path = format!("/home/op/.cache/kubeforge/artifacts/amd64/etcd/v3.5.1/{b}");
                (b.to_string(), LocalArtifact { path, sha256: "ab".repeat(32), unverified: false })
            })
            .collect();
        assert!(artifact_messages(&c, &facts, &inventory, Phase::Etcd).is_empty());
        if let Some(Ok(f)) = facts.get_mut("cp1") {
            f.arch = "aarch64".into();
        }
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::Etcd);
        assert_eq!(
            blocked["cp1"],
            [(
                "the host is linux/arm64, but the artifacts were downloaded for linux/amd64".into(),
                "run kubeforge with KUBEFORGE_ARTIFACT_ARCH=arm64 for these hosts (one \
                 architecture per run; use --skip-phases or a spec per architecture for mixed \
                 clusters)"
                    .into()
            )]
        );
        // The worker needs nothing from etcd: no problem there.
        assert!(!blocked.contains_key("w1"));
    }

    #[test]
    fn upstream_names_the_catalog_gap_and_needs_no_images() {
        let (mut c, facts, inventory) = lab();
        c.artifacts = ArtifactSource::Upstream;
        let blocked = artifact_messages(&c, &facts, &inventory, Phase::Addons);
        let cp1: Vec<&str> = blocked["cp1"].iter().map(|(m, _)| m.as_str()).collect();
        assert!(
            cp1[0].starts_with(
                "control-plane phase: kubelet v1.33.1 (linux/amd64) is not in the built-in catalog"
            ),
            "{cp1:#?}"
        );
        assert!(cp1[0].contains("catalogued: v1.32.10, v1.33.8, v1.34.4"), "{cp1:#?}");
        assert!(
            cp1.iter().all(|m| !m.contains("pause") && !m.contains("kube-apiserver")),
            "{cp1:#?}"
        );
    }
}
