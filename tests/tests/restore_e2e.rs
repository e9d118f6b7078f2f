//! End-to-end tests of `kubeforge restore` on lab machines: `apply --until etcd` builds a
//! 3-member etcd cluster, 1,000 keys are written, `backup create` saves them, keys are changed,
//! deleted and added; a backup with one byte flipped and a truncated one are refused by
//! `restore` with the cluster untouched; then `restore --from NAME --yes` gives back exactly
//! the 1,000 original keys on 3 healthy members of one cluster, writable, with each member's
//! old data dir kept, and a following plan has nothing to do. Stacked on etcd 3.4.23 (etcdctl
//! restores) and external on 3.5.1 (etcdutl). Needs root and the lab's tools; runs only with
//! KUBEFORGE_E2E=1. Each test brings up its own lab (unique name with the pid) and always
//! brings it down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use kubeforge::etcd::{EtcdClient, EtcdTls};
use kubeforge_tests::lab::{
    ETCD_TIMEOUTS as T, Lab, address, assert_etcd_members, enabled, etcd_endpoints, runtime, text,
};
use serde_json::Value;

const KEYS: usize = 1000;

fn lab_name(tag: &str) -> String {
    format!("rs{tag}{}", std::process::id() % 100000)
}

fn key(i: usize) -> String {
    format!("/kf-restore/key-{i:04}")
}

/// `etcdctl` (3.4, API v3) on this machine against `host`'s member, with the state dir's
/// client certificate of `cert` (`nodes/cp1/etcd/healthcheck-client`).
fn etcdctl(lab: &Lab, spec: &str, host: &str, cert: &str, args: &[&str]) -> String {
    let pki = lab.dir.path().join(".kubeforge").join(&lab.name).join("pki");
    etcdctl_with(&pki, spec, host, cert, args)
}

fn etcdctl_with(pki: &Path, spec: &str, host: &str, cert: &str, args: &[&str]) -> String {
    let file = |rel: &str| pki.join(rel).display().to_string();
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}:2379", address(spec, host)))
        .arg(format!("--cacert={}", file("etcd/ca.crt")))
        .arg(format!("--cert={}", file(&format!("{cert}.crt"))))
        .arg(format!("--key={}", file(&format!("{cert}.key"))))
        .args(args)
        .output()
        .expect("etcdctl (Debian's etcd-client) must be installed for the lab tests");
    assert!(out.status.success(), "etcdctl {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every key and value (`get "" --from-key`), in key order.
fn all_keys(lab: &Lab, spec: &str, host: &str, cert: &str) -> Vec<(String, String)> {
    let pki = lab.dir.path().join(".kubeforge").join(&lab.name).join("pki");
    all_keys_with(&pki, spec, host, cert)
}

fn all_keys_with(pki: &Path, spec: &str, host: &str, cert: &str) -> Vec<(String, String)> {
    let out = etcdctl_with(pki, spec, host, cert, &["get", "", "--from-key"]);
    let lines: Vec<&str> = out.lines().collect();
    lines.chunks(2).map(|kv| (kv[0].to_string(), kv.get(1).unwrap_or(&"").to_string())).collect()
}

fn original() -> Vec<(String, String)> {
    (0..KEYS).map(|i| (key(i), format!("value-{i}"))).collect()
}

async fn write_original(eps: &[kubeforge::etcd::Endpoint], tls: &EtcdTls) {
    let client = EtcdClient::connect(&eps[0], Some(tls), T).await.expect("connect");
    for (k, v) in original() {
        client.put(&k, v.as_bytes()).await.expect("put");
    }
}

/// Each member's cluster id and revision, read from the member itself.
async fn ids_and_revisions(eps: &[kubeforge::etcd::Endpoint], tls: &EtcdTls) -> Vec<(u64, i64)> {
    let mut out = Vec::new();
    for ep in eps {
        let c = EtcdClient::connect(ep, Some(tls), T).await.expect("connect");
        let k = c.keyspace().await.expect("keyspace");
        out.push((k.cluster_id, k.revision));
    }
    out
}

/// A copy of `backup` (and its sidecar, when `with_sidecar`) changed by `damage`.
fn damaged(backup: &Path, to: &Path, with_sidecar: bool, damage: impl Fn(&mut Vec<u8>)) -> PathBuf {
    let mut bytes = std::fs::read(backup).unwrap();
    damage(&mut bytes);
    std::fs::write(to, bytes).unwrap();
    if with_sidecar {
        let side = |p: &Path| PathBuf::from(p.display().to_string().replace(".db.zst", ".json"));
        std::fs::copy(side(backup), side(to)).unwrap();
    }
    to.to_path_buf()
}

struct Scenario<'a> {
    tag: &'a str,
    lab_args: &'a [&'a str],
    etcd_version: &'a str,
    members: &'a [&'a str],
    /// The client certificate used from this machine.
    cert: &'a str,
}

