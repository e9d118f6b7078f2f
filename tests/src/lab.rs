//! Lab end-to-end support shared by the `*_e2e` tests: the kubeforge binary, a lab brought up in
//! a temp dir and always brought down (one at a time per test binary: several labs at once
//! overload a small CI machine), its machines as `lab status` reports them, SSH to them with
//! the lab's key and known_hosts, and etcd clients over the lab network with the state dir's
//! certificates.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use kubeforge::etcd::{Endpoint, EtcdClient, EtcdTls, Timeouts, wait_healthy};
use serde_json::Value;

/// Whether lab tests run. With `KUBEFORGE_E2E=1` they do, and a missing prerequisite (root,
/// systemd-nspawn, debootstrap) fails the test. Under `CI` without `KUBEFORGE_E2E=1` the test
/// fails too: CI must run the lab (`.ci/run` sets it). Elsewhere the test is skipped and says
/// why on the terminal ([`crate::require`]).
pub fn enabled() -> bool {
    let e2e = std::env::var("KUBEFORGE_E2E").as_deref() == Ok("1");
    if !e2e {
        crate::require(
            false,
            "KUBEFORGE_E2E=1 (lab tests need root, systemd-container and debootstrap; CI must \
             run them)",
        );
        return false;
    }
    // /proc/self belongs to the process's effective user.
    let root = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    crate::require(root, "root (the lab starts systemd-nspawn machines)")
        && crate::require_tool(
            "systemd-nspawn",
            "systemd-nspawn (apt-get install systemd-container)",
        )
        && crate::require_tool("debootstrap", "debootstrap (apt-get install debootstrap)")
}

/// `KUBEFORGE_BIN`, else the current `kubeforge` binary, built on first use.
pub fn kubeforge_bin() -> PathBuf {
    try_kubeforge_bin().unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`kubeforge_bin`], for callers that must not panic (a `Drop`).
pub fn try_kubeforge_bin() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("KUBEFORGE_BIN") {
        return Ok(PathBuf::from(p));
    }
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT.get_or_init(build_kubeforge).clone()
}

/// Builds `kubeforge` with the cargo that runs these tests, in this test binary's profile.
/// `cargo test --workspace` builds a package's binaries only for that package's own
/// integration tests, and `cli` has none: without this the lab tests would find no binary on a
/// clean checkout, or run a stale one left by an earlier `cargo build`.
fn build_kubeforge() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
    let exe = std::env::current_exe().map_err(|e| format!("test binary path: {e}"))?;
    // target/<profile>/deps/<test>: build the binary in the same profile.
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::file_name)
        .and_then(|p| p.to_str())
        .map(|p| if p == "debug" { "dev" } else { p })
        .unwrap_or("dev")
        .to_string();
    let out = Command::new(&cargo)
        .current_dir(root)
        .args(["build", "-p", "kubeforge", "--bin", "kubeforge", "--profile", &profile])
        .args(["--message-format", "json-render-diagnostics"])
        .output()
        .map_err(|e| format!("run {}: {e}", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!("cargo build -p kubeforge failed: {}", text(&out)));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "kubeforge")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("cargo build -p kubeforge named no executable: {}", text(&out)))
}

/// Runs kubeforge in `dir`.
pub fn kubeforge(dir: &Path, args: &[&str]) -> Output {
    Command::new(kubeforge_bin()).current_dir(dir).args(args).output().expect("run kubeforge")
}

/// Status, stdout and stderr, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Like [`text`] with only the last lines of each stream, for a run that failed: its report and
/// error are at the end, and CI keeps only part of a long failure message, which a full plan
/// would fill.
pub fn failure_text(out: &Output) -> String {
    format!(
        "status {}\nstderr:\n{}\nstdout:\n{}",
        out.status,
        tail(&String::from_utf8_lossy(&out.stderr), 40),
        tail(&String::from_utf8_lossy(&out.stdout), 80)
    )
}

/// The last `lines` lines of `text`, after a line that says how many were left out.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    if all.len() <= lines {
        return text.to_string();
    }
    format!("[… {} lines left out …]\n{}\n", all.len() - lines, all[all.len() - lines..].join("\n"))
}

static ONE_LAB: Mutex<()> = Mutex::new(());

/// A lab with its spec (`lab.cluster.yaml`) and state dir in a temp dir.
pub struct Lab {
    _one: MutexGuard<'static, ()>,
    pub name: String,
    pub dir: tempfile::TempDir,
    pub spec: PathBuf,
}

