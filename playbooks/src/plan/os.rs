//! `os`: kernel modules loaded now and at boot, sysctls applied now and at boot, swap off for
//! good (swapoff plus fstab), and the cluster's hosts in `/etc/hosts`. The modules-load.d and
//! sysctl.d files come from the render tree; this module reads them to know what must hold now.

use super::PlanInput;
use super::files::{Wanted, put_file};
use super::types::{Run, Step};
use crate::facts::{HostFacts, ProbeRequest};
use crate::model::{Cluster, Host};
use crate::render::RenderTree;

const MODULES_DIR: &str = "/etc/modules-load.d/";
const SYSCTL_DIR: &str = "/etc/sysctl.d/";
pub(crate) const HOSTS_FILE: &str = "/etc/hosts";
pub(crate) const FSTAB: &str = "/etc/fstab";
const BLOCK_BEGIN: &str = "# BEGIN kubeforge: cluster hosts (managed, edits are replaced)";
const BLOCK_END: &str = "# END kubeforge";

/// Whether the os phase owns a render-tree path.
pub(crate) fn owns(path: &str) -> bool {
    path.starts_with(MODULES_DIR) || path.starts_with(SYSCTL_DIR)
}

/// How to tell that a kernel module is available. Built-in modules have no `/proc/modules`
/// line and containers often have no `/sys/module`, so each module has its own evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ModuleEvidence {
    /// A path the module creates.
    Path(String),
    /// A file system type the module registers in `/proc/filesystems`.
    Filesystem(String),
}

impl ModuleEvidence {
    pub(crate) fn of(module: &str) -> Self {
        match module {
            "overlay" => ModuleEvidence::Filesystem("overlay".into()),
            "br_netfilter" => ModuleEvidence::Path("/proc/sys/net/bridge".into()),
            other => ModuleEvidence::Path(format!("/sys/module/{other}")),
        }
    }

    pub(crate) fn holds(&self, facts: &HostFacts) -> bool {
        match self {
            ModuleEvidence::Path(p) => facts.paths_exist.get(p) == Some(&true),
            ModuleEvidence::Filesystem(fs) => facts.filesystems.contains(fs),
        }
    }

    /// The same test as a command, for the step's `unless` probe.
    fn probe(&self) -> Vec<String> {
        match self {
            ModuleEvidence::Path(p) => vec!["test".into(), "-e".into(), p.clone()],
            ModuleEvidence::Filesystem(fs) => {
                vec!["grep".into(), "-qw".into(), fs.clone(), "/proc/filesystems".into()]
            }
        }
    }
}

/// Module names from the host's modules-load.d files in the tree.
fn modules(tree: &RenderTree, host: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (path, file) in tree.hosts.get(host).into_iter().flatten() {
        if path.starts_with(MODULES_DIR) {
            let text = String::from_utf8_lossy(&file.contents);
            for line in text.lines().map(str::trim) {
                if !line.is_empty() && !line.starts_with('#') && !line.starts_with(';') {
                    out.push(line.to_string());
                }
            }
        }
    }
    out
}

/// `key = value` pairs from the host's sysctl.d files in the tree, in file order.
fn sysctls(tree: &RenderTree, host: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (path, file) in tree.hosts.get(host).into_iter().flatten() {
        if path.starts_with(SYSCTL_DIR) {
            let text = String::from_utf8_lossy(&file.contents);
            for line in text.lines().map(str::trim) {
                if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                    continue;
                }
                if let Some((key, value)) = line.split_once('=') {
                    let key = key.trim().trim_start_matches('-').replace('/', ".");
                    out.push((key, crate::facts::normalize_sysctl(value)));
                }
            }
        }
    }
    out
}

pub(crate) fn extend_request(tree: &RenderTree, host: &str, request: &mut ProbeRequest) {
    for module in modules(tree, host) {
        if let ModuleEvidence::Path(p) = ModuleEvidence::of(&module) {
            request.paths_exist.insert(p);
        }
    }
    for (key, _) in sysctls(tree, host) {
        request.sysctls.insert(key);
    }
    request.read_files.insert(HOSTS_FILE.into());
    request.read_files.insert(FSTAB.into());
}

