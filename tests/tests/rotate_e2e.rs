//! End-to-end: the etcd CA of a stacked 3-member lab cluster rotated with `certs rotate-ca --ca
//! etcd --yes` while a writer keeps writing, as kube-apiserver would: a fresh `etcdctl` process
//! per write, run on cp1 over SSH with the client certificate and CA files on that host (so it
//! meets every file the rotation puts). No write may fail beyond one retry, no acknowledged write
//! may be lost, every member must serve certificates of the new CA afterwards, and a client
//! certificate from the old CA must be rejected. Prints the rotation's time. Then a second
//! rotation is killed during its leaf roll-out and completes when run again. The same rotation on
//! external etcd (three etcd machines, one control plane whose files the writer uses). Needs root and the
//! lab's tools; runs only with KUBEFORGE_E2E=1. The lab's name is unique (pid) and the lab is
//! always brought down.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubeforge_tests::lab::{Lab, Machine, address, enabled, kubeforge_bin, text};
use serde_json::Value;

const PKI: &str = "/etc/kubernetes/pki";

fn free_disk_gb() -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1G", "/"]).output().expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// `etcdctl` on cp1 against all three members with the files on cp1.
fn etcdctl_on(cp1: &Machine, endpoints: &str, args: &str) -> std::process::Output {
    cp1.ssh(&format!(
        "ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints={endpoints} --cacert={PKI}/etcd/ca.crt \
         --cert={PKI}/apiserver-etcd-client.crt --key={PKI}/apiserver-etcd-client.key \
         --dial-timeout=3s --command-timeout=5s {args}"
    ))
}

struct Writes {
    acked: u64,
    retried: u64,
    failed: Vec<String>,
    longest: Duration,
}

/// Writes `/kf-rotate/seq/<n>` until stopped, one fresh etcdctl per attempt, one retry allowed.
fn writer(cp1: Machine, endpoints: String, stop: Arc<AtomicBool>) -> Writes {
    let mut w = Writes { acked: 0, retried: 0, failed: Vec::new(), longest: Duration::ZERO };
    while !stop.load(Ordering::Relaxed) {
        let n = w.acked;
        let started = Instant::now();
        let put = format!("put /kf-rotate/seq/{n:08} {n}");
        let first = etcdctl_on(&cp1, &endpoints, &put);
        if !first.status.success() {
            w.retried += 1;
            eprintln!("write {n} failed once: {}", String::from_utf8_lossy(&first.stderr).trim());
            std::thread::sleep(Duration::from_millis(300));
            let second = etcdctl_on(&cp1, &endpoints, &put);
            if !second.status.success() {
                w.failed.push(format!("write {n}: {}", text(&second)));
                if w.failed.len() > 5 {
                    break;
                }
                continue;
            }
        }
        w.longest = w.longest.max(started.elapsed());
        w.acked += 1;
    }
    w
}

#[test]
fn etcd_ca_rotates_under_a_writer_without_failed_or_lost_writes() {
    if !enabled() {
        return;
    }
    let free = free_disk_gb();
    assert!(free >= 8, "only {free} GB free on /; a lab needs 8 GB");
    let lab = Lab::up(&format!("rt{}", std::process::id() % 100_000), &["--workers", "0"]);
    lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"]);
    rotate_under_a_writer(&lab, &["cp1", "cp2", "cp3"], "cp1");
    an_interrupted_rotation_completes_when_run_again(&lab);
    the_other_targets_execute_through_the_same_stages(&lab);
}

