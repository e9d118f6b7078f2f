//! A stateful in-memory host for unit tests: files with modes and owners, command handlers with
//! their own state, injected failures, and a record of every operation. It implements the same
//! [`Transport`] and [`Connector`] traits as SSH, so the executor runs unchanged against it.
//! It is a fake, not a mock: it behaves (files written stay written, `put_file` skips unchanged
//! files), and it answers unknown commands like a shell would (exit 127), never with a canned "ok".
//!
//! ```
//! use kubeforge::transport::{fake::*, *};
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let host = FakeHost::new("cp1").with_coreutils();
//! host.on(Match::program("systemctl"), |_cmd, _files| CommandOutput::default());
//! let out = host.run(&RemoteCommand::new(["systemctl", "restart", "kubelet"])).await.unwrap();
//! assert!(out.success());
//! # });
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{
    CommandOutput, Connector, FileContents, LocalForward, PutFile, PutOutcome, RemoteCommand,
    SshTarget, Transport, TransportError, TransportFuture, sha256_hex,
};

/// One file on a fake host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeFile {
    pub bytes: Vec<u8>,
    pub mode: u32,
    pub owner: String,
    pub group: String,
}

impl FakeFile {
    /// A root-owned file.
    pub fn new(bytes: impl Into<Vec<u8>>, mode: u32) -> Self {
        FakeFile { bytes: bytes.into(), mode, owner: "root".into(), group: "root".into() }
    }
}

/// The fake host's filesystem (flat: directories are implied by paths).
pub type FakeFiles = BTreeMap<String, FakeFile>;

/// Which commands a handler or an injected failure applies to.
pub enum Match {
    /// `argv[0]` equals this.
    Program(String),
    /// The argv starts with these words.
    Prefix(Vec<String>),
    /// The shell-quoted command line contains this text.
    Contains(String),
    /// Any command.
    Any,
    /// A predicate of your own.
    Custom(Box<dyn Fn(&RemoteCommand) -> bool + Send>),
}

impl Match {
    pub fn program(p: impl Into<String>) -> Self {
        Match::Program(p.into())
    }
    pub fn prefix<I: IntoIterator<Item = S>, S: Into<String>>(words: I) -> Self {
        Match::Prefix(words.into_iter().map(Into::into).collect())
    }
    pub fn contains(s: impl Into<String>) -> Self {
        Match::Contains(s.into())
    }

    fn matches(&self, cmd: &RemoteCommand) -> bool {
        match self {
            Match::Program(p) => cmd.argv.first() == Some(p),
            Match::Prefix(words) => cmd.argv.starts_with(words),
            Match::Contains(s) => cmd.shell_line().contains(s.as_str()),
            Match::Any => true,
            Match::Custom(f) => f(cmd),
        }
    }
}

/// A failure to inject into a command (or, via [`Failure::Exit`] on a put, a file write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The command exits with this status and stderr (stdout empty).
    Exit { status: i32, stderr: String },
    /// The command exceeds its timeout ([`TransportError::CommandTimeout`], returned at once).
    Timeout,
    /// The connection drops mid-command ([`TransportError::NoExitStatus`]).
    ConnectionLost,
}

impl Failure {
    pub fn exit(status: i32, stderr: impl Into<String>) -> Self {
        Failure::Exit { status, stderr: stderr.into() }
    }
}

/// A command handler: gets the command and the host's files, returns the command's output.
pub type Handler = Box<dyn FnMut(&RemoteCommand, &mut FakeFiles) -> CommandOutput + Send>;

/// One operation the fake saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Run { argv: Vec<String>, stdin: Option<Vec<u8>> },
    ReadFile { path: String },
    FileSha256 { path: String },
    PutFile { path: String, outcome: Option<PutOutcome> },
    Forward { remote: SocketAddr },
}

struct Injection {
    matcher: Match,
    failure: Failure,
    /// `None`: every time.
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    files: FakeFiles,
    handlers: Vec<(Match, Handler)>,
    injections: Vec<Injection>,
    put_failures: BTreeMap<String, Failure>,
    ports: BTreeMap<SocketAddr, SocketAddr>,
    log: Vec<Recorded>,
}