fn restore_in_place(s: Scenario<'_>) {
    let lab = Lab::up(&lab_name(s.tag), s.lab_args);
    let spec_text =
        lab.spec_text().replace("version: v3.5.1", &format!("version: {}", s.etcd_version));
    std::fs::write(&lab.spec, &spec_text).unwrap();
    let spec = lab.spec_arg().to_string();
    lab.ok(&["apply", "-f", &spec, "--until", "etcd", "--yes"]);
    let tls = lab.etcd_tls(s.cert);
    let eps = etcd_endpoints(&spec_text, s.members);
    let rt = runtime();
    rt.block_on(assert_etcd_members(&spec_text, s.members, &tls));
    rt.block_on(write_original(&eps, &tls));
    let first = s.members[0];
    assert_eq!(all_keys(&lab, &spec_text, first, s.cert), original());

    let out = lab.ok(&["-o", "json", "backup", "create", "-f", &spec]);
    let created: Value = serde_json::from_slice(&out.stdout).expect("backup json");
    let backup_path = PathBuf::from(created["path"].as_str().expect("path"));
    let name = backup_path.file_name().unwrap().to_string_lossy().replace(".db.zst", "");

    // Changes after the backup: 100 values changed, 100 keys deleted, 50 keys added.
    let client = rt.block_on(EtcdClient::connect(&eps[0], Some(&tls), T)).unwrap();
    for i in 0..100 {
        rt.block_on(client.put(&key(i), b"changed")).unwrap();
    }
    for i in 0..50 {
        rt.block_on(client.put(&format!("/kf-restore/extra-{i}"), b"new")).unwrap();
    }
    etcdctl(&lab, &spec_text, first, s.cert, &["del", "/kf-restore/key-01", "--prefix"]);
    let changed = all_keys(&lab, &spec_text, first, s.cert);
    assert_eq!(changed.len(), KEYS - 100 + 50);
    let before = rt.block_on(ids_and_revisions(&eps, &tls));

    // A flipped byte (with its sidecar: the checksum refuses it) and a truncated file (without
    // one: decompression and etcd's trailer refuse it) are refused; nothing changes.
    let dir = lab.dir.path();
    let flipped = damaged(&backup_path, &dir.join("flipped.db.zst"), true, |b| {
        let mid = b.len() / 2;
        b[mid] ^= 0x01;
    });
    let truncated =
        damaged(&backup_path, &dir.join("truncated.db.zst"), false, |b| b.truncate(b.len() / 2));
    for bad in [&flipped, &truncated] {
        let out = lab.run(&["restore", "-f", &spec, "--from", bad.to_str().unwrap(), "--yes"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "restore of {} must fail: {}", bad.display(), text(&out));
        assert!(
            stderr.contains("restore refused") && stderr.contains("nothing was changed"),
            "{}",
            text(&out)
        );
    }
    assert_eq!(all_keys(&lab, &spec_text, first, s.cert), changed, "the cluster is untouched");
    assert_eq!(rt.block_on(ids_and_revisions(&eps, &tls)), before);
    let (machines, _) = lab.machines();
    for m in machines.iter().filter(|m| s.members.contains(&m.host.as_str())) {
        let listing = m.ssh_ok("ls -d /var/lib/etcd* ; systemctl is-active etcd");
        assert_eq!(listing, "/var/lib/etcd\nactive\n", "{} untouched", m.host);
    }

    // The restore.
    let started = Instant::now();
    let out = lab.ok(&["restore", "-f", &spec, "--from", &name, "--yes"]);
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}: restore of {} members took {seconds:.1} s (whole command)\n{stdout}",
        lab.name,
        s.members.len()
    );
    assert!(stdout.contains("Restored etcd from"), "{}", text(&out));

    rt.block_on(assert_etcd_members(&spec_text, s.members, &tls));
    assert_eq!(all_keys(&lab, &spec_text, first, s.cert), original(), "exactly the backed-up keys");
    let after = rt.block_on(ids_and_revisions(&eps, &tls));
    let ids: std::collections::BTreeSet<u64> = after.iter().map(|a| a.0).collect();
    assert_eq!(ids.len(), 1, "one cluster: {after:?}");
    assert_ne!(after[0].0, before[0].0, "a new cluster id (new token)");
    // Writable, on every member's view.
    rt.block_on(async {
        let c = EtcdClient::connect(&eps[eps.len() - 1], Some(&tls), T).await.unwrap();
        c.put("/kf-restore/after", b"yes").await.unwrap();
        let c = EtcdClient::connect(&eps[0], Some(&tls), T).await.unwrap();
        assert_eq!(c.linearizable_get("/kf-restore/after").await.unwrap(), Some(b"yes".to_vec()));
    });
    for m in machines.iter().filter(|m| s.members.contains(&m.host.as_str())) {
        let kept = m.ssh_ok("ls -d /var/lib/etcd.before-restore-*/member/snap/db | wc -l");
        assert_eq!(kept.trim(), "1", "{}: the old data is kept", m.host);
        let owner =
            m.ssh_ok("stat -c '%U %a' /var/lib/etcd; ls /var/lib | grep -c etcd.snapshot- || true");
        assert_eq!(owner, "etcd 700\n0\n", "{}", m.host);
    }
    lab.assert_converged("etcd");
}

