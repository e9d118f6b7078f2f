//! `upstream` over HTTPS: the download client (reqwest, rustls on aws-lc-rs, the system's trust
//! store) against a real TLS server on loopback (`openssl s_server -WWW`, a test CA made with
//! the openssl CLI), reached through `KUBEFORGE_ARTIFACT_MIRROR`. The mirror serves a fake
//! containerd release, so the run must get through TLS and then stop at the sha256 check; with
//! the test CA not trusted it must stop at certificate verification instead.
//!
//! The environment (`SSL_CERT_FILE`, the mirror, the cache) belongs to the process, so each case
//! runs this test binary again as a child with only the `#[ignore]`d `child_inventory` test.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kubeforge::artifacts::{Options, inventory_with};
use kubeforge_playbooks::artifacts::catalog;
use kubeforge_playbooks::plan::{Phase, PhaseSelection};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 in `dir`.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=kubeforge test CA",
            "-days",
            "1",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext.cnf",
        ],
    );
}

struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `openssl s_server -WWW` serving `www/` on a free loopback port.
fn serve(dir: &Path) -> (Server, u16) {
    let port = free_port();
    let child = Command::new("openssl")
        .current_dir(dir.join("www"))
        .args(["s_server", "-quiet", "-WWW", "-accept"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-cert")
        .arg(dir.join("server.crt"))
        .arg("-key")
        .arg(dir.join("server.key"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

const FAKE_CONTAINERD: &str = "containerd/v2.1.6/containerd-static-2.1.6-linux-amd64.tar.gz";

/// Runs `child_inventory` in a child process with `env`; returns its combined output.
fn child(env: &[(&str, &Path)], mirror: &str) -> String {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_inventory", "--ignored", "--nocapture", "--test-threads=1"])
        .env("KUBEFORGE_ARTIFACT_MIRROR", mirror)
        .env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn https_mirror_is_verified_with_the_trust_store_then_by_sha256() {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let www = dir.path().join("www");
    std::fs::create_dir_all(www.join("containerd/v2.1.6")).unwrap();
    std::fs::write(www.join(FAKE_CONTAINERD), b"not the containerd release").unwrap();
    let (_server, port) = serve(dir.path());
    let mirror = format!("https://127.0.0.1:{port}");
    let cache = dir.path().join("cache");

    // Trusted CA: TLS succeeds, the fake file fails the catalog's sha256 and is not cached.
    let ca = dir.path().join("ca.crt");
    let out = child(&[("SSL_CERT_FILE", &ca), ("KUBEFORGE_ARTIFACT_CACHE", &cache)], &mirror);
    assert!(out.contains("CHILD-ERROR"), "{out}");
    assert!(
        out.contains(&format!("{mirror}/{FAKE_CONTAINERD} does not match its sha256: expected ")),
        "{out}"
    );
    assert!(!cache.join("amd64/containerd/v2.1.6").exists());

    // Only another CA trusted: refused during the handshake, named as a certificate problem.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let other_ca = other.path().join("ca.crt");
    let out = child(&[("SSL_CERT_FILE", &other_ca), ("KUBEFORGE_ARTIFACT_CACHE", &cache)], &mirror);
    // containerd and runc may come from the hosts' packages: a warning each; etcd cannot.
    assert!(
        out.contains(&format!("warning: cannot download containerd v2.1.6 from {mirror}/")),
        "{out}"
    );
    assert!(
        out.contains(&format!("CHILD-ERROR cannot download etcd v3.5.21 from {mirror}/")),
        "{out}"
    );
    assert!(out.contains("invalid peer certificate"), "{out}");

    // An empty trust store cannot even set up the client, and says so.
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let out = child(&[("SSL_CERT_FILE", &empty), ("KUBEFORGE_ARTIFACT_CACHE", &cache)], &mirror);
    assert!(out.contains("No CA certificates were loaded from the system"), "{out}");
}

/// The child half: the real `Options::from_env` and catalog, the needs up to the etcd phase.
#[test]
#[ignore = "run by https_mirror_is_verified_with_the_trust_store_then_by_sha256 as a child"]
fn child_inventory() {
    let text = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: tls
spec:
  kubernetesVersion: v1.33.8
  etcd:
    version: v3.5.21
  loadBalancer:
    mode: none
  hosts:
    - name: cp1
      address: 10.202.255.11
      roles: [control-plane]
";
    let cluster = kubeforge_playbooks::spec::load_str(text, "cluster.yaml").unwrap();
    let options = Options::from_env(None).unwrap();
    let result = inventory_with(
        &cluster,
        Path::new("/"),
        &PhaseSelection::new(Some(Phase::Etcd), &[]),
        Some(&options),
        catalog::ENTRIES,
    );
    match result {
        Ok(inv) => println!("CHILD-OK {inv:?}"),
        Err(e) => println!("CHILD-ERROR {e}"),
    }
}