/// A fake host. Clones share state, so a test keeps one clone to inspect while the code under
/// test uses another (e.g. through [`FakeConnector`]).
#[derive(Clone)]
pub struct FakeHost {
    name: String,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for FakeHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHost").field("name", &self.name).finish_non_exhaustive()
    }
}

impl FakeHost {
    pub fn new(name: impl Into<String>) -> Self {
        FakeHost { name: name.into(), state: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking handler poisons the lock; the state is still consistent enough for a test.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a file.
    pub fn with_file(self, path: impl Into<String>, file: FakeFile) -> Self {
        self.lock().files.insert(path.into(), file);
        self
    }

    /// Registers the built-in handlers for `true`, `false`, `cat FILE`, `rm [-f] FILE...`,
    /// `test -e|-f FILE` and `mkdir [-p] DIR` (a no-op: directories are implied).
    pub fn with_coreutils(self) -> Self {
        self.on(Match::program("true"), |_, _| exit(0, "", ""));
        self.on(Match::program("false"), |_, _| exit(1, "", ""));
        self.on(Match::program("mkdir"), |_, _| exit(0, "", ""));
        self.on(Match::program("cat"), |cmd, files| {
            let mut out = Vec::new();
            for path in cmd.argv.iter().skip(1).filter(|a| !a.starts_with('-')) {
                match files.get(path) {
                    Some(f) => out.extend_from_slice(&f.bytes),
                    None => {
                        return exit(1, "", &format!("cat: {path}: No such file or directory\n"));
                    }
                }
            }
            CommandOutput { exit_status: 0, stdout: out, stderr: Vec::new() }
        });
        self.on(Match::program("rm"), |cmd, files| {
            let force = cmd.argv.iter().any(|a| a.starts_with('-') && a.contains('f'));
            for path in cmd.argv.iter().skip(1).filter(|a| !a.starts_with('-')) {
                if files.remove(path).is_none() && !force {
                    return exit(
                        1,
                        "",
                        &format!("rm: cannot remove '{path}': No such file or directory\n"),
                    );
                }
            }
            exit(0, "", "")
        });
        self.on(Match::program("test"), |cmd, files| match cmd.argv.get(1..) {
            Some([flag, path]) if flag == "-e" || flag == "-f" => {
                exit(i32::from(!files.contains_key(path)), "", "")
            }
            _ => exit(2, "", "test: unsupported by the fake\n"),
        });
        self
    }

    /// Registers a handler; the most recently registered matching handler wins.
    pub fn on<F>(&self, matcher: Match, handler: F) -> &Self
    where
        F: FnMut(&RemoteCommand, &mut FakeFiles) -> CommandOutput + Send + 'static,
    {
        self.lock().handlers.push((matcher, Box::new(handler)));
        self
    }

    /// Makes matching commands fail, `times` times (`None`: always). Checked before handlers.
    pub fn fail(&self, matcher: Match, failure: Failure, times: Option<usize>) -> &Self {
        self.lock().injections.push(Injection { matcher, failure, remaining: times });
        self
    }

    /// Makes every `put_file` to `path` fail this way (the file stays as it was).
    pub fn fail_put(&self, path: impl Into<String>, failure: Failure) -> &Self {
        self.lock().put_failures.insert(path.into(), failure);
        self
    }

    /// Lets [`Transport::forward_local`] to `remote_port` reach `local` (e.g. a test server).
    pub fn expose_port(&self, remote_port: u16, local: SocketAddr) -> &Self {
        self.expose(SocketAddr::from(([127, 0, 0, 1], remote_port)), local)
    }

    /// Lets [`Transport::forward_to`] to `remote` (an address as seen from the host) reach `local`.
    pub fn expose(&self, remote: SocketAddr, local: SocketAddr) -> &Self {
        self.lock().ports.insert(remote, local);
        self
    }

    /// A copy of one file.
    pub fn file(&self, path: &str) -> Option<FakeFile> {
        self.lock().files.get(path).cloned()
    }

    /// A copy of the whole filesystem.
    pub fn files(&self) -> FakeFiles {
        self.lock().files.clone()
    }

    /// Every operation so far, in order.
    pub fn log(&self) -> Vec<Recorded> {
        self.lock().log.clone()
    }

    /// The argv of every command run so far, in order.
    pub fn commands(&self) -> Vec<Vec<String>> {
        self.lock()
            .log
            .iter()
            .filter_map(|r| match r {
                Recorded::Run { argv, .. } => Some(argv.clone()),
                _ => None,
            })
            .collect()
    }

    /// Forgets the operation log (state stays).
    pub fn clear_log(&self) {
        self.lock().log.clear();
    }

    fn failure_error(
        &self,
        failure: &Failure,
        cmd_line: String,
        timeout: Option<Duration>,
    ) -> Result<CommandOutput, TransportError> {
        match failure {
            Failure::Exit { status, stderr } => Ok(exit(*status, "", stderr)),
            Failure::Timeout => Err(TransportError::CommandTimeout {
                host: self.name.clone(),
                command: cmd_line,
                after: timeout.unwrap_or(super::ConnectOptions::default().default_command_timeout),
            }),
            Failure::ConnectionLost => Err(TransportError::NoExitStatus {
                host: self.name.clone(),
                command: cmd_line,
                signal: "none".into(),
            }),
        }
    }

    fn run_now(&self, cmd: &RemoteCommand) -> Result<CommandOutput, TransportError> {
        let mut st = self.lock();
        st.log.push(Recorded::Run { argv: cmd.argv.clone(), stdin: cmd.stdin.clone() });
        let injected = st
            .injections
            .iter_mut()
            .rev()
            .find(|i| i.remaining != Some(0) && i.matcher.matches(cmd));
        if let Some(inj) = injected {
            if let Some(n) = inj.remaining.as_mut() {
                *n -= 1;
            }
            let failure = inj.failure.clone();
            drop(st);
            return self.failure_error(&failure, cmd.shell_line(), cmd.timeout);
        }
        let State { handlers, files, .. } = &mut *st;
        match handlers.iter_mut().rev().find(|(m, _)| m.matches(cmd)) {
            Some((_, handler)) => Ok(handler(cmd, files)),
            None => {
                let program = cmd.argv.first().map(String::as_str).unwrap_or("");
                Ok(exit(127, "", &format!("sh: 1: {program}: not found\n")))
            }
        }
    }

    fn put_now(&self, file: &PutFile) -> Result<PutOutcome, TransportError> {
        let bytes = match &file.contents {
            FileContents::Bytes(b) => b.to_vec(),
            FileContents::LocalFile(p) => {
                std::fs::read(p).map_err(|source| TransportError::Io {
                    host: self.name.clone(),
                    operation: format!("reading {} to upload it to {}", p.display(), file.path),
                    source,
                })?
            }
        };
        let mut st = self.lock();
        if let Some(failure) = st.put_failures.get(&file.path).cloned() {
            st.log.push(Recorded::PutFile { path: file.path.clone(), outcome: None });
            drop(st);
            let cmd_line = format!("put {}", file.path);
            let out = self.failure_error(&failure, cmd_line.clone(), None)?;
            return Err(TransportError::CommandFailed {
                host: self.name.clone(),
                command: cmd_line,
                exit_status: out.exit_status,
                stderr_tail: out.stderr_tail(),
            });
        }
        let outcome = match st.files.get_mut(&file.path) {
            Some(existing) if sha256_hex(&existing.bytes) == sha256_hex(&bytes) => {
                if existing.mode == file.mode
                    && existing.owner == file.owner
                    && existing.group == file.group
                {
                    PutOutcome::Unchanged
                } else {
                    existing.mode = file.mode;
                    existing.owner = file.owner.clone();
                    existing.group = file.group.clone();
                    PutOutcome::MetadataChanged
                }
            }
            _ => {
                let new = FakeFile {
                    bytes,
                    mode: file.mode,
                    owner: file.owner.clone(),
                    group: file.group.clone(),
                };
                st.files.insert(file.path.clone(), new);
                PutOutcome::Written
            }
        };
        st.log.push(Recorded::PutFile { path: file.path.clone(), outcome: Some(outcome) });
        Ok(outcome)
    }
}

/// A [`CommandOutput`] from text, for handlers.
pub fn exit(status: i32, stdout: &str, stderr: &str) -> CommandOutput {
    CommandOutput {
        exit_status: status,
        stdout: stdout.as_bytes().to_vec(),
        stderr: stderr.as_bytes().to_vec(),
    }
}

impl Transport for FakeHost {
    fn host(&self) -> &str {
        &self.name
    }

    fn run<'a>(&'a self, cmd: &'a RemoteCommand) -> TransportFuture<'a, CommandOutput> {
        Box::pin(async move { self.run_now(cmd) })
    }

    fn read_file<'a>(&'a self, path: &'a str) -> TransportFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            let mut st = self.lock();
            st.log.push(Recorded::ReadFile { path: path.to_string() });
            Ok(st.files.get(path).map(|f| f.bytes.clone()))
        })
    }

    fn file_sha256<'a>(&'a self, path: &'a str) -> TransportFuture<'a, Option<String>> {
        Box::pin(async move {
            let mut st = self.lock();
            st.log.push(Recorded::FileSha256 { path: path.to_string() });
            Ok(st.files.get(path).map(|f| sha256_hex(&f.bytes)))
        })
    }

    fn put_file<'a>(&'a self, file: &'a PutFile) -> TransportFuture<'a, PutOutcome> {
        Box::pin(async move { self.put_now(file) })
    }

    fn forward_to(&self, remote: SocketAddr) -> TransportFuture<'_, LocalForward> {
        Box::pin(async move {
            let mut st = self.lock();
            st.log.push(Recorded::Forward { remote });
            match st.ports.get(&remote) {
                Some(addr) => Ok(LocalForward::new(*addr, None)),
                None => {
                    Err(TransportError::ForwardRefused { host: self.name.clone(), target: remote })
                }
            }
        })
    }
}

