//! Transports: how kubeforge reaches a host. This module owns the [`Transport`] trait (run a
//! command, read/hash/put a file, forward a loopback port), the [`Connector`] trait that opens one
//! transport per host, the shared request/response types and [`TransportError`].
//!
//! Two implementations exist: [`ssh`] (russh, the real thing) and [`fake`] (an in-memory,
//! stateful host for unit tests). Transports decide nothing about the cluster: they execute what
//! the plan says, and report exactly what happened.
//!
//! Design decisions, documented here because the executor depends on them:
//! - The traits are **object-safe**: methods return [`TransportFuture`] (a boxed `Send` future),
//!   so the executor can hold `Arc<dyn Transport>` for real and fake hosts alike.
//! - Every command runs **as root**. When the login user is not root, the SSH transport wraps the
//!   argv in `sudo -n --` (and checks at connect time that sudo does not want a password).
//! - A command's argv is shell-quoted by the transport; callers never build shell strings unless
//!   they explicitly run `["sh", "-c", script]`.
//! - A command that ends without an exit status (connection lost, channel closed) is an error,
//!   never a success.
//! - A non-zero exit status is *not* an error of [`Transport::run`]: the caller decides (many
//!   probes use exit codes). [`CommandOutput::check`] turns it into [`TransportError::CommandFailed`].

pub mod auth;
pub mod bastion;
pub mod fake;
pub mod forward;
pub mod home;
pub mod known_hosts;
pub mod quote;
pub mod ssh;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use sha2::Digest;

pub use known_hosts::{HostKeyPolicy, KnownHosts};

/// The boxed future every transport method returns (keeps the traits object-safe).
pub type TransportFuture<'a, T> =
    Pin<Box<dyn Future<Output = Result<T, TransportError>> + Send + 'a>>;

/// One connected host. Cheap to share: wrap it in an `Arc` and use it from many tasks at once;
/// the implementation bounds how many commands run concurrently on one connection.
pub trait Transport: Send + Sync {
    /// The host's name as written in the spec (used in every error and event).
    fn host(&self) -> &str;

    /// Runs a command as root and returns its exit status, stdout and stderr.
    fn run<'a>(&'a self, cmd: &'a RemoteCommand) -> TransportFuture<'a, CommandOutput>;

    /// The whole file, or `None` when it does not exist.
    fn read_file<'a>(&'a self, path: &'a str) -> TransportFuture<'a, Option<Vec<u8>>>;

    /// The file's sha256 as lowercase hex, or `None` when it does not exist.
    fn file_sha256<'a>(&'a self, path: &'a str) -> TransportFuture<'a, Option<String>>;

    /// Writes a file atomically (temporary file in the same directory, chmod/chown, rename) unless
    /// its sha256, mode and owner already match. Missing parent directories are created (0755).
    fn put_file<'a>(&'a self, file: &'a PutFile) -> TransportFuture<'a, PutOutcome>;

    /// Opens a listener on the local loopback that tunnels each accepted connection to
    /// `remote` as the host itself reaches it (its loopback or its own address). The tunnel
    /// stops when the [`LocalForward`] is dropped.
    fn forward_to(&self, remote: SocketAddr) -> TransportFuture<'_, LocalForward>;

    /// [`Transport::forward_to`] the host's `127.0.0.1:remote_port`.
    fn forward_local(&self, remote_port: u16) -> TransportFuture<'_, LocalForward> {
        self.forward_to(SocketAddr::from(([127, 0, 0, 1], remote_port)))
    }
}

/// Opens transports. One call per host per run; the result is reused for the whole run.
pub trait Connector: Send + Sync {
    fn connect<'a>(&'a self, target: &'a SshTarget) -> TransportFuture<'a, Arc<dyn Transport>>;
}

