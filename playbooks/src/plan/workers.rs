//! `workers`: the kubelet on every host that runs one and is not a control plane (control planes
//! get theirs in `control-plane`, where it runs their static pods). This module also holds what
//! both phases share: pushing artifacts (binaries, CNI plugins, image archives) only when the
//! host's copy differs, the kubelet's files from the render tree, and the kubelet unit's enable,
//! start or restart, decided from facts.
//!
//! A node only turns Ready once a CNI runs, and the CNI is an add-on; so this phase gates on the
//! kubelet running, and the `addons` phase, after applying the CNI, gates on every node Ready.
//! Pure: decides from the tree, the facts and the artifact inventory; does no I/O.

use super::files::{Wanted, put_file};
use super::restart::Loads;
use super::types::{FileReason, Gate, PushArtifact, Run, Step, UnitAction, UnitStep};
use super::{LocalArtifact, PlanInput};
use crate::artifacts::{self, Component, layout};
use crate::facts::{FileState, HostFacts, ProbeRequest};
use crate::model::{Cluster, Host};

pub(crate) const KUBELET_UNIT: &str = crate::node::unit::KUBELET;
const KUBELET_UNIT_FILE: &str = "/etc/systemd/system/kubelet.service";
const KUBELET_DROP_IN_DIR: &str = "/etc/systemd/system/kubelet.service.d/";
const KUBELET_DIR: &str = "/var/lib/kubelet/";
const KUBELET_PKI_DIR: &str = "/var/lib/kubelet/pki/";
use crate::node::BIN_DIR;
const CNI_BIN_DIR: &str = "/opt/cni/bin";
/// Where image archives are pushed before `ctr` imports them into containerd's `k8s.io`
/// namespace (the one the kubelet's CRI uses).
pub(crate) const IMAGE_DIR: &str = "/var/lib/kubeforge/images";
/// The kubelet reads these at start only: when the pki phase changes them in the same run, a
/// running kubelet is restarted.
const KUBELET_CREDENTIALS: [&str; 4] = [
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/pki/ca.crt",
    "/var/lib/kubelet/pki/kubelet.crt",
    "/var/lib/kubelet/pki/kubelet.key",
];

/// Artifacts the workers phase installs on each worker (inventory keys; `cni:*` plugins and
/// these image archives when the source has them).
const WORKER_BINARIES: [&str; 2] = ["kubelet", "crictl"];
const WORKER_IMAGES: [&str; 1] = ["pause"];

/// The kubelet's own files in the render tree: unit, drop-ins and config (its certificates are
/// the pki phase's).
pub(crate) fn is_kubelet_file(path: &str) -> bool {
    path == KUBELET_UNIT_FILE
        || path.starts_with(KUBELET_DROP_IN_DIR)
        || (path.starts_with(KUBELET_DIR) && !path.starts_with(KUBELET_PKI_DIR))
}

/// Whether the workers phase owns `path` on `host`.
/// (The rule every render-tree file is checked against in `tests_phases`.)
#[cfg(test)]
pub(crate) fn owns(host: &Host, path: &str) -> bool {
    !host.is_control_plane() && is_kubelet_file(path)
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    if host.is_control_plane() || !host.runs_kubelet() {
        return Vec::new();
    }
    let mut steps = Vec::new();
    let mut changed =
        push_artifacts(input, facts, &WORKER_BINARIES, true, &WORKER_IMAGES, &mut steps);
    changed |= kubelet_steps(input, host, facts, &mut steps);
    finish_kubelet(input, host, facts, changed, &mut steps);
    steps
}

