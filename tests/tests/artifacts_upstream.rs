//! `artifacts.source: upstream` against a loopback mirror started by the test (never the
//! internet): fake release files (a real gzip tarball made with `tar`, a plain binary) listed in
//! a test catalog with their sha256, served through `KUBEFORGE_ARTIFACT_MIRROR`'s URL scheme.
//! Checks: each file is downloaded once and reused from the cache, also with the server gone;
//! a corrupted download is refused and leaves nothing in the cache; a damaged cache is fetched
//! again; a missing file is named with its component, version and URL.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use kubeforge::artifacts::{ArtifactError, Options, inventory_with};
use kubeforge_playbooks::artifacts::catalog::CatalogEntry;
use kubeforge_playbooks::artifacts::{Arch, Component};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{Phase, PhaseSelection};
use sha2::Digest as _;

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// A stateful HTTP/1.1 file server on a free loopback port: path → body, and a count of GETs
/// per path. One request per connection (`Connection: close`).
struct Mirror {
    port: u16,
    files: Arc<Mutex<BTreeMap<String, Vec<u8>>>>,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Mirror {
    fn start(files: BTreeMap<String, Vec<u8>>) -> Mirror {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let files = Arc::new(Mutex::new(files));
        let hits = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, h, s) = (files.clone(), hits.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &f, &h);
                }
            }
        });
        Mirror { port, files, hits, stop, thread: Some(thread) }
    }
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/mirror/", self.port)
    }
    fn hits(&self, path: &str) -> usize {
        self.hits.lock().unwrap().get(path).copied().unwrap_or(0)
    }
    fn set(&self, path: &str, body: &[u8]) {
        self.files.lock().unwrap().insert(path.into(), body.to_vec());
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut conn: TcpStream,
    files: &Mutex<BTreeMap<String, Vec<u8>>>,
    hits: &Mutex<BTreeMap<String, usize>>,
) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("").to_string();
    *hits.lock().unwrap().entry(path.clone()).or_default() += 1;
    let body = files.lock().unwrap().get(&path).cloned();
    let response = match body {
        Some(body) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            r.extend_from_slice(&body);
            r
        }
        None => {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
        }
    };
    let _ = conn.write_all(&response);
}

/// An etcd release tarball as upstream lays it out, built with the real `tar`.
fn etcd_tarball(scratch: &Path) -> Vec<u8> {
    let top = scratch.join("etcd-v3.5.1-linux-amd64");
    std::fs::create_dir_all(&top).unwrap();
    for (name, body) in [
        ("etcd", "fake etcd 3.5.1"),
        ("etcdctl", "fake etcdctl"),
        ("etcdutl", "fake etcdutl"),
        ("README.md", "docs"),
    ] {
        std::fs::write(top.join(name), body).unwrap();
    }
    let out = scratch.join("etcd.tar.gz");
    let status = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&out)
        .arg("-C")
        .arg(scratch)
        .arg("etcd-v3.5.1-linux-amd64")
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(out).unwrap()
}

const RUNC: &[u8] = b"fake runc 1.3.4";
const ETCD_PATH: &str = "/mirror/etcd/v3.5.1/etcd-v3.5.1-linux-amd64.tar.gz";
const RUNC_PATH: &str = "/mirror/runc/v1.3.4/runc.amd64";

/// A catalog knowing the fake files (etcd v3.5.1 tarball, runc v1.3.4) and nothing else.
fn test_catalog(etcd: &[u8]) -> Vec<CatalogEntry> {
    let leak = |s: String| -> &'static str { s.leak() };
    vec![
        CatalogEntry {
            component: Component::Etcd,
            version: "v3.5.1",
            arch: Arch::Amd64,
            sha256: leak(sha256(etcd)),
        },
        CatalogEntry {
            component: Component::Runc,
            version: "v1.3.4",
            arch: Arch::Amd64,
            sha256: leak(sha256(RUNC)),
        },
    ]
}

fn cluster() -> Cluster {
    let text = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: up
spec:
  kubernetesVersion: v1.33.1
  etcd:
    version: v3.5.1
  loadBalancer:
    mode: none
  hosts:
    - name: cp1
      address: 10.202.255.11
      roles: [control-plane]
";
    kubeforge_playbooks::spec::load_str(text, "cluster.yaml").unwrap()
}