/// Where and how to reach one host (resolved from the spec: host overrides applied).
#[derive(Debug, Clone, PartialEq)]
pub struct SshTarget {
    /// The host's name in the spec.
    pub host: String,
    /// Address or DNS name to connect to; also the name recorded in known_hosts.
    pub address: String,
    pub port: u16,
    pub user: String,
    /// `None`: ssh-agent, then `~/.ssh/id_ed25519`, `id_ecdsa`, `id_rsa`.
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: PathBuf,
    pub host_key_policy: HostKeyPolicy,
    pub bastion: Option<BastionTarget>,
}

/// A jump host (ProxyJump). Its host key is checked against the same known_hosts file and policy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BastionTarget {
    pub address: String,
    pub port: u16,
    pub user: String,
    pub identity_file: Option<PathBuf>,
}

impl SshTarget {
    /// The target for a validated spec host; `default_known_hosts` is `<state>/known_hosts`.
    /// `home` is the operator's home directory ([`home::home_from_env`] in the CLI): the path
    /// fields' `~/` is expanded from it here, the one place spec paths become local paths, and
    /// a `~` path with no usable home is an error naming the host and the field.
    pub fn from_host(
        host: &kubeforge_playbooks::model::Host,
        default_known_hosts: &std::path::Path,
        home: Option<&std::path::Path>,
    ) -> Result<Self, home::SpecPathError> {
        use kubeforge_playbooks::model::HostKeyPolicy as Spec;
        let ssh = &host.ssh;
        let name = host.name.to_string();
        let expand = |field: &'static str, path: &Option<PathBuf>| {
            path.as_deref().map(|p| home::expand_field(&name, field, p, home)).transpose()
        };
        let bastion = match &ssh.bastion {
            Some(b) => Some(BastionTarget {
                address: b.address.clone(),
                port: b.port,
                user: b.user.clone(),
                identity_file: expand("ssh.bastion.identityFile", &b.identity_file)?,
            }),
            None => None,
        };
        Ok(SshTarget {
            identity_file: expand("ssh.identityFile", &ssh.identity_file)?,
            known_hosts_file: expand("ssh.knownHostsFile", &ssh.known_hosts_file)?
                .unwrap_or_else(|| default_known_hosts.to_path_buf()),
            host: name,
            address: host.address.to_string(),
            port: ssh.port,
            user: ssh.user.clone(),
            host_key_policy: match ssh.host_key_policy {
                Spec::Strict => HostKeyPolicy::Strict,
                Spec::AcceptNew => HostKeyPolicy::AcceptNew,
            },
            bastion,
        })
    }

    /// Whether commands must be wrapped in `sudo -n`.
    pub fn needs_sudo(&self) -> bool {
        self.user != "root"
    }
}

/// Every host's [`SshTarget`], with `~/` expanded from `$HOME`; all hosts whose paths cannot be
/// expanded are reported at once, before anything connects.
pub fn ssh_targets(
    cluster: &kubeforge_playbooks::model::Cluster,
    default_known_hosts: &std::path::Path,
) -> miette::Result<Vec<SshTarget>> {
    let home = home::home_from_env();
    let (mut targets, mut problems) = (Vec::new(), Vec::new());
    for host in &cluster.hosts {
        match SshTarget::from_host(host, default_known_hosts, home.as_deref()) {
            Ok(t) => targets.push(t),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if problems.is_empty() {
        Ok(targets)
    } else {
        Err(miette::miette!(
            help = "kubeforge expands `~/` in ssh.identityFile, ssh.knownHostsFile and \
                    ssh.bastion.identityFile from HOME; nothing was connected to",
            "{}",
            problems.join("\n")
        ))
    }
}

/// A command to run on a host, as root.
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteCommand {
    /// Program and arguments; quoted by the transport.
    pub argv: Vec<String>,
    /// Bytes fed to the command's stdin (then EOF). `None`: stdin is closed at once.
    pub stdin: Option<Vec<u8>>,
    /// `None`: the connector's default command timeout.
    pub timeout: Option<Duration>,
    /// The stdin holds a secret: never log or print it (the argv must never hold one).
    pub secret_stdin: bool,
}

impl RemoteCommand {
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RemoteCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            stdin: None,
            timeout: None,
            secret_stdin: false,
        }
    }

    /// `sh -c SCRIPT`: for probes that need pipes or redirections.
    pub fn shell(script: impl Into<String>) -> Self {
        RemoteCommand::new(["sh".to_string(), "-c".to_string(), script.into()])
    }

    pub fn with_stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }

    pub fn with_secret_stdin(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self.secret_stdin = true;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The argv as one shell-quoted line (what is sent over SSH, before any sudo wrapping).
    pub fn shell_line(&self) -> String {
        quote::join(&self.argv)
    }
}

