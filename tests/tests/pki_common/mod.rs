//! Shared helpers for the PKI tests: example clusters, a fixed clock and seeded serials, writing
//! a store to disk, running the real `openssl` CLI and golden-file comparison.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use kubeforge_pki::{Outcome, SeededSerials, Store};
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::pki_inputs::pki_request;
use time::OffsetDateTime;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The text of `examples/<name>.yaml`.
pub fn example(name: &str) -> String {
    std::fs::read_to_string(repo().join("examples").join(format!("{name}.yaml"))).unwrap()
}

pub fn cluster_from(yaml: &str) -> Cluster {
    match kubeforge_playbooks::spec::load_str(yaml, "test.yaml") {
        Ok(c) => c,
        Err(d) => panic!("test spec does not validate: {d:?}"),
    }
}

pub fn cluster(name: &str) -> Cluster {
    cluster_from(&example(name))
}

/// 2026-01-15T10:00:00Z.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_768_471_200).unwrap()
}

pub fn generate(cluster: &Cluster, store: &Store, at: OffsetDateTime, seed: u64) -> Outcome {
    kubeforge_pki::generate(&pki_request(cluster), store, at, &mut SeededSerials::new(seed))
        .unwrap_or_else(|e| panic!("generate failed: {e}"))
}

pub fn fresh(cluster: &Cluster) -> Store {
    generate(cluster, &Store::new(), now(), 1).store
}

/// Writes every store file under `dir`.
pub fn write_store(dir: &Path, store: &Store) {
    for (rel, bytes) in store {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

pub fn openssl(args: &[&str]) -> Run {
    let out = Command::new("openssl").args(args).output().expect("the openssl CLI is installed");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Compares `actual` with `tests/golden/<rel>`; `KUBEFORGE_BLESS=1` rewrites the file.
pub fn golden(rel: &str, actual: &str) {
    let path = repo().join("tests/golden").join(rel);
    if kubeforge_tests::bless() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("{} is missing; run with KUBEFORGE_BLESS=1", path.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(10)
            .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
            .collect();
        panic!(
            "{} differs ({} vs {} lines); KUBEFORGE_BLESS=1 regenerates it\n{}",
            path.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// The client certificate embedded in a kubeconfig, or the file itself for a `.crt`.
pub fn cert_of(store: &Store, path: &str) -> Vec<u8> {
    let bytes = &store[path];
    if path.ends_with(".conf") {
        kubeforge_pki::kubeconfig::Kubeconfig::parse(bytes).unwrap().client_cert_pem
    } else {
        bytes.clone()
    }
}

/// Every certificate-bearing store path (leaf `.crt` files and kubeconfigs), CAs excluded.
pub fn leaf_paths(store: &Store) -> Vec<String> {
    store
        .keys()
        .filter(|p| (p.ends_with(".crt") || p.ends_with(".conf")) && !p.ends_with("ca.crt"))
        .cloned()
        .collect()
}