struct Setup {
    _scratch: tempfile::TempDir,
    cache: tempfile::TempDir,
    mirror: Mirror,
    catalog: Vec<CatalogEntry>,
    etcd: Vec<u8>,
}

fn setup() -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let etcd = etcd_tarball(scratch.path());
    let mirror = Mirror::start(BTreeMap::from([
        (ETCD_PATH.to_string(), etcd.clone()),
        (RUNC_PATH.to_string(), RUNC.to_vec()),
    ]));
    let catalog = test_catalog(&etcd);
    Setup { _scratch: scratch, cache: tempfile::tempdir().unwrap(), mirror, catalog, etcd }
}

impl Setup {
    fn options(&self) -> Options {
        Options {
            cache_dir: self.cache.path().to_path_buf(),
            mirror: Some(self.mirror.base()),
            arch: Arch::Amd64,
        }
    }
    fn run(&self) -> Result<kubeforge_playbooks::plan::ArtifactInventory, ArtifactError> {
        inventory_with(
            &cluster(),
            Path::new("/"),
            &PhaseSelection::new(Some(Phase::Etcd), &[]),
            Some(&self.options()),
            &self.catalog,
        )
    }
    /// Names in the cache's arch folder that are temporary (`.part`, `.tmp`).
    fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        let root = self.cache.path().join("amd64");
        for component in std::fs::read_dir(&root).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(component.path()).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    found.push(name);
                }
            }
        }
        found
    }
}

#[test]
fn downloads_once_then_reuses_the_cache_without_network() {
    let s = setup();
    let inv = s.run().unwrap();
    // containerd is not in the test catalog: left out for preflight to name.
    assert_eq!(inv.keys().collect::<Vec<_>>(), ["etcd", "etcdctl", "etcdutl", "runc"]);
    assert_eq!(inv["etcd"].sha256, sha256(b"fake etcd 3.5.1"));
    assert_eq!(inv["runc"].sha256, sha256(RUNC));
    let etcd_path = s.cache.path().join("amd64/etcd/v3.5.1/etcd");
    assert_eq!(inv["etcd"].path, etcd_path.display().to_string());
    assert_eq!(std::fs::read(&etcd_path).unwrap(), b"fake etcd 3.5.1");
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(std::fs::metadata(&etcd_path).unwrap().permissions().mode() & 0o777, 0o755);
    assert_eq!(
        std::fs::read(s.cache.path().join("amd64/runc/v1.3.4/runc")).unwrap(),
        RUNC,
        "runc.amd64 is stored under its layout name"
    );
    assert!(!s.cache.path().join("amd64/etcd/v3.5.1/README.md").exists());
    assert_eq!((s.mirror.hits(ETCD_PATH), s.mirror.hits(RUNC_PATH)), (1, 1));
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());

    let again = s.run().unwrap();
    assert_eq!(again, inv);
    assert_eq!((s.mirror.hits(ETCD_PATH), s.mirror.hits(RUNC_PATH)), (1, 1));

    // With the mirror gone, the cache alone serves the run.
    let Setup { _scratch, cache, mirror, catalog, etcd } = s;
    drop(mirror);
    let offline = Setup { _scratch, cache, mirror: Mirror::start(BTreeMap::new()), catalog, etcd };
    assert_eq!(offline.run().unwrap(), inv);
    assert_eq!(offline.mirror.hits(ETCD_PATH), 0);
}

#[test]
fn a_corrupted_download_is_refused_and_never_cached() {
    let s = setup();
    let mut bad = s.etcd.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0xff;
    s.mirror.set(ETCD_PATH, &bad);
    let err = s.run().unwrap_err();
    let url = format!("http://127.0.0.1:{}{ETCD_PATH}", s.mirror.port);
    assert_eq!(
        err.to_string(),
        format!(
            "{url} does not match its sha256: expected {} (the built-in catalog), found {}",
            sha256(&s.etcd),
            sha256(&bad)
        )
    );
    assert!(!s.cache.path().join("amd64/etcd/v3.5.1").exists());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());

    s.mirror.set(ETCD_PATH, &s.etcd);
    let inv = s.run().unwrap();
    assert_eq!(inv["etcdutl"].sha256, sha256(b"fake etcdutl"));
    assert_eq!(s.mirror.hits(ETCD_PATH), 2);
}