#[test]
fn stacked_etcd_34_restores_in_place_and_refuses_damaged_backups() {
    if !enabled() {
        return;
    }
    restore_in_place(Scenario {
        tag: "s",
        lab_args: &["--workers", "0"],
        etcd_version: "v3.4.23",
        members: &["cp1", "cp2", "cp3"],
        cert: "nodes/cp1/etcd/healthcheck-client",
    });
}

#[test]
fn external_etcd_35_restores_in_place() {
    if !enabled() {
        return;
    }
    restore_in_place(Scenario {
        tag: "x",
        lab_args: &["--control-planes", "2", "--workers", "0", "--etcd", "3"],
        etcd_version: "v3.5.1",
        members: &["etcd1", "etcd2", "etcd3"],
        cert: "nodes/cp1/apiserver-etcd-client",
    });
}

/// Disaster recovery: lab A's state dir (its CAs) and backup, used with lab B's spec (other
/// machines, other addresses): `apply --until etcd` reissues the members' certificates from
/// the same CAs for the new addresses and installs etcd; `restore` then gives lab B's members
/// lab A's keys.
#[test]
fn disaster_recovery_restores_a_backup_onto_other_machines_with_other_addresses() {
    if !enabled() {
        return;
    }
    let keep = tempfile::tempdir().unwrap();
    let state = keep.path().join("state");
    let cert = "nodes/cp1/etcd/healthcheck-client";
    let members = ["cp1", "cp2", "cp3"];
    let rt = runtime();
    let (backup, old_address) = {
        let lab = Lab::up(&lab_name("a"), &["--workers", "0"]);
        let spec_text = lab.spec_text();
        lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"]);
        let tls = lab.etcd_tls(cert);
        rt.block_on(assert_etcd_members(&spec_text, &members, &tls));
        rt.block_on(write_original(&etcd_endpoints(&spec_text, &members), &tls));
        let out = lab.ok(&["-o", "json", "backup", "create", "-f", lab.spec_arg()]);
        let created: Value = serde_json::from_slice(&out.stdout).expect("backup json");
        let path = PathBuf::from(created["path"].as_str().expect("path"));
        let from = lab.dir.path().join(".kubeforge").join(&lab.name);
        let cp = Command::new("cp").arg("-a").arg(&from).arg(&state).status().unwrap();
        assert!(cp.success());
        (state.join("backups").join(path.file_name().unwrap()), address(&spec_text, "cp1"))
    }; // lab A is down: its machines are gone.
    let lab = Lab::up(&lab_name("b"), &["--workers", "0"]);
    let spec_text = lab.spec_text();
    assert_ne!(address(&spec_text, "cp1"), old_address, "the second lab has other addresses");
    let st = state.to_str().unwrap();
    let spec = lab.spec_arg().to_string();
    lab.ok(&["--state", st, "apply", "-f", &spec, "--until", "etcd", "--yes"]);
    let started = Instant::now();
    let out = lab.ok(&[
        "--state",
        st,
        "restore",
        "-f",
        &spec,
        "--from",
        backup.to_str().unwrap(),
        "--yes",
    ]);
    eprintln!(
        "DR restore took {:.1} s\n{}",
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out.stdout)
    );
    let pki = state.join("pki");
    let read = |rel: &str| std::fs::read(pki.join(rel)).unwrap();
    let tls = EtcdTls {
        ca_pem: read("etcd/ca.crt"),
        cert_pem: read(&format!("{cert}.crt")),
        key_pem: read(&format!("{cert}.key")),
        server_name: None,
    };
    rt.block_on(assert_etcd_members(&spec_text, &members, &tls));
    assert_eq!(all_keys_with(&pki, &spec_text, "cp2", cert), original(), "lab A's keys on lab B");
}