/// What the kubelet reads at start: its binary, its own files and its credentials.
fn kubelet_loads(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Loads {
    let tree_files = input.tree.hosts.get(&host.name).into_iter().flatten();
    let own = tree_files.map(|(path, _)| path.as_str()).filter(|p| is_kubelet_file(p));
    let credentials = KUBELET_CREDENTIALS
        .into_iter()
        .filter(|p| input.tree.hosts.get(&host.name).is_some_and(|t| t.contains_key(*p)));
    own.chain(credentials)
        .fold(Loads::new(KUBELET_UNIT), |l, path| l.file(input, &host.name, facts, path))
        .binary(input, facts, "kubelet", &format!("{BIN_DIR}/kubelet"))
}

/// The extra facts these phases need from a kubelet host: the digest of every file they may
/// push (binaries, CNI plugins, image archives), so a copy is pushed only when it differs.
pub(crate) fn extend_request(cluster: &Cluster, host: &str, request: &mut ProbeRequest) {
    let Some(host) = cluster.host(host).filter(|h| h.runs_kubelet()) else { return };
    let (binaries, images): (&[&str], &[&str]) = if host.is_control_plane() {
        (&super::control_plane::BINARIES, &super::control_plane::IMAGES)
    } else {
        (&WORKER_BINARIES, &WORKER_IMAGES)
    };
    for name in binaries {
        request.hash_files.insert(format!("{BIN_DIR}/{name}"));
    }
    for (component, version) in artifacts::wanted_versions(cluster) {
        if component == Component::CniPlugins {
            for plugin in layout::files(component, &version) {
                request.hash_files.insert(format!("{CNI_BIN_DIR}/{plugin}"));
            }
        }
    }
    for image in images.iter().chain(&super::addons::IMAGES) {
        request.hash_files.insert(format!("{IMAGE_DIR}/{image}.tar"));
    }
}

/// What the kubelet's part of a plan changed.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KubeletChange {
    pub binary: bool,
    pub config: bool,
    pub unit_files: bool,
}

impl std::ops::BitOrAssign for KubeletChange {
    fn bitor_assign(&mut self, rhs: Self) {
        self.binary |= rhs.binary;
        self.config |= rhs.config;
        self.unit_files |= rhs.unit_files;
    }
}

/// Pushes `binaries` (inventory keys, all to `/usr/local/bin`), every `cni:*` plugin if asked, and the
/// archives of `images` (components) followed by their import, each only when the host's copy
/// differs. Returns whether the kubelet binary is among the pushes.
pub(crate) fn push_artifacts(
    input: PlanInput<'_>,
    facts: &HostFacts,
    binaries: &[&str],
    cni_plugins: bool,
    images: &[&str],
    steps: &mut Vec<Step>,
) -> KubeletChange {
    let mut change = KubeletChange::default();
    let kube_version = input.cluster.kubernetes_version.to_string();
    for &name in binaries {
        let Some(artifact) = input.artifacts.get(name) else { continue };
        let dest = format!("{BIN_DIR}/{name}");
        let version = (name == "kubelet").then_some(kube_version.as_str());
        if push_needed(facts, name, artifact, &dest, version) {
            change.binary |= name == "kubelet";
            steps.push(push(name, artifact, dest));
        }
    }
    let cni = input.artifacts.range("cni:".to_string()..).take_while(|_| cni_plugins);
    for (key, artifact) in cni {
        let Some(plugin) = key.strip_prefix("cni:") else { break };
        let dest = format!("{CNI_BIN_DIR}/{plugin}");
        if push_needed(facts, key, artifact, &dest, None) {
            steps.push(push(key, artifact, dest));
        }
    }
    for &component in images {
        let key = format!("image:{component}");
        let Some(artifact) = input.artifacts.get(&key) else { continue };
        let dest = format!("{IMAGE_DIR}/{component}.tar");
        if push_needed(facts, &key, artifact, &dest, None) {
            steps.push(push(&key, artifact, dest.clone()));
            steps.push(import_image(input.cluster, component, &dest));
        }
    }
    change
}

fn push(name: &str, artifact: &LocalArtifact, dest: String) -> Step {
    let mode = if name.starts_with("image:") { 0o600 } else { 0o755 };
    Step::PushArtifact(PushArtifact {
        name: name.to_string(),
        local_path: artifact.path.clone(),
        sha256: artifact.sha256.clone(),
        dest,
        mode,
        unverified: artifact.unverified,
    })
}

/// Whether `dest` must be (re)written: judged by its sha256 when the probe hashed it
/// (`extend_request` asks for every destination), else by what `command -v` and `--version`
/// reported (a binary elsewhere on the PATH, or of another version, does not count).
pub(crate) fn push_needed(
    facts: &HostFacts,
    name: &str,
    artifact: &LocalArtifact,
    dest: &str,
    wanted_version: Option<&str>,
) -> bool {
    match facts.files.get(dest) {
        Some(FileState::Present { sha256, .. }) => return *sha256 != artifact.sha256,
        Some(FileState::Absent) => return true,
        None => {}
    }
    match facts.binaries.get(name) {
        Some(found) => {
            found.path.as_deref() != Some(dest)
                || wanted_version.is_some_and(|v| found.version.as_deref() != Some(v))
        }
        None => true,
    }
}