/// `--ca all` (the three CAs together) and `--ca sa` run on the same lab: every stage rolled
/// out, every certificate and kubeconfig on every host the state dir's (new CAs), sa.pub the
/// new key alone, etcd converged. The lab runs no kube-apiserver, so the stages roll out the
/// pki and etcd phases only (the control-plane restarts are pinned by `rotate_plan`).
fn the_other_targets_execute_through_the_same_stages(lab: &Lab) {
    let old_ca = lab.pki("ca.crt");
    let old_sa = lab.pki("sa.pub");
    for ca in ["all", "sa"] {
        let started = Instant::now();
        let out = lab.ok(&["certs", "rotate-ca", "--ca", ca, "--yes", "-f", lab.spec_arg()]);
        eprintln!(
            "{}: certs rotate-ca --ca {ca} took {:.1} s",
            lab.name,
            started.elapsed().as_secs_f64()
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains("Each stage rolls out the phases pki, etcd."), "{said}");
        let status =
            lab.ok(&["-o", "json", "certs", "rotate-ca", "--status", "-f", lab.spec_arg()]);
        let status: Value = serde_json::from_slice(&status.stdout).unwrap();
        assert_eq!(status["rotation"]["ca"], ca, "{status}");
        assert_eq!(status["rotation"]["stage"], "done", "{status}");
    }
    let new_ca = lab.pki("ca.crt");
    assert_ne!(new_ca, old_ca);
    assert_eq!(String::from_utf8_lossy(&new_ca).matches("BEGIN CERTIFICATE").count(), 1);
    let new_sa = lab.pki("sa.pub");
    assert_ne!(new_sa, old_sa);
    assert_eq!(String::from_utf8_lossy(&new_sa).matches("BEGIN PUBLIC KEY").count(), 1);
    let mut files = 0;
    for ((host, what), on_host) in lab.remote_certs() {
        // Served certificates: etcd's (nothing else runs in the lab).
        let etcd_port = what.ends_with(":2379") || what.ends_with(":2380");
        if what.starts_with("https://") && !etcd_port {
            continue;
        }
        assert_eq!(on_host, "matches", "{host} {what}");
        files += 1;
    }
    assert!(files > 30, "{files} certificates checked");
    let (machines, _) = lab.machines();
    for m in &machines {
        let on_host = m.ssh_ok(&format!("cat {PKI}/sa.pub"));
        assert_eq!(on_host.as_bytes(), new_sa.as_slice(), "{}", m.host);
        // The rotation files never leave the state dir.
        let extra = m.ssh_ok(&format!("find {PKI} -name '*-next*' -o -name '*-prev*'"));
        assert!(extra.trim().is_empty(), "{}: {extra}", m.host);
    }
    lab.assert_converged("etcd");
}

/// External etcd (three etcd machines, one control plane that is their client): the same
/// rotation under the same writer, run on the control plane with its files, since kube-apiserver
/// is its client there. etcdctl is copied to the control plane from a member (the machines are
/// offline; the etcd phase installs it on members only).
#[test]
fn external_etcd_ca_rotates_under_a_writer_without_failed_or_lost_writes() {
    if !enabled() {
        return;
    }
    let free = free_disk_gb();
    assert!(free >= 8, "only {free} GB free on /; a lab needs 8 GB");
    let name = format!("rx{}", std::process::id() % 100_000);
    let lab = Lab::up(&name, &["--control-planes", "1", "--workers", "0", "--etcd", "3"]);
    lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"]);
    let (machines, _) = lab.machines();
    let login = |h: &str| machines.iter().find(|m| m.host == h).expect("machine").login.clone();
    let etcdctl =
        Machine { host: "etcd1".into(), login: login("etcd1") }.ssh("cat /usr/local/bin/etcdctl");
    assert!(etcdctl.status.success() && !etcdctl.stdout.is_empty(), "{}", text(&etcdctl));
    let words: Vec<String> = login("cp1").split_whitespace().map(String::from).collect();
    let mut copy = Command::new(&words[0])
        .args(&words[1..])
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"])
        .arg("cat > /usr/local/bin/etcdctl && chmod 0755 /usr/local/bin/etcdctl")
        .stdin(Stdio::piped())
        .spawn()
        .expect("ssh");
    std::io::Write::write_all(&mut copy.stdin.take().unwrap(), &etcdctl.stdout).unwrap();
    assert!(copy.wait().unwrap().success(), "copying etcdctl to cp1 failed");
    let seconds = rotate_under_a_writer(&lab, &["etcd1", "etcd2", "etcd3"], "cp1");
    eprintln!("{}: external etcd CA rotation measured {seconds:.1} s", lab.name);
}

