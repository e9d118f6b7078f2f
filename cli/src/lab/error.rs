//! The lab's error type: every failure names the lab, machine, file or command involved and says
//! what to do next. Holds no logic.

use std::path::PathBuf;

/// What went wrong while building, booting, inspecting or removing a lab.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum LabError {
    #[error("`kubeforge lab` must run as root (it mounts file systems and creates network links)")]
    #[diagnostic(help("run it again with sudo, or as root"))]
    NotRoot,

    #[error("`{tool}` is not installed")]
    #[diagnostic(help("install it with `apt-get install -y {package}`"))]
    MissingTool { tool: &'static str, package: &'static str },

    #[error("lab name `{name}` is not usable: {reason}")]
    #[diagnostic(help(
        "use 1–32 characters of lower-case letters, digits and '-', starting with a letter and not ending with '-'"
    ))]
    InvalidName { name: String, reason: &'static str },

    #[error("lab size not supported: {0}")]
    #[diagnostic(help(
        "use 1–19 control planes, 0–149 workers and 0–7 etcd hosts; the etcd members (etcd hosts \
         with --etcd, control planes otherwise) must be 1, 3, 5 or 7"
    ))]
    InvalidSize(String),

    #[error("lab `{name}` already exists ({dir})")]
    #[diagnostic(help(
        "look at it with `kubeforge lab status --name {name}`, or remove it with `kubeforge lab down --name {name}`"
    ))]
    AlreadyUp { name: String, dir: PathBuf },

    #[error("there is no lab `{name}` (no state file at {state})")]
    #[diagnostic(help("create it with `kubeforge lab up --name {name}`"))]
    NotUp { name: String, state: PathBuf },

    #[error("lab `{lab}` has no machine `{node}` (it has: {known})")]
    #[diagnostic(help("use one of the machine names that `kubeforge lab status` lists"))]
    UnknownNode { lab: String, node: String, known: String },

    #[error("no free /24 for lab `{name}` in 10.200.0.0/13: every candidate overlaps a host route")]
    #[diagnostic(help("remove labs you no longer need with `kubeforge lab down --name NAME`"))]
    NoFreeSubnet { name: String },

    #[error("{path} exists and was not written by `kubeforge lab up`")]
    #[diagnostic(help("move it aside, or pass another file with --spec-out"))]
    SpecExists { path: PathBuf },

    #[error("no Debian mirror found in the host's apt sources ({searched})")]
    #[diagnostic(help(
        "add a `deb` source for bookworm to /etc/apt/sources.list.d/, or set KUBEFORGE_LAB_MIRROR to a Debian mirror URL"
    ))]
    NoMirror { searched: String },

    #[error("{what} failed: `{argv}` exited with {status}\n{stderr_tail}")]
    #[diagnostic(help("{help}"))]
    Command { what: String, argv: String, status: String, stderr_tail: String, help: String },

    #[error("cannot start `{argv}` ({what})")]
    #[diagnostic(help("check that the program is installed and executable"))]
    Spawn {
        what: String,
        argv: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("the lab state file {path} is damaged: {reason}")]
    #[diagnostic(help(
        "remove the lab with `kubeforge lab down --name NAME` (it also cleans up without a readable state file)"
    ))]
    BadState { path: PathBuf, reason: String },

    #[error("{what} found nothing usable: {detail}")]
    Artifact { what: String, detail: String },

    #[error(
        "machine `{node}` of lab `{lab}` did not become ready within {secs} s (last probe: {last})"
    )]
    #[diagnostic(help(
        "its console log is {}; `kubeforge lab status --name {lab}` shows its state, `kubeforge lab down --name {lab}` removes the lab",
        log.display()
    ))]
    NotReady { lab: String, node: String, secs: u64, last: String, log: PathBuf },

    #[error("the spec written to {path} does not validate: {detail}")]
    #[diagnostic(help("this is a bug in `kubeforge lab`; please report it with the spec file"))]
    SpecInvalid { path: PathBuf, detail: String },
}

impl LabError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LabError::Io { action, path: path.into(), source }
    }
}