/// How a fake connection attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectFailure {
    Refused,
    Timeout,
    /// Non-root user whose sudo wants a password.
    SudoPassword,
}

#[derive(Default)]
struct ConnectorState {
    hosts: BTreeMap<String, FakeHost>,
    failures: BTreeMap<String, ConnectFailure>,
    connects: BTreeMap<String, usize>,
}

/// Hands out [`FakeHost`]s by the target's host name; unknown hosts are refused.
#[derive(Clone, Default)]
pub struct FakeConnector {
    state: Arc<Mutex<ConnectorState>>,
}

impl std::fmt::Debug for FakeConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeConnector").finish_non_exhaustive()
    }
}

impl FakeConnector {
    pub fn new() -> Self {
        FakeConnector::default()
    }

    fn lock(&self) -> MutexGuard<'_, ConnectorState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a host (keyed by its name); returns it for inspection.
    pub fn add(&self, host: FakeHost) -> FakeHost {
        self.lock().hosts.insert(host.name.clone(), host.clone());
        host
    }

    pub fn host(&self, name: &str) -> Option<FakeHost> {
        self.lock().hosts.get(name).cloned()
    }

    /// Makes connecting to `name` fail this way from now on.
    pub fn fail_connect(&self, name: impl Into<String>, failure: ConnectFailure) {
        self.lock().failures.insert(name.into(), failure);
    }

