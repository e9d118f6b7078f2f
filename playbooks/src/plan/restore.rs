//! `restore`: the plan that replaces etcd's data on every member with one verified snapshot.
//! It owns the order of a restore and every path, argv and gate in it; it does not verify the
//! snapshot (the CLI does that, with a throwaway etcd, before planning) and it does no I/O.
//!
//! The `etcd` phase does it in two parts, so that everything that can fail on a member
//! happens while the cluster still runs:
//! 1. on every member at once (the cluster keeps serving): push the snapshot (sha256-checked),
//!    restore it with the etcd release's own tool (`etcdutl` from 3.5, `etcdctl` for 3.4) into
//!    a new directory with the spec's member list and a new cluster token, hand it to the
//!    `etcd` user (0700), remove the pushed copy;
//! 2. only if that worked on every member (the executor skips a phase's sequence after any
//!    host failed), one step at a time: move the static pod manifests of the control planes
//!    aside and wait until their kube-apiserver is gone; stop etcd on every member; move each
//!    old data dir aside (kept, never deleted) and the restored one into its place; write the
//!    bootstrap environment with the new token; start every member together; gate on health
//!    and on the restored data (one cluster id, the spec's members, the snapshot's revision);
//!    put the manifests back and wait for each kube-apiserver and the API endpoint.
//!
//! A restore refuses to plan (every host it needs is listed as blocked, and nothing runs)
//! unless every member and control plane is reachable and every member runs the etcd the spec
//! says (unit, certificates, binary): on new machines that is `kubeforge apply --until etcd`.

use std::collections::BTreeMap;

use super::etcd::{BIN_DIR, GATE_TIMEOUT_MS, PKI_FILES};
use super::files::{Wanted, put_file, sha256_hex};
use super::operation::RestoreSnapshot;
use super::types::{
    EtcdAction, EtcdClientFiles, Gate, PhasePlan, Plan, Problem, PushArtifact, Run, SequencedStep,
    Step, UnitAction, UnitStep,
};
use super::{Operation, Phase, PlanInput};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, Endpoint, Host};
use crate::render::configs::etcd::{self as unit, InitialState};

/// The etcd unit.
pub(crate) const ETCD_UNIT: &str = "etcd.service";
/// The static pod manifests kubelet runs from.
pub(crate) const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Where a restore keeps the control planes' manifests while their pods must not run.
pub const MANIFESTS_ASIDE_DIR: &str = "/etc/kubernetes/manifests-restore";
/// The control-plane static pods a restore stops and starts again (the apiserver first, so
/// nothing writes to etcd; the controller-manager and scheduler so that none keeps a view of
/// the cluster from before the restore).
pub(crate) const STATIC_PODS: [&str; 3] =
    ["kube-apiserver", "kube-controller-manager", "kube-scheduler"];
const KUBECTL: &str = "/usr/local/bin/kubectl";
const ADMIN_CONF: &str = "/etc/kubernetes/admin.conf";
const APISERVER_PORT: u16 = 6443;

/// Where the snapshot is pushed on a member (removed once restored).
pub fn staged_snapshot(stamp: &str) -> String {
    format!("{}.snapshot-{stamp}.db", unit::DATA_DIR)
}

/// Where a member's restored data is made, before it replaces the data dir.
pub fn restored_dir(stamp: &str) -> String {
    format!("{}.restored-{stamp}", unit::DATA_DIR)
}

/// Where a member's old data dir is kept after a restore (never deleted by kubeforge).
pub fn old_data_dir(stamp: &str) -> String {
    format!("{}.before-restore-{stamp}", unit::DATA_DIR)
}

/// The restored cluster's token: new for every restore, so no member of the old cluster (or
/// of an earlier restore) can ever be taken for one of the new cluster.
pub fn cluster_token(cluster: &str, stamp: &str) -> String {
    format!("{cluster}-restore-{}", stamp.to_ascii_lowercase())
}

/// The tool that restores snapshots for the spec's etcd version, as installed on members.
pub fn restore_tool(etcd_version: &str) -> &'static str {
    match unit::etcd_minor(etcd_version) {
        Ok(v) if v < (3, 5) => "etcdctl",
        _ => "etcdutl",
    }
}