impl fmt::Debug for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stdin = match (&self.stdin, self.secret_stdin) {
            (None, _) => "none".to_string(),
            (Some(b), false) => format!("{} bytes", b.len()),
            (Some(_), true) => "<redacted>".to_string(),
        };
        f.debug_struct("RemoteCommand")
            .field("argv", &self.argv)
            .field("stdin", &stdin)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl fmt::Display for RemoteCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shell_line())
    }
}

/// What a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandOutput {
    pub exit_status: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl CommandOutput {
    pub fn success(&self) -> bool {
        self.exit_status == 0
    }

    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// The last lines of stderr (at most `STDERR_TAIL_LINES`), for error messages.
    pub fn stderr_tail(&self) -> String {
        tail(&self.stderr)
    }

    /// `Ok(self)` on exit status 0, else [`TransportError::CommandFailed`].
    pub fn check(self, host: &str, cmd: &RemoteCommand) -> Result<CommandOutput, TransportError> {
        if self.success() {
            Ok(self)
        } else {
            Err(TransportError::CommandFailed {
                host: host.to_string(),
                command: cmd.shell_line(),
                exit_status: self.exit_status,
                stderr_tail: self.stderr_tail(),
            })
        }
    }
}

/// How many stderr lines errors quote.
pub const STDERR_TAIL_LINES: usize = 10;

/// The last [`STDERR_TAIL_LINES`] lines of `bytes`, lossily decoded, trimmed.
pub fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let lines: Vec<&str> = text.trim_end().lines().collect();
    let start = lines.len().saturating_sub(STDERR_TAIL_LINES);
    lines[start..].join("\n")
}

/// A file to place on a host.
#[derive(Clone, PartialEq, Eq)]
pub struct PutFile {
    /// Absolute path on the host.
    pub path: String,
    pub contents: FileContents,
    /// Permission bits, e.g. `0o644`.
    pub mode: u32,
    pub owner: String,
    pub group: String,
    /// The contents are secret: never log, print or diff them.
    pub secret: bool,
}

impl PutFile {
    /// A root-owned file from bytes.
    pub fn bytes(path: impl Into<String>, bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        PutFile {
            path: path.into(),
            contents: FileContents::Bytes(Arc::from(bytes.into())),
            mode,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
        }
    }

    pub fn owned_by(mut self, owner: impl Into<String>, group: impl Into<String>) -> Self {
        self.owner = owner.into();
        self.group = group.into();
        self
    }
}

impl fmt::Debug for PutFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutFile")
            .field("path", &self.path)
            .field("contents", &self.contents)
            .field("mode", &format_args!("{:o}", self.mode))
            .field("owner", &self.owner)
            .field("group", &self.group)
            .field("secret", &self.secret)
            .finish()
    }
}

/// A file's bytes: in memory (rendered configs) or a local file streamed in chunks (binaries).
#[derive(Clone, PartialEq, Eq)]
pub enum FileContents {
    Bytes(Arc<[u8]>),
    LocalFile(PathBuf),
}

impl fmt::Debug for FileContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FileContents::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            FileContents::LocalFile(p) => write!(f, "LocalFile({})", p.display()),
        }
    }
}