impl Lab {
    /// `kubeforge lab up --name NAME ARGS...`, which must succeed.
    pub fn up(name: &str, args: &[&str]) -> Lab {
        let one = ONE_LAB.lock().unwrap_or_else(|p| p.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("lab.cluster.yaml");
        let lab = Lab { _one: one, name: name.to_string(), dir, spec };
        let spec_arg = lab.spec_arg().to_string();
        let mut all = vec!["lab", "up", "--name", name, "--spec-out", &spec_arg];
        all.extend_from_slice(args);
        lab.ok(&all);
        lab
    }

    pub fn run(&self, args: &[&str]) -> Output {
        kubeforge(self.dir.path(), args)
    }

    /// Runs kubeforge and asserts success.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "kubeforge {}: {}", args.join(" "), failure_text(&out));
        out
    }

    pub fn spec_arg(&self) -> &str {
        self.spec.to_str().expect("utf-8 temp path")
    }

    pub fn spec_text(&self) -> String {
        std::fs::read_to_string(&self.spec).expect("read the lab spec")
    }

    /// `plan -f SPEC --until PHASE` must say "No changes.".
    pub fn assert_converged(&self, until: &str) {
        let out = self.ok(&["plan", "-f", self.spec_arg(), "--until", until]);
        assert!(String::from_utf8_lossy(&out.stdout).ends_with("No changes.\n"), "{}", text(&out));
    }

    /// `<state>/applied.json`, the record of the last successful apply.
    pub fn applied(&self) -> Value {
        let path = self.dir.path().join(".kubeforge").join(&self.name).join("applied.json");
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        serde_json::from_slice(&bytes).expect("applied.json is JSON")
    }

    /// `certs check-expiration --remote -o json` (exit 0): (host, file or endpoint) → onHost.
    pub fn remote_certs(&self) -> std::collections::BTreeMap<(String, String), Value> {
        let out = self.ok(&[
            "-o",
            "json",
            "certs",
            "check-expiration",
            "-f",
            self.spec_arg(),
            "--remote",
        ]);
        let all: Vec<Value> = serde_json::from_slice(&out.stdout).expect("json");
        all.into_iter()
            .map(|c| {
                let host = c["host"].as_str().unwrap().to_string();
                ((host, c["path"].as_str().unwrap().into()), c["onHost"].clone())
            })
            .collect()
    }

    /// A file of the state dir's PKI (`etcd/ca.crt`, `nodes/cp1/etcd/healthcheck-client.key`).
    pub fn pki(&self, rel: &str) -> Vec<u8> {
        let path = self.dir.path().join(".kubeforge").join(&self.name).join("pki").join(rel);
        std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    }

    /// etcd client credentials from the state dir: `rel` is a certificate's path without
    /// extension, e.g. `nodes/cp1/etcd/healthcheck-client`.
    pub fn etcd_tls(&self, rel: &str) -> EtcdTls {
        EtcdTls {
            ca_pem: self.pki("etcd/ca.crt"),
            cert_pem: self.pki(&format!("{rel}.crt")),
            key_pem: self.pki(&format!("{rel}.key")),
            server_name: None,
        }
    }

    /// The machines and the VIP, as `lab status -o json` shows them.
    pub fn machines(&self) -> (Vec<Machine>, Option<String>) {
        let out = self.ok(&["-o", "json", "lab", "status", "--name", &self.name]);
        let status: Value = serde_json::from_slice(&out.stdout).expect("status json");
        let machines = status["machines"]
            .as_array()
            .expect("machines")
            .iter()
            .map(|m| Machine {
                host: m["host"].as_str().expect("host").to_string(),
                login: m["ssh"].as_str().expect("ssh").to_string(),
            })
            .collect();
        (machines, status["vip"].as_str().map(str::to_string))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Never panic here: a second panic while a test unwinds aborts the whole test binary.
        match try_kubeforge_bin() {
            Ok(bin) => {
                let down = Command::new(bin)
                    .current_dir(self.dir.path())
                    .args(["lab", "down", "--name", &self.name])
                    .output();
                match down {
                    Ok(out) if out.status.success() => {}
                    Ok(out) => eprintln!("lab down --name {}: {}", self.name, text(&out)),
                    Err(e) => eprintln!("lab down --name {}: {e}", self.name),
                }
            }
            Err(e) => eprintln!("lab {} not brought down: {e}", self.name),
        }
    }
}

/// A lab machine: its host name and the login command `lab status` prints.
pub struct Machine {
    pub host: String,
    pub login: String,
}

impl Machine {
    /// Runs `remote` with the lab key and known_hosts (strict host key checking).
    pub fn ssh(&self, remote: &str) -> Output {
        let words: Vec<&str> = self.login.split_whitespace().collect();
        Command::new(words[0])
            .args(&words[1..])
            .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=2"])
            .args(["-o", "StrictHostKeyChecking=yes"])
            .arg(remote)
            .output()
            .expect("run ssh")
    }