/// Facts a restore needs beyond `apply`'s: whether a control plane's manifests were left
/// aside by an interrupted restore.
pub(crate) fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    if cluster.host(host).is_some_and(Host::is_control_plane) {
        for pod in STATIC_PODS {
            request.paths_exist.insert(aside_manifest(pod));
        }
    }
}

fn manifest(pod: &str) -> String {
    format!("{MANIFESTS_DIR}/{pod}.yaml")
}

fn aside_manifest(pod: &str) -> String {
    format!("{MANIFESTS_ASIDE_DIR}/{pod}.yaml")
}

fn run(argv: &[&str], unless: Option<&[&str]>, why: &str) -> Step {
    let own = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    Step::Run(Run { argv: own(argv), unless: unless.map(own), why: why.into() })
}

fn problem(check: &str, message: String, remedy: String) -> Problem {
    Problem { phase: Phase::Preflight, check: check.into(), message, remedy }
}

/// The static pods a control plane runs or an interrupted restore left aside.
fn pods_on(facts: &HostFacts) -> Vec<&'static str> {
    STATIC_PODS
        .into_iter()
        .filter(|pod| {
            let running = facts.files.get(&manifest(pod)).and_then(|f| f.sha256()).is_some();
            let aside = facts.paths_exist.get(&aside_manifest(pod)) == Some(&true);
            running || aside
        })
        .collect()
}

/// Why a member cannot be restored as it is, with what to do.
fn member_problems(
    input: PlanInput<'_>,
    host: &Host,
    facts: &HostFacts,
    tool: &str,
) -> Vec<Problem> {
    let apply_first = "run `kubeforge apply -f <spec> --until etcd` first (on new machines it \
                       installs etcd with certificates for the spec's addresses), then restore \
                       again"
        .to_string();
    let mut problems = Vec::new();
    let tree = input.tree.hosts.get(&host.name);
    let mut differ = Vec::new();
    for path in [unit::UNIT, unit::SYSUSERS].into_iter().chain(PKI_FILES) {
        let wanted = tree.and_then(|t| t.get(path)).map(|f| sha256_hex(&f.contents));
        let found = facts.files.get(path).and_then(|f| f.sha256());
        if wanted.is_some() && wanted.as_deref() != found {
            differ.push(path.to_string());
        }
    }
    let etcd_bin = format!("{BIN_DIR}/etcd");
    let on_host = facts.files.get(&etcd_bin).and_then(|f| f.sha256());
    match (input.artifacts.get("etcd"), on_host) {
        (_, None) => differ.push(etcd_bin),
        (Some(a), Some(found)) if a.sha256 != found => differ.push(etcd_bin),
        _ => {}
    }
    if !differ.is_empty() {
        problems.push(problem(
            "etcd-installed",
            format!(
                "etcd on {} is not installed as the spec says: {} missing or different",
                host.name,
                differ.join(", ")
            ),
            apply_first.clone(),
        ));
    }
    let tool_path = format!("{BIN_DIR}/{tool}");
    if facts.files.get(&tool_path).and_then(|f| f.sha256()).is_none() {
        problems.push(problem(
            "restore-tool",
            format!(
                "{} has no {tool_path}, which restores etcd {} snapshots",
                host.name, input.cluster.etcd.version
            ),
            format!(
                "provide {tool} for etcd {} in the spec's artifact source (`apply --until etcd` \
                 installs it), then restore again",
                input.cluster.etcd.version
            ),
        ));
    }
    problems
}