impl FileContents {
    /// The sha256 (lowercase hex) of the contents; local files are hashed in chunks.
    pub fn sha256(&self) -> std::io::Result<String> {
        match self {
            FileContents::Bytes(b) => Ok(sha256_hex(b)),
            FileContents::LocalFile(path) => {
                use std::io::Read;
                let mut file = std::fs::File::open(path)?;
                let mut hasher = sha2::Sha256::new();
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = file.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
                Ok(hex(&hasher.finalize()))
            }
        }
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// What [`Transport::put_file`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// Contents, mode and owner already matched; nothing was touched.
    Unchanged,
    /// Contents matched; only mode and/or owner were corrected.
    MetadataChanged,
    /// The file was (re)written.
    Written,
}

/// A running local port forward; dropping it stops the listener and all its tunnels.
#[derive(Debug)]
pub struct LocalForward {
    local_addr: SocketAddr,
    _guard: Option<forward::AbortOnDrop>,
}

impl LocalForward {
    /// Address to connect to (always on 127.0.0.1).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub(crate) fn new(local_addr: SocketAddr, guard: Option<forward::AbortOnDrop>) -> Self {
        LocalForward { local_addr, _guard: guard }
    }
}

/// Everything that can go wrong on a transport. Each variant names the host and the operation;
/// messages say what to do next where there is something to do.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("{host}: cannot connect to {addr}")]
    Connect {
        host: String,
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{host}: no SSH connection to {addr} within {after:?}; is the machine up and the port open?"
    )]
    ConnectTimeout { host: String, addr: String, after: Duration },
    #[error(
        "{host}: host key of {known_hosts_name} is not in {file}; hostKeyPolicy is strict. Verify the \
         fingerprint {offered} out of band, then add it (ssh-keyscan -p PORT ADDRESS >> FILE) or use \
         hostKeyPolicy: accept-new"
    )]
    HostKeyUnknown { host: String, known_hosts_name: String, file: PathBuf, offered: String },
    /// Boxed: the details are large and this error is rare.
    #[error("{0}")]
    HostKeyChanged(Box<HostKeyChange>),
    #[error("{host}: host key {offered} is marked @revoked in {file}:{line}; refusing to connect")]
    HostKeyRevoked { host: String, file: PathBuf, line: usize, offered: String },
    #[error("{file}: cannot use the known_hosts file: {detail}")]
    KnownHostsFile { file: PathBuf, detail: String },
    #[error(
        "{host}: SSH authentication as {user} failed (tried: {tried}); add the key to ssh-agent or set identityFile"
    )]
    Auth { host: String, user: String, tried: String },
    #[error("{file}: cannot load the private key: {detail}")]
    Key { file: PathBuf, detail: String },
    #[error(
        "{host}: user {user} needs a password for sudo; kubeforge runs `sudo -n`. Allow passwordless sudo \
         (e.g. `{user} ALL=(ALL) NOPASSWD:ALL` in /etc/sudoers.d/kubeforge) or connect as root"
    )]
    SudoPasswordRequired { host: String, user: String },
    #[error("{host}: `{command}` did not finish within {after:?} and was abandoned")]
    CommandTimeout { host: String, command: String, after: Duration },
    #[error(
        "{host}: `{command}` ended without an exit status (connection lost or command killed by a signal {signal})"
    )]
    NoExitStatus { host: String, command: String, signal: String },
    #[error("{host}: `{command}` exited with status {exit_status}{}", stderr_suffix(stderr_tail))]
    CommandFailed { host: String, command: String, exit_status: i32, stderr_tail: String },
    #[error("{host}: {operation} failed: {detail}")]
    Ssh { host: String, operation: String, detail: String },
    /// The host refused a forward to `target` because nothing listens there.
    #[error("{host}: nothing listens on {target} (the host refused the forward)")]
    ForwardRefused { host: String, target: SocketAddr },
    #[error("{host}: {operation} failed")]
    Io {
        host: String,
        operation: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{host}: {operation}: {detail}")]
    Protocol { host: String, operation: String, detail: String },
}

