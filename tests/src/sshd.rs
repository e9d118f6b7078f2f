//! A real OpenSSH `sshd` for tests: its own config, host key, per-user authorized_keys and pid
//! file in a temporary directory, listening on a free 127.0.0.1 port (or a given loopback address and port). Dropping it kills the
//! daemon and every session process it forked, then removes the directory. Needs root (sshd's
//! privilege separation) and `/run/sshd`, which it creates.
//!
//! Also: [`keygen`] for client keys and [`ensure_user`] for the non-root-with-sudo tests.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

/// A key pair written by `ssh-keygen`.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The `.pub` line (`type base64 comment`).
    pub public: String,
}

/// Generates a key pair (`kind`: ed25519, rsa, ecdsa) at `path` with no passphrase.
pub fn keygen(path: &Path, kind: &str) -> KeyPair {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", "kubeforge-test", "-f"]).arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "3072"]);
    }
    let out = cmd.output().expect("ssh-keygen runs (openssh-client installed?)");
    assert!(out.status.success(), "ssh-keygen failed: {}", String::from_utf8_lossy(&out.stderr));
    let public = std::fs::read_to_string(path.with_extension("pub"))
        .or_else(|_| std::fs::read_to_string(format!("{}.pub", path.display())))
        .expect("public key written");
    KeyPair { private: path.to_path_buf(), public: public.trim().to_string() }
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("bind 127.0.0.1:0").port()
}

/// How a test user's sudo behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sudo {
    NoPassword,
    PasswordRequired,
}

/// Makes sure a local user exists (login allowed by key only) with the given sudo rule in
/// `/etc/sudoers.d/kubeforge-test-<user>`. Idempotent; needs root and the `sudo` package.
pub fn ensure_user(name: &str, sudo: Sudo) {
    let exists = Command::new("id")
        .arg(name)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !exists {
        let st = Command::new("useradd")
            .args(["-m", "-s", "/bin/sh", name])
            .status()
            .expect("useradd runs");
        assert!(st.success(), "useradd {name} failed");
    }
    // '*' (not '!'): sshd without PAM refuses accounts whose password field marks them locked.
    let st = Command::new("usermod").args(["-p", "*", name]).status().expect("usermod runs");
    assert!(st.success(), "usermod {name} failed");
    assert!(
        Path::new("/usr/bin/sudo").exists(),
        "the sudo package is needed (apt-get install -y sudo)"
    );
    let rule = match sudo {
        Sudo::NoPassword => format!("{name} ALL=(ALL) NOPASSWD: ALL\n"),
        Sudo::PasswordRequired => format!("{name} ALL=(ALL) ALL\n"),
    };
    let path = format!("/etc/sudoers.d/kubeforge-test-{name}");
    std::fs::write(&path, rule).expect("write sudoers drop-in");
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o440))
        .expect("chmod sudoers drop-in");
}

/// Options for [`Sshd::start`].
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `(user, authorized_keys lines)`.
    pub authorized: Vec<(String, Vec<String>)>,
    /// Listen on this port instead of a free one (to restart "the same host" with a new key).
    pub port: Option<u16>,
    /// Use this host key instead of generating one.
    pub host_key: Option<PathBuf>,
    /// Extra sshd_config lines.
    pub extra_config: Vec<String>,
    /// Listen on this loopback address instead of 127.0.0.1 (Linux routes all of 127/8 to
    /// `lo`), so several "hosts" can share one port as a spec's hosts do.
    pub listen_address: Option<String>,
}

/// A running sshd; killed and cleaned up on drop.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
    host_key: PathBuf,
    log: Arc<Mutex<String>>,
}

impl Sshd {
    /// Starts sshd and returns once it listens (it says so on stderr; no sleeping).
    pub fn start(opts: SshdOptions) -> Sshd {
        std::fs::create_dir_all("/run/sshd").expect("create /run/sshd (run the tests as root)");
        let dir = tempfile::tempdir().expect("temp dir");
        let host_key = match &opts.host_key {
            Some(k) => k.clone(),
            None => keygen(&dir.path().join("ssh_host_ed25519_key"), "ed25519").private,
        };
        let keys_dir = dir.path().join("authorized_keys");
        std::fs::create_dir_all(&keys_dir).expect("authorized_keys dir");
        for (user, lines) in &opts.authorized {
            std::fs::write(keys_dir.join(user), lines.join("\n") + "\n")
                .expect("write authorized_keys");
        }
        let port = opts.port.unwrap_or_else(free_port);
        let listen = opts.listen_address.clone().unwrap_or_else(|| "127.0.0.1".into());
        let mut config = vec![
            format!("Port {port}"),
            format!("ListenAddress {listen}"),
            format!("HostKey {}", host_key.display()),
            format!("PidFile {}", dir.path().join("sshd.pid").display()),
            format!("AuthorizedKeysFile {}/%u", keys_dir.display()),
            "UsePAM no".into(),
            "StrictModes no".into(),
            "PasswordAuthentication no".into(),
            "KbdInteractiveAuthentication no".into(),
            "PubkeyAuthentication yes".into(),
            "PermitRootLogin prohibit-password".into(),
            "AllowTcpForwarding yes".into(),
            "MaxSessions 10".into(),
            "LogLevel VERBOSE".into(),
        ];
        config.extend(opts.extra_config.iter().cloned());
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config.join("\n") + "\n").expect("write sshd_config");

        let mut child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f"])
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start /usr/sbin/sshd (openssh-server installed?)");
        let log = Arc::new(Mutex::new(String::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("piped stderr");
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("Server listening on")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
                if let Ok(mut l) = sink.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
            // stderr closed: sshd exited (ready dropped → the waiter learns it failed).
        });
        let mut sshd = Sshd { dir, port, child: Some(child), host_key, log };
        if ready_rx.recv_timeout(Duration::from_secs(20)).is_err() {
            let log = sshd.log();
            sshd.kill();
            panic!("sshd did not start on {listen}:{port}:\n{log}");
        }
        sshd
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The host key's private file (to restart with the same key).
    pub fn host_key_path(&self) -> &Path {
        &self.host_key
    }

    /// The host public key line as the server presents it (`type base64`).
    pub fn host_public_key(&self) -> String {
        let pubfile = format!("{}.pub", self.host_key.display());
        let text = std::fs::read_to_string(pubfile).expect("host .pub");
        text.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// The `SHA256:…` fingerprint of the host key (from `ssh-keygen -lf`).
    pub fn host_fingerprint(&self) -> String {
        let out = Command::new("ssh-keygen")
            .arg("-lf")
            .arg(format!("{}.pub", self.host_key.display()))
            .output()
            .expect("ssh-keygen -lf");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_string()
    }

    /// Everything sshd logged so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Kills the daemon and all its session processes at once (a host that dies mid-command).
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        let pids = descendants(child.id());
        let _ = child.kill();
        for pid in pids {
            let _ =
                Command::new("kill").args(["-9", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every live process descended from `root` (sshd's per-connection children call setsid, so
/// a process-group kill would miss them).
fn descendants(root: u32) -> Vec<u32> {
    let mut parent_of: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
            // "pid (comm) state ppid ..." — comm may contain spaces, so split after the last ')'.
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let p = found[i];
        found.extend(parent_of.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    found.remove(0);
    found
}