    /// Runs `remote`, which must succeed; its stdout.
    pub fn ssh_ok(&self, remote: &str) -> String {
        let out = self.ssh(remote);
        assert!(out.status.success(), "{} `{remote}`: {}", self.host, text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// The address a host has in a lab spec.
pub fn address(spec: &str, host: &str) -> String {
    let mut lines = spec.lines();
    while let Some(line) = lines.next() {
        if line.trim() == format!("- name: {host}") {
            let next = lines.next().unwrap_or_default();
            if let Some(a) = next.trim().strip_prefix("address: ") {
                return a.trim().to_string();
            }
        }
    }
    panic!("no host {host} in the spec:\n{spec}");
}

/// etcd client endpoints of the named hosts over the lab network.
pub fn etcd_endpoints(spec: &str, hosts: &[&str]) -> Vec<Endpoint> {
    hosts.iter().map(|h| Endpoint::new(*h, format!("https://{}:2379", address(spec, h)))).collect()
}

/// Timeouts for talking to lab etcd.
pub const ETCD_TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(3),
    request: Duration::from_secs(5),
    reconfigure: Duration::from_secs(30),
};

/// Every host answers as a healthy voting member and the member list is exactly `hosts`.
pub async fn assert_etcd_members(spec: &str, hosts: &[&str], tls: &EtcdTls) {
    let eps = etcd_endpoints(spec, hosts);
    let report = wait_healthy(&eps, Some(tls), ETCD_TIMEOUTS, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(report.all_healthy());
    let client = EtcdClient::connect(&eps[0], Some(tls), ETCD_TIMEOUTS).await.expect("connect");
    let mut names: Vec<String> = client
        .member_list()
        .await
        .expect("member list")
        .into_iter()
        .map(|m| {
            assert!(!m.is_learner, "{} is still a learner", m.name);
            m.name
        })
        .collect();
    names.sort();
    assert_eq!(names, hosts);
}

/// A small tokio runtime for the synchronous lab tests.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Writes `/kf-e2e/seq/<n>` with n = 0, 1, 2, … until stopped, each write retried on the next
/// endpoint until etcd acknowledges it; returns how many were acknowledged and the longest
/// time one write waited. Panics if etcd refuses writes for 60 s.
pub async fn etcd_writer(
    eps: Vec<Endpoint>,
    tls: EtcdTls,
    stop: Arc<AtomicBool>,
) -> (u64, Duration) {
    let mut acked = 0u64;
    let mut longest = Duration::ZERO;
    let mut which = 0usize;
    let mut client: Option<EtcdClient> = None;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        loop {
            if client.is_none() {
                let ep = &eps[which % eps.len()];
                client = EtcdClient::connect(ep, Some(&tls), ETCD_TIMEOUTS).await.ok();
            }
            let key = format!("/kf-e2e/seq/{acked:08}");
            let done = match &client {
                Some(c) => c.put(&key, acked.to_string().as_bytes()).await.is_ok(),
                None => false,
            };
            if done {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "etcd refused writes for 60 s");
            client = None;
            which += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        longest = longest.max(started.elapsed());
        acked += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (acked, longest)
}

/// Every one of the `acked` writes of [`etcd_writer`] is there, read linearizably via `ep`.
pub async fn assert_all_written(ep: &Endpoint, tls: &EtcdTls, acked: u64) {
    let client = EtcdClient::connect(ep, Some(tls), ETCD_TIMEOUTS).await.expect("connect");
    for n in 0..acked {
        let key = format!("/kf-e2e/seq/{n:08}");
        let value = client.linearizable_get(&key).await.expect("linearizable get");
        assert_eq!(value, Some(n.to_string().into_bytes()), "{key} lost");
    }
}

/// Fails the test when `/` has less than the 8 GB a lab of several machines needs, instead of
/// letting a full disk fail it half way with a confusing error.
pub fn assert_disk_for_lab() {
    let out = Command::new("df").args(["-B1G", "--output=avail", "/"]).output().expect("df");
    let free: u64 = String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0);
    assert!(free >= 8, "only {free} GB free on /: a lab needs at least 8 GB");
}

/// A lab spec without the hosts named in `gone` (each host is three lines in a lab spec:
/// `- name:`, `address:`, `roles:`).
pub fn spec_without_hosts(spec: &str, gone: &[&str]) -> String {
    let mut out = Vec::new();
    let mut skip = 0;
    for line in spec.lines() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        if gone.iter().any(|h| line.trim() == format!("- name: {h}")) {
            skip = 2;
            continue;
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}