/// A host key that differs from the recorded one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host}: HOST KEY CHANGED for {known_hosts_name}: {file}:{line} records {expected}, the server \
     offered {offered}. This may be a man-in-the-middle attack, the machine was reinstalled, or the \
     spec gives this host another machine's address. If the change is expected, remove the old entry with `ssh-keygen -R '{known_hosts_name}' -f {file}` \
     and connect again"
)]
pub struct HostKeyChange {
    pub host: String,
    pub known_hosts_name: String,
    pub file: PathBuf,
    pub line: usize,
    /// Fingerprint (`SHA256:…`) of the recorded key.
    pub expected: String,
    /// Fingerprint of the key the server offered.
    pub offered: String,
}

fn stderr_suffix(tail: &str) -> String {
    if tail.is_empty() { String::new() } else { format!("; stderr:\n{tail}") }
}

impl TransportError {
    /// The host this error is about, when there is one.
    pub fn host(&self) -> Option<&str> {
        use TransportError::*;
        match self {
            Connect { host, .. }
            | ConnectTimeout { host, .. }
            | HostKeyUnknown { host, .. }
            | HostKeyRevoked { host, .. }
            | Auth { host, .. }
            | SudoPasswordRequired { host, .. }
            | CommandTimeout { host, .. }
            | NoExitStatus { host, .. }
            | CommandFailed { host, .. }
            | Ssh { host, .. }
            | ForwardRefused { host, .. }
            | Io { host, .. }
            | Protocol { host, .. } => Some(host),
            HostKeyChanged(change) => Some(&change.host),
            KnownHostsFile { .. } | Key { .. } => None,
        }
    }

    /// True when the server's host key was refused: the machine may not be the one the spec
    /// means.
    pub fn is_host_key_refusal(&self) -> bool {
        matches!(
            self,
            TransportError::HostKeyChanged(_)
                | TransportError::HostKeyRevoked { .. }
                | TransportError::HostKeyUnknown { .. }
        )
    }

    /// True when the host could not be reached at all (as opposed to a command failing on it).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TransportError::Connect { .. } | TransportError::ConnectTimeout { .. })
    }
}