#[test]
fn a_damaged_cache_is_downloaded_again() {
    let s = setup();
    s.run().unwrap();
    std::fs::write(s.cache.path().join("amd64/etcd/v3.5.1/etcdctl"), b"bit rot").unwrap();
    let inv = s.run().unwrap();
    assert_eq!(inv["etcdctl"].sha256, sha256(b"fake etcdctl"));
    assert_eq!((s.mirror.hits(ETCD_PATH), s.mirror.hits(RUNC_PATH)), (2, 1));
}

#[test]
fn a_missing_file_is_named_with_component_version_and_url() {
    let s = setup();
    s.mirror.files.lock().unwrap().remove(ETCD_PATH);
    let err = s.run().unwrap_err();
    let url = format!("http://127.0.0.1:{}{ETCD_PATH}", s.mirror.port);
    assert_eq!(
        err.to_string(),
        format!("cannot download etcd v3.5.1 from {url}: HTTP 404 Not Found")
    );
    let ArtifactError::Download { remedy, .. } = &err else { panic!("{err:?}") };
    assert!(remedy.contains("KUBEFORGE_ARTIFACT_MIRROR"), "{remedy}");
    assert!(remedy.contains("<dir>/etcd/v3.5.1/<file>"), "{remedy}");
    assert!(!s.cache.path().join("amd64/etcd/v3.5.1").exists());
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
}

#[test]
fn a_runtime_binary_that_cannot_be_downloaded_is_left_to_the_hosts_packages() {
    // runc may be installed on the hosts (only the facts tell): its download failing is a
    // warning, the run goes on without it, and preflight names it for hosts that lack runc.
    let s = setup();
    s.mirror.files.lock().unwrap().remove(RUNC_PATH);
    let inv = s.run().unwrap();
    assert_eq!(inv.keys().collect::<Vec<_>>(), ["etcd", "etcdctl", "etcdutl"]);
    assert_eq!(s.mirror.hits(RUNC_PATH), 1);
    // A corrupted runc is never soft.
    s.mirror.set(RUNC_PATH, b"evil runc");
    let err = s.run().unwrap_err();
    assert!(matches!(err, ArtifactError::Checksum { .. }), "{err:?}");
}

#[test]
fn without_a_mirror_the_release_url_is_used() {
    let options = Options { cache_dir: "/c".into(), mirror: None, arch: Arch::Arm64 };
    let r = kubeforge_playbooks::artifacts::upstream_ref(
        kubeforge_playbooks::artifacts::catalog::ENTRIES,
        Component::Etcd,
        "v3.5.21",
        Arch::Arm64,
    )
    .unwrap();
    assert_eq!(
        options.url_of(&r).as_deref(),
        Some(
            "https://github.com/etcd-io/etcd/releases/download/v3.5.21/etcd-v3.5.21-linux-arm64.tar.gz"
        )
    );
    let mirrored = Options { mirror: Some("https://m.example/k/".into()), ..options };
    assert_eq!(
        mirrored.url_of(&r).as_deref(),
        Some("https://m.example/k/etcd/v3.5.21/etcd-v3.5.21-linux-arm64.tar.gz")
    );
}

#[test]
fn concurrent_runs_share_the_cache_safely() {
    let s = setup();
    let results: Vec<_> = std::thread::scope(|scope| {
        let runs: Vec<_> = (0..4).map(|_| scope.spawn(|| s.run())).collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let first = results[0].as_ref().unwrap();
    for r in &results {
        assert_eq!(r.as_ref().unwrap(), first);
    }
    assert_eq!(first["etcdctl"].sha256, sha256(b"fake etcdctl"));
    assert!(s.leftovers().is_empty(), "{:?}", s.leftovers());
    assert_eq!(s.run().unwrap(), *first);
}