pub(crate) fn plan_host(input: PlanInput<'_>, host: &Host, facts: &HostFacts) -> Vec<Step> {
    let mut steps = Vec::new();
    for (path, file) in input.tree.hosts.get(&host.name).into_iter().flatten() {
        if owns(path) {
            let wanted =
                Wanted { path, contents: &file.contents, mode: file.mode, secret: file.secret };
            steps.extend(put_file(&host.name, facts, wanted).map(Step::PutFile));
        }
    }
    for module in modules(input.tree, &host.name) {
        let evidence = ModuleEvidence::of(&module);
        if !evidence.holds(facts) {
            steps.push(Step::Run(Run {
                argv: vec!["modprobe".into(), module.clone()],
                unless: Some(evidence.probe()),
                why: format!("kernel module {module} is not loaded"),
            }));
        }
    }
    for (key, value) in sysctls(input.tree, &host.name) {
        if facts.sysctls.get(&key).and_then(|v| v.as_deref()) != Some(value.as_str()) {
            let proc_path = format!("/proc/sys/{}", key.replace('.', "/"));
            steps.push(Step::Run(Run {
                argv: vec!["sysctl".into(), "-w".into(), format!("{key}={value}")],
                unless: Some(vec![
                    "sh".into(),
                    "-c".into(),
                    format!("[ \"$(cat {proc_path} 2>/dev/null)\" = '{value}' ]"),
                ]),
                why: format!(
                    "{key} is {}, wanted {value}",
                    facts.sysctls.get(&key).cloned().flatten().unwrap_or_else(|| "absent".into())
                ),
            }));
        }
    }
    if !facts.swaps.is_empty() {
        steps.push(Step::Run(Run {
            argv: vec!["swapoff".into(), "-a".into()],
            unless: Some(vec!["sh".into(), "-c".into(), "[ $(wc -l < /proc/swaps) -le 1 ]".into()]),
            why: "the kubelet requires swap to be off".into(),
        }));
    }
    if let Some(fstab) = facts.files.get(FSTAB).and_then(|f| f.contents()) {
        let text = String::from_utf8_lossy(fstab);
        let wanted = fstab_without_swap(&text);
        if wanted != text {
            let wanted =
                Wanted { path: FSTAB, contents: wanted.as_bytes(), mode: 0o644, secret: false };
            steps.extend(put_file(&host.name, facts, wanted).map(Step::PutFile));
        }
    }
    let current_hosts = facts.files.get(HOSTS_FILE).and_then(|f| f.contents());
    let current_hosts = current_hosts.map(|c| String::from_utf8_lossy(c).into_owned());
    let wanted_hosts = hosts_file(input.cluster, current_hosts.as_deref());
    let wanted =
        Wanted { path: HOSTS_FILE, contents: wanted_hosts.as_bytes(), mode: 0o644, secret: false };
    steps.extend(put_file(&host.name, facts, wanted).map(Step::PutFile));
    steps
}

/// `/etc/fstab` with every active swap line commented out (so swap stays off after a reboot).
pub(crate) fn fstab_without_swap(fstab: &str) -> String {
    let mut out = String::with_capacity(fstab.len());
    for line in fstab.split_inclusive('\n') {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let is_swap = !line.trim_start().starts_with('#') && fields.get(2) == Some(&"swap");
        if is_swap {
            out.push_str("# disabled by kubeforge (Kubernetes needs swap off): ");
        }
        out.push_str(line);
    }
    out
}

/// `/etc/hosts` with the cluster's block (every host's address and name) replacing any previous
/// block; everything outside the block is kept as it was.
pub(crate) fn hosts_file(cluster: &Cluster, current: Option<&str>) -> String {
    let current = current.unwrap_or("127.0.0.1\tlocalhost\n");
    let mut kept = String::new();
    let mut inside = false;
    for line in current.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == BLOCK_BEGIN {
            inside = true;
        } else if inside && trimmed == BLOCK_END {
            inside = false;
        } else if !inside {
            kept.push_str(line);
        }
    }
    if !kept.is_empty() && !kept.ends_with('\n') {
        kept.push('\n');
    }
    kept.push_str(BLOCK_BEGIN);
    kept.push('\n');
    for host in &cluster.hosts {
        kept.push_str(&format!("{}\t{}\n", host.address, host.name));
    }
    kept.push_str(BLOCK_END);
    kept.push('\n');
    kept
}