/// Timeouts and limits for SSH connections.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// TCP connect + SSH handshake + authentication (russh has none of its own).
    pub connect_timeout: Duration,
    /// Keepalive period; must stay well below `inactivity_timeout` or long commands are cut off.
    pub keepalive_interval: Duration,
    /// Unanswered keepalives before the connection counts as dead.
    pub keepalive_max: usize,
    /// A connection with no traffic at all (keepalive replies count) for this long is closed.
    pub inactivity_timeout: Duration,
    /// For commands that set no timeout of their own.
    pub default_command_timeout: Duration,
    /// Channels open at once per connection (OpenSSH's MaxSessions defaults to 10).
    pub max_channels_per_connection: usize,
    /// The ssh-agent socket; by default `$SSH_AUTH_SOCK`. `None`: no agent.
    pub agent_socket: Option<PathBuf>,
    /// Where `id_ed25519`, `id_ecdsa` and `id_rsa` are looked for when a host names no
    /// identity file; by default `$HOME/.ssh`.
    pub default_key_dir: Option<PathBuf>,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            connect_timeout: Duration::from_secs(15),
            keepalive_interval: Duration::from_secs(10),
            keepalive_max: 3,
            inactivity_timeout: Duration::from_secs(60),
            default_command_timeout: Duration::from_secs(600),
            max_channels_per_connection: 8,
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            default_key_dir: home::home_from_env()
                .filter(|h| h.is_absolute())
                .map(|h| h.join(".ssh")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_tail_keeps_last_lines() {
        let text: String = (1..=15).map(|i| format!("line {i}\n")).collect();
        let t = tail(text.as_bytes());
        assert!(t.starts_with("line 6\n"), "{t}");
        assert!(t.ends_with("line 15"), "{t}");
    }

    #[test]
    fn secret_stdin_is_redacted_in_debug() {
        let cmd = RemoteCommand::new(["tee", "/x"]).with_secret_stdin(b"hunter2".to_vec());
        let shown = format!("{cmd:?}");
        assert!(!shown.contains("hunter2") && shown.contains("redacted"), "{shown}");
    }

    #[test]
    fn check_names_host_command_status_and_stderr() {
        let cmd = RemoteCommand::new(["false", "a b"]);
        let out = CommandOutput { exit_status: 3, stdout: vec![], stderr: b"boom\n".to_vec() };
        let err = out.check("cp1", &cmd).unwrap_err().to_string();
        assert_eq!(err, "cp1: `false 'a b'` exited with status 3; stderr:\nboom");
    }

    /// The spec `kubeforge init` writes, with a knownHostsFile and a bastion added.
    fn init_cluster(extra_ssh: &str) -> kubeforge_playbooks::model::Cluster {
        let text = crate::commands::init::STACKED.replace(
            "    hostKeyPolicy: accept-new",
            &format!("    hostKeyPolicy: accept-new\n{extra_ssh}"),
        );
        kubeforge_playbooks::spec::load_str(&text, "init.yaml").expect("the init spec validates")
    }

    #[test]
    fn from_host_expands_every_path_field_from_home() {
        let cluster = init_cluster(
            "    knownHostsFile: ~/.ssh/kubeforge_known_hosts\n    bastion: {address: 10.0.0.9, identityFile: ~/keys/jump}",
        );
        let home = std::path::Path::new("/home/op");
        let t = SshTarget::from_host(&cluster.hosts[0], "/state/known_hosts".as_ref(), Some(home))
            .unwrap();
        assert_eq!(t.identity_file.as_deref(), Some("/home/op/.ssh/id_ed25519".as_ref()));
        assert_eq!(t.known_hosts_file, std::path::Path::new("/home/op/.ssh/kubeforge_known_hosts"));
        let b = t.bastion.unwrap();
        assert_eq!(b.identity_file.as_deref(), Some("/home/op/keys/jump".as_ref()));
        // No knownHostsFile: the state dir's file, as given.
        let plain = init_cluster("");
        let t = SshTarget::from_host(&plain.hosts[0], "/state/known_hosts".as_ref(), Some(home))
            .unwrap();
        assert_eq!(t.known_hosts_file, std::path::Path::new("/state/known_hosts"));
    }

    #[test]
    fn from_host_without_home_names_the_host_and_field() {
        let cluster = init_cluster("    knownHostsFile: ~/kh");
        let err = SshTarget::from_host(&cluster.hosts[0], "/s/kh".as_ref(), None).unwrap_err();
        assert_eq!((err.host.as_str(), err.field), ("cp1", "ssh.identityFile"));
        assert!(err.to_string().contains("HOME is not set"), "{err}");
        // An absolute identity file: the knownHostsFile is the one named.
        let text = crate::commands::init::STACKED.replace("~/.ssh/id_ed25519", "/keys/id").replace(
            "    hostKeyPolicy: accept-new",
            "    hostKeyPolicy: accept-new\n    knownHostsFile: ~/kh",
        );
        let cluster = kubeforge_playbooks::spec::load_str(&text, "x.yaml").unwrap();
        let err = SshTarget::from_host(&cluster.hosts[0], "/s/kh".as_ref(), Some("".as_ref()))
            .unwrap_err();
        assert_eq!(err.field, "ssh.knownHostsFile");
    }

    #[test]
    fn sha256_of_bytes_and_local_file_agree() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"hello").unwrap();
        let a = FileContents::Bytes(Arc::from(&b"hello"[..])).sha256().unwrap();
        let b = FileContents::LocalFile(p).sha256().unwrap();
        assert_eq!(a, b);
        assert_eq!(a, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    }
}