/// `certs rotate-ca --ca etcd --yes` on a lab applied `--until etcd` whose etcd members are
/// `members`, while a writer on `client` (a control plane: its apiserver-etcd-client and etcd
/// CA files) writes: no write fails beyond one retry, none acknowledged is lost, every member
/// serves the new CA's certificates, an old-CA client is refused. Returns the rotation's time.
fn rotate_under_a_writer(lab: &Lab, members: &[&str], client: &str) -> f64 {
    let spec = lab.spec_text();
    let endpoints: Vec<String> =
        members.iter().map(|h| format!("https://{}:2379", address(&spec, h))).collect();
    let endpoints = endpoints.join(",");
    let (machines, _) = lab.machines();
    let machine = |h: &str| {
        let m = machines.iter().find(|m| m.host == h).expect("machine");
        Machine { host: m.host.clone(), login: m.login.clone() }
    };
    let old_ca = lab.pki("etcd/ca.crt");
    let state_pki = lab.dir.path().join(".kubeforge").join(&lab.name).join("pki");
    let keep = tempfile::tempdir().unwrap();
    for ext in ["crt", "key"] {
        let f = format!("nodes/{client}/apiserver-etcd-client.{ext}");
        std::fs::copy(state_pki.join(&f), keep.path().join(f.rsplit('/').next().unwrap())).unwrap();
    }
    // The writer works before the rotation starts.
    let probe = etcdctl_on(&machine(client), &endpoints, "put /kf-rotate/probe x");
    assert!(probe.status.success(), "{}", text(&probe));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = {
        let (cp1, eps, stop) = (machine(client), endpoints.clone(), stop.clone());
        std::thread::spawn(move || writer(cp1, eps, stop))
    };
    std::thread::sleep(Duration::from_secs(2));
    let started = Instant::now();
    let out = lab.run(&["certs", "rotate-ca", "--ca", "etcd", "--yes", "-f", lab.spec_arg()]);
    let seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    let w = writes.join().expect("writer thread");
    eprintln!(
        "{}: certs rotate-ca --ca etcd took {seconds:.1} s; writer: {} acknowledged, {} retried, \
         {} failed, longest {:.2} s",
        lab.name,
        w.acked,
        w.retried,
        w.failed.len(),
        w.longest.as_secs_f64()
    );
    assert!(out.status.success(), "rotate-ca: {}", text(&out));
    assert!(w.failed.is_empty(), "writes failed beyond one retry:\n{}", w.failed.join("\n"));
    assert!(w.acked > 20, "the writer barely wrote ({})", w.acked);

    // No acknowledged write is lost.
    let got =
        etcdctl_on(&machine(client), &endpoints, "get /kf-rotate/seq/ --prefix --print-value-only");
    assert!(got.status.success(), "{}", text(&got));
    let values: std::collections::BTreeSet<u64> = String::from_utf8_lossy(&got.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for n in 0..w.acked {
        assert!(values.contains(&n), "acknowledged write {n} lost");
    }

    // The state dir: the etcd CA file holds one, new CA; the old one is kept as a replaced file;
    // the status says done.
    let new_ca = lab.pki("etcd/ca.crt");
    assert_ne!(new_ca, old_ca);
    assert_eq!(String::from_utf8_lossy(&new_ca).matches("BEGIN CERTIFICATE").count(), 1);
    let ca_file = state_pki.join("etcd/ca.crt");
    let leaves = members
        .iter()
        .flat_map(|h| ["etcd/server", "etcd/peer"].map(|l| format!("nodes/{h}/{l}")))
        .chain([format!("nodes/{client}/apiserver-etcd-client")]);
    for leaf in leaves {
        let cert = state_pki.join(format!("{leaf}.crt"));
        let run = Command::new("openssl")
            .args(["verify", "-CAfile", ca_file.to_str().unwrap(), cert.to_str().unwrap()])
            .output()
            .expect("openssl");
        assert!(run.status.success(), "{leaf}: {}", text(&run));
    }
    let status = lab.ok(&["-o", "json", "certs", "rotate-ca", "--status", "-f", lab.spec_arg()]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["rotation"]["stage"], "done", "{status}");
    assert_eq!(status["rotation"]["completed"].as_array().map(Vec::len), Some(3));

    // Every member serves what the state dir holds (the new CA's leaves), on both ports.
    let certs = lab.remote_certs();
    let mut served = 0;
    for ((host, what), on_host) in &certs {
        if what.starts_with("https://") && (what.ends_with(":2379") || what.ends_with(":2380")) {
            assert_eq!(on_host, "matches", "{host} {what}");
            served += 1;
        }
        if what.starts_with(PKI) && what.contains("etcd") {
            assert_eq!(on_host, "matches", "{host} {what}");
        }
    }
    assert_eq!(served, 2 * members.len(), "{certs:?}");

    // A client certificate of the old CA is refused by every member.
    let old_cert = keep.path().join("apiserver-etcd-client.crt");
    let old_key = keep.path().join("apiserver-etcd-client.key");
    for h in members {
        let out = Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                &format!("--endpoints=https://{}:2379", address(&spec, h)),
                &format!("--cacert={}", ca_file.display()),
                &format!("--cert={}", old_cert.display()),
                &format!("--key={}", old_key.display()),
                "--dial-timeout=3s",
                "--command-timeout=5s",
                "get",
                "/kf-rotate/probe",
            ])
            .output()
            .expect("etcdctl (Debian's etcd-client) must be installed for the lab tests");
        assert!(!out.status.success(), "{h} accepted an old-CA client: {}", text(&out));
    }
    // The same request with the new certificate works (the refusal is about the CA).
    let ok = etcdctl_on(&machine(client), &endpoints, "get /kf-rotate/probe");
    assert!(ok.status.success(), "{}", text(&ok));
    lab.assert_converged("etcd");
    eprintln!("{}: rotation measured {seconds:.1} s (target < 120 s)", lab.name);
    seconds
}