/// `ctr import` of an image archive into the CRI's namespace, skipped when the image is there.
fn import_image(cluster: &Cluster, component: &str, archive: &str) -> Step {
    let reference = artifacts::wanted_versions(cluster)
        .into_iter()
        .find(|(c, _)| c.name() == component)
        .map(|(c, version)| layout::image_reference(c, &version));
    let unless = reference.as_ref().map(|r| {
        let script = format!("ctr -n k8s.io images ls -q | grep -qxF '{r}'");
        vec!["sh".to_string(), "-c".to_string(), script]
    });
    Step::Run(Run {
        argv: ["ctr", "-n", "k8s.io", "images", "import", archive].map(String::from).to_vec(),
        unless,
        why: format!(
            "containerd needs the {} image and the nodes cannot pull it",
            reference.unwrap_or_else(|| component.to_string())
        ),
    })
}

/// The kubelet's files from the tree. Returns what changed.
pub(crate) fn kubelet_steps(
    input: PlanInput<'_>,
    host: &Host,
    facts: &HostFacts,
    steps: &mut Vec<Step>,
) -> KubeletChange {
    let mut change = KubeletChange::default();
    let tree_files = input.tree.hosts.get(&host.name);
    for (path, file) in tree_files.into_iter().flatten() {
        if !is_kubelet_file(path) {
            continue;
        }
        let wanted =
            Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
        if let Some(put) = put_file(&host.name, facts, wanted) {
            let content = !matches!(put.reason, FileReason::Metadata { .. });
            if path.starts_with("/etc/systemd/") {
                change.unit_files |= content;
            }
            change.config |= content;
            steps.push(Step::PutFile(put));
        }
    }
    change
}

/// daemon-reload, enable, start or restart the kubelet, the gate and the record of what it
/// loaded, after the kubelet's pushes and files; nothing at all when nothing changed and the
/// kubelet runs with what it will find on disk (`super::restart`).
pub(crate) fn finish_kubelet(
    input: PlanInput<'_>,
    host: &Host,
    facts: &HostFacts,
    change: KubeletChange,
    steps: &mut Vec<Step>,
) {
    let loads = kubelet_loads(input, host, facts);
    let unit = |action, why: &str| {
        Step::Unit(UnitStep { unit: KUBELET_UNIT.into(), action, why: why.into() })
    };
    let state = facts.units.get(KUBELET_UNIT);
    if change.unit_files {
        steps.push(Step::Unit(UnitStep {
            unit: String::new(),
            action: UnitAction::DaemonReload,
            why: "the kubelet's unit files changed".into(),
        }));
    }
    if !state.is_some_and(|u| u.is_enabled()) {
        steps.push(unit(UnitAction::Enable, "the kubelet must start at boot"));
    }
    if !state.is_some_and(|u| u.is_active()) {
        steps.push(unit(UnitAction::Start, "the kubelet is not running"));
    } else if let Some(why) = loads.stale(facts) {
        steps.push(unit(UnitAction::Restart, &format!("{why} (the kubelet reads them at start)")));
    }
    if !steps.is_empty() {
        steps.push(Step::Gate(Gate {
            what: "the kubelet is active".into(),
            argv: ["systemctl", "is-active", "--quiet", KUBELET_UNIT].map(String::from).to_vec(),
            across: None,
            attempts: 30,
            interval_ms: 2000,
        }));
        steps.extend(loads.record_step(&host.name, facts));
    }
}

/// Whether `host`'s kubelet is planned anything in this run (by this phase or `control-plane`).
pub(crate) fn kubelet_changes(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> bool {
    let mut steps = Vec::new();
    let binaries: &[&str] = if host.is_control_plane() { &["kubelet"] } else { &WORKER_BINARIES };
    let change = push_artifacts(input, facts, binaries, !host.is_control_plane(), &[], &mut steps);
    let files = kubelet_steps(input, host, facts, &mut steps);
    !steps.is_empty()
        || change.binary
        || files.config
        || !facts.units.get(KUBELET_UNIT).is_some_and(|u| u.is_active())
        || kubelet_loads(input, host, facts).stale(facts).is_some()
}
