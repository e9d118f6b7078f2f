//! The generated PKI checked with the real `openssl` CLI, as operators and kube components meet
//! it: every leaf verifies against its CA for its purpose (and fails the other purpose), keys
//! match their certificates, keys are in kubeadm's formats, and RSA keys pass `openssl rsa
//! -check`.

mod pki_common;

use std::path::Path;

use kubeforge_pki::Store;
use pki_common::*;

fn ca_for(path: &str) -> &'static str {
    let name = path.rsplit_once('/').map_or(path, |(_, n)| n);
    if path.contains("/etcd/") || name == "apiserver-etcd-client.crt" {
        "etcd/ca.crt"
    } else if name == "front-proxy-client.crt" {
        "front-proxy-ca.crt"
    } else {
        "ca.crt"
    }
}

fn is_server(path: &str, subject_ekus: &str) -> bool {
    let _ = path;
    subject_ekus.contains("TLS Web Server Authentication")
}

/// Verifies every leaf of `store` (written to `dir`) with openssl for its purposes.
fn verify_all(dir: &Path, store: &Store) -> usize {
    let mut checked = 0;
    for path in leaf_paths(store) {
        let cert_file = dir.join(format!("{path}.pem"));
        std::fs::write(&cert_file, cert_of(store, &path)).unwrap();
        let cert = cert_file.to_str().unwrap();
        let text = openssl(&["x509", "-in", cert, "-noout", "-text"]);
        assert!(text.ok, "{path}: {}", text.stderr);
        assert!(text.stdout.contains("CA:FALSE"), "{path} must be CA:FALSE");
        let ca = dir.join(ca_for(&path));
        let ca = ca.to_str().unwrap();
        let server = is_server(&path, &text.stdout);
        let client = text.stdout.contains("TLS Web Client Authentication");
        assert!(server || client, "{path} has neither server nor client usage");
        for (purpose, wanted) in [("sslserver", server), ("sslclient", client)] {
            let run = openssl(&["verify", "-CAfile", ca, "-purpose", purpose, cert]);
            assert_eq!(run.ok, wanted, "{path} -purpose {purpose}: {}{}", run.stdout, run.stderr);
        }
        // The wrong CA never verifies.
        let wrong = if ca_for(&path) == "ca.crt" { "etcd/ca.crt" } else { "ca.crt" };
        let run = openssl(&["verify", "-CAfile", dir.join(wrong).to_str().unwrap(), cert]);
        assert!(!run.ok, "{path} verified against {wrong}");
        checked += 1;
    }
    checked
}

fn pubkey_of_cert(cert: &Path) -> String {
    let run = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    assert!(run.ok, "{}", run.stderr);
    run.stdout
}

fn pubkey_of_key(key: &Path) -> String {
    let run = openssl(&["pkey", "-in", key.to_str().unwrap(), "-pubout"]);
    assert!(run.ok, "{}", run.stderr);
    run.stdout
}

#[test]
fn stacked_leaves_verify_against_their_cas_for_their_purposes() {
    let store = fresh(&cluster("stacked"));
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &store);
    // 3 control planes x (4 pairs + 3 kubeconfigs + 3 etcd) + 5 kubelets x 2 + super-admin.
    assert_eq!(verify_all(dir.path(), &store), 3 * 10 + 5 * 2 + 1);
    for ca in ["ca.crt", "front-proxy-ca.crt", "etcd/ca.crt"] {
        let path = dir.path().join(ca);
        let run = openssl(&["verify", "-CAfile", path.to_str().unwrap(), path.to_str().unwrap()]);
        assert!(run.ok, "{ca} is not a valid self-signed CA: {}", run.stderr);
        let text = openssl(&["x509", "-in", path.to_str().unwrap(), "-noout", "-text"]);
        assert!(
            text.stdout.contains("CA:TRUE") && text.stdout.contains("Certificate Sign"),
            "{ca}"
        );
    }
}

#[test]
fn external_etcd_leaves_verify_too() {
    let store = fresh(&cluster("external"));
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &store);
    // 3 control planes x 7 + 3 etcd members x 3 + 5 kubelets x 2 + super-admin.
    assert_eq!(verify_all(dir.path(), &store), 3 * 7 + 3 * 3 + 5 * 2 + 1);
}

#[test]
fn keys_match_their_certificates_and_use_kubeadm_formats() {
    let store = fresh(&cluster("stacked"));
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &store);
    for (path, bytes) in &store {
        if let Some(base) = path.strip_suffix(".key") {
            if path == "sa.key" {
                continue;
            }
            assert!(bytes.starts_with(b"-----BEGIN EC PRIVATE KEY-----\n"), "{path} is not SEC1");
            let key = pubkey_of_key(&dir.path().join(path));
            let cert = pubkey_of_cert(&dir.path().join(format!("{base}.crt")));
            assert_eq!(key, cert, "{path} does not belong to {base}.crt");
        }
    }
    // sa.pub is the PKIX public key of sa.key.
    let sa_pub = std::fs::read_to_string(dir.path().join("sa.pub")).unwrap();
    assert!(sa_pub.starts_with("-----BEGIN PUBLIC KEY-----"));
    assert_eq!(pubkey_of_key(&dir.path().join("sa.key")), sa_pub);
}

#[test]
fn rsa_clusters_get_pkcs1_keys_that_openssl_accepts() {
    // One control plane and one worker: RSA key generation is slow in debug builds.
    let mut yaml = example("stacked").replace("keyAlgorithm: ecdsa-p256", "keyAlgorithm: rsa-2048");
    for host in ["cp2", "cp3", "worker2"] {
        let start = yaml.find(&format!("    - name: {host}\n")).unwrap();
        let end = yaml[start + 1..].find("    - name: ").map_or(yaml.len(), |i| start + 1 + i);
        yaml.replace_range(start..end, "");
    }
    let store = fresh(&cluster_from(&yaml));
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &store);
    for key in ["ca.key", "sa.key", "nodes/cp1/apiserver.key"] {
        assert!(store[key].starts_with(b"-----BEGIN RSA PRIVATE KEY-----\n"), "{key}");
        let run =
            openssl(&["rsa", "-in", dir.path().join(key).to_str().unwrap(), "-check", "-noout"]);
        assert!(run.ok && run.stdout.contains("RSA key ok"), "{key}: {}{}", run.stdout, run.stderr);
    }
    let text = openssl(&[
        "x509",
        "-in",
        dir.path().join("nodes/cp1/apiserver.crt").to_str().unwrap(),
        "-noout",
        "-text",
    ]);
    assert!(
        text.stdout.contains("Public-Key: (2048 bit)")
            && text.stdout.contains("sha256WithRSAEncryption")
    );
    verify_all(dir.path(), &store);
}
