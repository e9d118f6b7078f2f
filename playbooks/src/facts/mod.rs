//! Facts: what a host is like right now, as the planner needs it. This module writes the one
//! combined, read-only probe script that `cli::gather` runs on each host, and parses its captured
//! output with pure functions. It never runs anything itself and never decides what to change;
//! the planner says which files, units, binaries and kernel settings to ask about
//! (`ProbeRequest`), and reads the answers (`HostFacts`).

mod parse;
mod script;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

pub(crate) use parse::normalize_sysctl;
pub use parse::{
    clock_offset_ms, parse_binary_version, parse_filesystems, parse_meminfo_total_kib,
    parse_os_release, parse_ports_proc_net_tcp, parse_ports_ss, parse_probe_output,
    parse_sha256sum, parse_stat, parse_swaps, parse_unit_state,
};
pub use script::probe_script;

/// What the planner wants to know about one host, beyond the fixed facts every host reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ProbeRequest {
    /// Files whose sha256 is needed (every file kubeforge manages on the host).
    pub hash_files: BTreeSet<String>,
    /// Files whose whole contents are needed: non-secret managed files (for diffs) and files
    /// kubeforge edits in place (`/etc/hosts`, `/etc/fstab`). Secret files are never read.
    pub read_files: BTreeSet<String>,
    /// Paths whose existence is evidence of something (a kernel module being loaded).
    pub paths_exist: BTreeSet<String>,
    /// Kernel parameters by their sysctl name (`net.ipv4.ip_forward`).
    pub sysctls: BTreeSet<String>,
    /// systemd units by full name (`containerd.service`).
    pub units: BTreeSet<String>,
    /// Binaries whose `--version` output is needed (`containerd`, `runc`).
    pub binaries: BTreeSet<String>,
    /// Read-only commands whose output is needed, by a name the planner chooses → argv (an
    /// upgrade reads the kube-proxy DaemonSet's and the CoreDNS Deployment's images with
    /// `kubectl get` on the first control plane). Each runs under `timeout 15`, stderr
    /// dropped. Omitted from JSON when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, Vec<String>>,
}

/// Files larger than this are hashed but never read whole.
pub const MAX_READ_BYTES: u64 = 1024 * 1024;

/// Everything known about one host after a probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostFacts {
    pub os: OsRelease,
    /// `uname -m`, e.g. `x86_64`.
    pub arch: String,
    /// `uname -r`.
    pub kernel: String,
    pub cpus: u32,
    pub memory_kib: u64,
    /// Active swap areas from `/proc/swaps`; empty means swap is off.
    pub swaps: Vec<SwapArea>,
    pub hostname: String,
    /// Host clock minus the operator's clock, in milliseconds (midpoint of the probe's round trip).
    pub clock_offset_ms: i64,
    /// File system types the kernel supports (`/proc/filesystems`), e.g. `overlay`.
    pub filesystems: BTreeSet<String>,
    /// TCP ports something listens on.
    pub listening_ports: BTreeSet<u16>,
    pub units: BTreeMap<String, UnitState>,
    /// Binary name → what is installed (absent binaries are present with `path: None`).
    pub binaries: BTreeMap<String, Binary>,
    /// Path → the file as found; every path in the request's `hash_files` and `read_files`.
    pub files: BTreeMap<String, FileState>,
    pub paths_exist: BTreeMap<String, bool>,
    /// sysctl name → current value (whitespace normalised), `None` when the key does not exist.
    pub sysctls: BTreeMap<String, Option<String>>,
    /// Name → what each of the request's `commands` printed. Omitted from JSON when empty.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub commands: BTreeMap<String, CommandOutput>,
}

/// What one probe command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CommandOutput {
    /// Its exit status (124: `timeout` stopped it; 127: not installed).
    pub exit_status: i32,
    /// Its standard output, trailing newlines removed.
    pub stdout: String,
}

impl CommandOutput {
    /// The output of a command that succeeded and printed something.
    pub fn ok(&self) -> Option<&str> {
        (self.exit_status == 0 && !self.stdout.trim().is_empty()).then_some(self.stdout.trim())
    }
}

/// The parts of `/etc/os-release` preflight judges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OsRelease {
    /// `ID`, e.g. `debian`, `ubuntu`.
    pub id: String,
    /// `VERSION_ID`, e.g. `12`, `24.04`.
    pub version_id: String,
    pub pretty_name: String,
}

/// One line of `/proc/swaps`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SwapArea {
    pub filename: String,
    pub kind: String,
    pub size_kib: u64,
}

/// `systemctl is-active` and `is-enabled` of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnitState {
    /// `active`, `inactive`, `failed`, `activating`, ...
    pub active: String,
    /// `enabled`, `disabled`, `static`, `masked`, ...; `not-found` when systemd has no such unit.
    pub enabled: String,
}

impl UnitState {
    pub fn is_active(&self) -> bool {
        self.active == "active"
    }
    pub fn is_enabled(&self) -> bool {
        matches!(self.enabled.as_str(), "enabled" | "enabled-runtime" | "static" | "alias")
    }
}

/// An installed binary, as `command -v` and `--version` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Binary {
    /// Where `command -v` found it; `None` when it is not installed.
    pub path: Option<String>,
    /// The version number taken from `--version` (`1.6.20~ds1`, `v1.33.1`), when recognised.
    pub version: Option<String>,
}

/// A managed file on the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum FileState {
    Absent,
    Present {
        /// Lower-case hex sha256 of the contents.
        sha256: String,
        /// Permission bits (`0o644`) and owner, from `stat`; `None` if stat gave nothing.
        mode: Option<u32>,
        owner: Option<String>,
        group: Option<String>,
        /// The contents, when the file was in `read_files` and small enough.
        #[serde(skip)]
        contents: Option<Vec<u8>>,
    },
}

impl FileState {
    pub fn sha256(&self) -> Option<&str> {
        match self {
            FileState::Absent => None,
            FileState::Present { sha256, .. } => Some(sha256),
        }
    }
    /// Whether the file exists with this digest, mode and owner.
    pub fn matches(&self, sha: &str, want_mode: u32, want_owner: &str, want_group: &str) -> bool {
        match self {
            FileState::Absent => false,
            FileState::Present { sha256, mode, owner, group, .. } => {
                sha256 == sha
                    && *mode == Some(want_mode)
                    && owner.as_deref() == Some(want_owner)
                    && group.as_deref() == Some(want_group)
            }
        }
    }
    pub fn contents(&self) -> Option<&[u8]> {
        match self {
            FileState::Present { contents: Some(c), .. } => Some(c),
            _ => None,
        }
    }
}

/// The operator's clock around one probe, so that the host's clock offset can be computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeWindow {
    /// Nanoseconds since the Unix epoch when the probe was sent.
    pub sent_unix_ns: i128,
    /// Nanoseconds since the Unix epoch when its output had arrived.
    pub received_unix_ns: i128,
}

/// Why a probe's output could not be read. Names the section so the script can be fixed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FactsError {
    #[error("the probe output has no `{section}` section (the probe script did not finish)")]
    MissingSection { section: String },
    #[error("could not read `{section}` from the probe output: {problem}")]
    Malformed { section: String, problem: String },
}

#[cfg(test)]
mod tests;