/// A second rotation, killed (SIGKILL) during its leaf roll-out, then run again: `--status`
/// shows the unfinished stage, and the rerun finishes with every member serving the new CA.
fn an_interrupted_rotation_completes_when_run_again(lab: &Lab) {
    let state = lab.dir.path().join(".kubeforge").join(&lab.name);
    let ca_before = lab.pki("etcd/ca.crt");
    let leaf_before = lab.pki("nodes/cp1/etcd/server.crt");
    let mut child = Command::new(kubeforge_bin())
        .current_dir(lab.dir.path())
        .args(["certs", "rotate-ca", "--ca", "etcd", "--yes", "-f", lab.spec_arg()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run kubeforge");
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(Instant::now() < deadline, "the rotation never reached its leaf roll-out");
        assert!(child.try_wait().unwrap().is_none(), "the rotation ended before it was killed");
        let record: Option<Value> = std::fs::read(state.join("rotation.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let at_leaves = record.is_some_and(|r| r["stage"] == "reissue-leaves");
        if at_leaves && lab.pki("nodes/cp1/etcd/server.crt") != leaf_before {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Into the roll-out: wait until cp1 has the new certificate on disk (the pki phase put it;
    // the members' one-at-a-time restarts follow), then kill at once. A fixed sleep here raced
    // with a fast roll-out that had already reached the next stage.
    let (machines, _) = lab.machines();
    let cp1 = machines.iter().find(|m| m.host == "cp1").expect("cp1");
    let new_leaf = String::from_utf8_lossy(&lab.pki("nodes/cp1/etcd/server.crt")).into_owned();
    loop {
        assert!(Instant::now() < deadline, "the new certificate never reached cp1");
        assert!(child.try_wait().unwrap().is_none(), "the rotation ended before it was killed");
        if cp1.ssh_ok("cat /etc/kubernetes/pki/etcd/server.crt") == new_leaf {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let status = lab.ok(&["-o", "json", "certs", "rotate-ca", "--status", "-f", lab.spec_arg()]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["rotation"]["stage"], "reissue-leaves", "{status}");

    let started = Instant::now();
    lab.ok(&["certs", "rotate-ca", "--ca", "etcd", "--yes", "-f", lab.spec_arg()]);
    eprintln!(
        "{}: the interrupted rotation finished in {:.1} s when run again",
        lab.name,
        started.elapsed().as_secs_f64()
    );
    let status = lab.ok(&["-o", "json", "certs", "rotate-ca", "--status", "-f", lab.spec_arg()]);
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["rotation"]["stage"], "done", "{status}");
    let ca_after = lab.pki("etcd/ca.crt");
    assert_ne!(ca_after, ca_before);
    assert_eq!(String::from_utf8_lossy(&ca_after).matches("BEGIN CERTIFICATE").count(), 1);
    for ((host, what), on_host) in lab.remote_certs() {
        if what.starts_with("https://") && (what.ends_with(":2379") || what.ends_with(":2380")) {
            assert_eq!(on_host, "matches", "{host} {what}");
        }
    }
    lab.assert_converged("etcd");
}