    /// Lets `name` connect again.
    pub fn heal(&self, name: &str) {
        self.lock().failures.remove(name);
    }

    /// How many times `connect` was called for `name` (to check connection reuse).
    pub fn connect_count(&self, name: &str) -> usize {
        self.lock().connects.get(name).copied().unwrap_or(0)
    }
}

impl Connector for FakeConnector {
    fn connect<'a>(&'a self, target: &'a SshTarget) -> TransportFuture<'a, Arc<dyn Transport>> {
        Box::pin(async move {
            let mut st = self.lock();
            *st.connects.entry(target.host.clone()).or_default() += 1;
            let addr = format!("{}:{}", target.address, target.port);
            let host = target.host.clone();
            let failure = st.failures.get(&target.host).copied();
            match (st.hosts.get(&target.host), failure) {
                (Some(h), None) => Ok(Arc::new(h.clone()) as Arc<dyn Transport>),
                (None, _) | (Some(_), Some(ConnectFailure::Refused)) => {
                    Err(TransportError::Connect {
                        host,
                        addr,
                        source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
                    })
                }
                (Some(_), Some(ConnectFailure::Timeout)) => Err(TransportError::ConnectTimeout {
                    host,
                    addr,
                    after: super::ConnectOptions::default().connect_timeout,
                }),
                (Some(_), Some(ConnectFailure::SudoPassword)) => {
                    Err(TransportError::SudoPasswordRequired { host, user: target.user.clone() })
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::HostKeyPolicy;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    fn target(name: &str) -> SshTarget {
        SshTarget {
            host: name.into(),
            address: "192.0.2.10".into(),
            port: 22,
            user: "root".into(),
            identity_file: None,
            known_hosts_file: "/nonexistent/known_hosts".into(),
            host_key_policy: HostKeyPolicy::Strict,
            bastion: None,
        }
    }

    #[test]
    fn put_file_writes_then_skips_then_fixes_metadata() {
        rt().block_on(async {
            let host = FakeHost::new("cp1");
            let f = PutFile::bytes("/etc/x.conf", b"a=1\n".to_vec(), 0o644);
            assert_eq!(host.put_file(&f).await.unwrap(), PutOutcome::Written);
            assert_eq!(host.put_file(&f).await.unwrap(), PutOutcome::Unchanged);
            let g = PutFile { mode: 0o600, ..f.clone() }.owned_by("etcd", "etcd");
            assert_eq!(host.put_file(&g).await.unwrap(), PutOutcome::MetadataChanged);
            let stored = host.file("/etc/x.conf").unwrap();
            assert_eq!((stored.mode, stored.owner.as_str()), (0o600, "etcd"));
            let h =
                PutFile::bytes("/etc/x.conf", b"a=2\n".to_vec(), 0o600).owned_by("etcd", "etcd");
            assert_eq!(host.put_file(&h).await.unwrap(), PutOutcome::Written);
            assert_eq!(host.read_file("/etc/x.conf").await.unwrap().unwrap(), b"a=2\n");
            assert_eq!(
                host.file_sha256("/etc/x.conf").await.unwrap().unwrap(),
                sha256_hex(b"a=2\n")
            );
            assert_eq!(host.read_file("/nope").await.unwrap(), None);
            assert_eq!(host.file_sha256("/nope").await.unwrap(), None);
        });
    }

    #[test]
    fn handlers_keep_state_and_see_files() {
        rt().block_on(async {
            let host = FakeHost::new("w1").with_coreutils();
            // Two handlers sharing state: `start` flips what `is-active` reports.
            let started = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let set = started.clone();
            host.on(Match::prefix(["systemctl", "start"]), move |_, _| {
                set.store(true, std::sync::atomic::Ordering::SeqCst);
                exit(0, "", "")
            });
            host.on(Match::prefix(["systemctl", "is-active"]), move |_, _| {
                if started.load(std::sync::atomic::Ordering::SeqCst) {
                    exit(0, "active\n", "")
                } else {
                    exit(3, "inactive\n", "")
                }
            });
            let is_active = RemoteCommand::new(["systemctl", "is-active", "kubelet"]);
            assert_eq!(host.run(&is_active).await.unwrap().exit_status, 3);
            host.run(&RemoteCommand::new(["systemctl", "start", "kubelet"])).await.unwrap();
            assert_eq!(host.run(&is_active).await.unwrap().stdout_lossy(), "active\n");

            host.put_file(&PutFile::bytes("/tmp/a", b"x".to_vec(), 0o644)).await.unwrap();
            assert_eq!(
                host.run(&RemoteCommand::new(["cat", "/tmp/a"])).await.unwrap().stdout,
                b"x"
            );
            assert_eq!(
                host.run(&RemoteCommand::new(["test", "-e", "/tmp/a"])).await.unwrap().exit_status,
                0
            );
            host.run(&RemoteCommand::new(["rm", "-f", "/tmp/a"])).await.unwrap();
            assert_eq!(
                host.run(&RemoteCommand::new(["test", "-e", "/tmp/a"])).await.unwrap().exit_status,
                1
            );
            let unknown = host.run(&RemoteCommand::new(["kubeadm", "init"])).await.unwrap();
            assert_eq!(unknown.exit_status, 127);
            assert!(unknown.stderr_lossy().contains("kubeadm: not found"));
            assert_eq!(host.commands().len(), 8);
            assert_eq!(host.commands()[1], vec!["systemctl", "start", "kubelet"]);
        });
    }

    #[test]
    fn injected_failures_apply_the_given_number_of_times() {
        rt().block_on(async {
            let host = FakeHost::new("cp2").with_coreutils();
            host.fail(Match::program("true"), Failure::exit(5, "disk full\n"), Some(1));
            let t = RemoteCommand::new(["true"]);
            let first = host.run(&t).await.unwrap();
            assert_eq!((first.exit_status, first.stderr_lossy().as_str()), (5, "disk full\n"));
            assert!(host.run(&t).await.unwrap().success());

            host.fail(Match::contains("sleep"), Failure::Timeout, None);
            let sleep = RemoteCommand::new(["sleep", "100"]).with_timeout(Duration::from_secs(2));
            let err = host.run(&sleep).await.unwrap_err();
            assert!(matches!(err, TransportError::CommandTimeout { after, .. } if after == Duration::from_secs(2)), "{err}");
            assert!(host.run(&sleep).await.is_err());

            host.fail(Match::Any, Failure::ConnectionLost, Some(1));
            let err = host.run(&t).await.unwrap_err();
            assert!(matches!(err, TransportError::NoExitStatus { .. }), "{err}");

            host.fail_put("/etc/y", Failure::exit(1, "read-only file system"));
            let err = host.put_file(&PutFile::bytes("/etc/y", b"1".to_vec(), 0o644)).await.unwrap_err();
            assert!(err.to_string().contains("read-only file system"), "{err}");
            assert_eq!(host.file("/etc/y"), None);
        });
    }

    #[test]
    fn connector_refuses_unknown_and_failed_hosts_and_shares_state() {
        rt().block_on(async {
            let c = FakeConnector::new();
            let cp1 = c.add(FakeHost::new("cp1"));
            c.add(FakeHost::new("cp2"));
            c.fail_connect("cp2", ConnectFailure::Timeout);
            let t = c.connect(&target("cp1")).await.unwrap();
            t.put_file(&PutFile::bytes("/f", b"1".to_vec(), 0o600)).await.unwrap();
            assert!(cp1.file("/f").is_some(), "state is shared between clones");
            let err = c.connect(&target("cp2")).await.err().unwrap();
            assert!(matches!(err, TransportError::ConnectTimeout { .. }) && err.is_unreachable());
            let err = c.connect(&target("ghost")).await.err().unwrap();
            assert!(matches!(err, TransportError::Connect { .. }));
            c.heal("cp2");
            assert!(c.connect(&target("cp2")).await.is_ok());
            assert_eq!(c.connect_count("cp2"), 2);
            c.fail_connect("cp1", ConnectFailure::SudoPassword);
            let err = c.connect(&target("cp1")).await.err().unwrap();
            assert!(err.to_string().contains("NOPASSWD"), "{err}");
        });
    }

    #[test]
    fn forward_reaches_exposed_ports_only() {
        rt().block_on(async {
            let host = FakeHost::new("e1");
            let addr: SocketAddr = "127.0.0.1:12379".parse().unwrap();
            host.expose_port(2379, addr);
            assert_eq!(host.forward_local(2379).await.unwrap().local_addr(), addr);
            assert!(host.forward_local(2380).await.is_err());
        });
    }
}