/// Plans a restore; see the module doc.
pub(crate) fn plan(input: PlanInput<'_>, snapshot: &RestoreSnapshot) -> Plan {
    let cluster = input.cluster;
    let operation = Operation::Restore { snapshot: snapshot.clone() };
    let members: Vec<&Host> = cluster.etcd_members().collect();
    let control_planes: Vec<&Host> =
        cluster.hosts.iter().filter(|h| h.is_control_plane()).collect();
    let tool = restore_tool(&cluster.etcd.version);

    let mut blocked: BTreeMap<String, Vec<Problem>> = BTreeMap::new();
    let needed = members.iter().chain(control_planes.iter().filter(|c| !members.contains(c)));
    let facts_of = super::reachable_or_blocked(
        input,
        needed.copied(),
        "a restore changes every etcd member and control plane together: bring this machine \
         back (or take it out of the spec), then restore again",
        &mut blocked,
    );
    for host in &members {
        if let Some(facts) = facts_of.get(host.name.as_str()) {
            let problems = member_problems(input, host, facts, tool);
            if !problems.is_empty() {
                blocked.entry(host.name.clone()).or_default().extend(problems);
            }
        }
    }
    let preflight = PhasePlan {
        phase: Phase::Preflight,
        hosts: BTreeMap::new(),
        sequence: Vec::new(),
        batch: None,
    };
    if members.is_empty() || !blocked.is_empty() {
        return Plan {
            cluster: cluster.name.clone(),
            operation,
            phases: vec![preflight],
            blocked,
            departed: Vec::new(),
            deferred: Vec::new(),
        };
    }

    let stamp = &snapshot.stamp;
    let token = cluster_token(&cluster.name, stamp);
    let initial: Vec<(String, String)> =
        members.iter().map(|h| (h.name.clone(), unit::peer_url(h.address))).collect();
    let initial_flag =
        initial.iter().map(|(n, u)| format!("{n}={u}")).collect::<Vec<_>>().join(",");
    let staged = staged_snapshot(stamp);
    let restored = restored_dir(stamp);
    let old = old_data_dir(stamp);

    // Part 1, on every member at once, while the cluster still serves.
    let mut hosts = BTreeMap::new();
    for host in &members {
        let mut steps = vec![Step::PushArtifact(PushArtifact {
            name: format!("etcd snapshot (revision {})", snapshot.revision),
            local_path: snapshot.local_path.clone(),
            sha256: snapshot.sha256.clone(),
            dest: staged.clone(),
            mode: 0o600,
            unverified: false,
        })];
        let tool_path = format!("{BIN_DIR}/{tool}");
        let mut argv: Vec<String> = Vec::new();
        if tool == "etcdctl" {
            argv.extend(["env".to_string(), "ETCDCTL_API=3".to_string()]);
        }
        argv.extend([
            tool_path,
            "snapshot".into(),
            "restore".into(),
            staged.clone(),
            format!("--name={}", host.name),
            format!("--initial-cluster={initial_flag}"),
            format!("--initial-cluster-token={token}"),
            format!("--initial-advertise-peer-urls={}", unit::peer_url(host.address)),
            format!("--data-dir={restored}"),
        ]);
        steps.push(Step::Run(Run {
            argv,
            unless: None,
            why: format!(
                "restore the snapshot as member {} of a new cluster of the spec's {} members \
                 (etcd checks the snapshot's sha256 again); the running member is not touched",
                host.name,
                members.len()
            ),
        }));
        let owner = format!("{}:{}", unit::USER, unit::USER);
        steps.push(run(
            &["chown", "-R", &owner, &restored],
            None,
            "etcd runs as the etcd user and must own its data",
        ));
        steps.push(run(&["chmod", "0700", &restored], None, "etcd's data dir is private (0700)"));
        steps.push(run(
            &["rm", "-f", &staged],
            None,
            "the pushed copy is no longer needed (a snapshot holds the cluster's secrets)",
        ));
        hosts.insert(host.name.clone(), steps);
    }

    // Part 2, one step at a time, only when part 1 worked on every member.
    let mut seq = Vec::new();
    let mut push = |host: &str, step: Step| {
        seq.push(SequencedStep { host: host.to_string(), step });
    };
    let cp_pods: Vec<(&Host, Vec<&'static str>)> = control_planes
        .iter()
        .filter_map(|h| {
            let pods = pods_on(facts_of.get(h.name.as_str())?);
            (!pods.is_empty()).then_some((*h, pods))
        })
        .collect();
    for (host, pods) in &cp_pods {
        for pod in pods {
            let (from, to) = (manifest(pod), aside_manifest(pod));
            push(
                &host.name,
                run(
                    &[
                        "sh",
                        "-c",
                        &format!("mkdir -p -m 0700 {MANIFESTS_ASIDE_DIR} && mv -f {from} {to}"),
                    ],
                    Some(&["test", "!", "-e", &from]),
                    &format!(
                        "stop {pod}: the kubelet stops a static pod whose manifest is gone \
                         (kept in {MANIFESTS_ASIDE_DIR}, put back at the end)"
                    ),
                ),
            );
        }
        push(
            &host.name,
            Step::Gate(Gate {
                what: format!("kube-apiserver on {} has stopped", host.name),
                argv: [
                    "sh",
                    "-c",
                    "out=$(crictl ps -q --name '^kube-apiserver$') && test -z \"$out\"",
                ]
                .map(String::from)
                .to_vec(),
                across: None,
                attempts: 60,
                interval_ms: 2000,
            }),
        );
    }
    for host in &members {
        push(
            &host.name,
            Step::Unit(UnitStep {
                unit: ETCD_UNIT.into(),
                action: UnitAction::Stop,
                why: "every member stops before any restored member starts".into(),
            }),
        );
    }
    for host in &members {
        let facts = facts_of[host.name.as_str()];
        push(
            &host.name,
            run(
                &["mv", "-T", unit::DATA_DIR, &old],
                Some(&["test", "!", "-e", unit::DATA_DIR]),
                &format!("the old data is kept in {old}, never deleted"),
            ),
        );
        push(
            &host.name,
            run(
                &["mv", "-T", &restored, unit::DATA_DIR],
                None,
                "the restored data becomes the member's data dir",
            ),
        );
        let env = unit::bootstrap_env(&token, &initial, InitialState::New);
        let wanted = Wanted {
            path: unit::BOOTSTRAP_ENV,
            contents: env.as_bytes(),
            mode: 0o600,
            secret: false,
        };
        if let Some(put) = put_file(&host.name, facts, wanted) {
            push(&host.name, Step::PutFile(put));
        }
    }
    for host in &members {
        push(
            &host.name,
            run(
                &["systemctl", "start", "--no-block", ETCD_UNIT],
                None,
                "every restored member starts together (one alone cannot elect a leader)",
            ),
        );
    }
    let names: Vec<String> = members.iter().map(|h| h.name.clone()).collect();
    let tls = EtcdClientFiles::for_member(&input.observed.local_pki_dir, &members[0].name);
    let op = |action: EtcdAction, why: &str| Step::etcd(action, &tls, why);
    push(
        &members[0].name,
        op(
            EtcdAction::HealthGate { members: names.clone(), timeout_ms: GATE_TIMEOUT_MS },
            "the restored members elect a leader and answer",
        ),
    );
    push(
        &members[0].name,
        op(
            EtcdAction::RestoredGate {
                members: names,
                revision: snapshot.revision,
                timeout_ms: 60_000,
            },
            "every member serves the snapshot's data in one cluster",
        ),
    );
    for (host, pods) in &cp_pods {
        for pod in pods {
            let (aside, back) = (aside_manifest(pod), manifest(pod));
            push(
                &host.name,
                run(
                    &["mv", "-f", &aside, &back],
                    Some(&["test", "!", "-e", &aside]),
                    &format!("start {pod} again, on the restored data"),
                ),
            );
        }
        if pods.contains(&"kube-apiserver") {
            let own = format!("https://{}", Endpoint::ip(host.address, APISERVER_PORT));
            push(
                &host.name,
                readyz_gate(
                    &format!("kube-apiserver on {} answers /readyz at {own}", host.name),
                    &own,
                    120,
                    5000,
                ),
            );
        }
    }
    if let Some((first, _)) = cp_pods.iter().find(|(_, pods)| pods.contains(&"kube-apiserver")) {
        let endpoint = cluster.api_server_url();
        push(
            &first.name,
            readyz_gate(
                &format!("the API answers /readyz through {endpoint}"),
                &endpoint,
                60,
                2000,
            ),
        );
    }

    let etcd = PhasePlan { phase: Phase::Etcd, hosts, sequence: seq, batch: None };
    Plan {
        cluster: cluster.name.clone(),
        operation,
        phases: vec![preflight, etcd],
        blocked,
        departed: Vec::new(),
        deferred: Vec::new(),
    }
}

fn readyz_gate(what: &str, server: &str, attempts: u32, interval_ms: u64) -> Step {
    Step::Gate(Gate {
        what: what.into(),
        argv: [KUBECTL, "--kubeconfig", ADMIN_CONF, "--server", server, "get", "--raw", "/readyz"]
            .map(String::from)
            .to_vec(),
        across: None,
        attempts,
        interval_ms,
    })
}

#[cfg(test)]
#[path = "tests_restore.rs"]
mod tests;
