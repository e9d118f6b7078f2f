//! End-to-end test of `kubeforge upgrade` on lab machines: a stacked 3-member etcd on v3.4.23
//! (`apply --until etcd`), then the spec moved to v3.5.1. `plan`/`apply` refuse and point to
//! `kubeforge upgrade plan`; a downgrade and a skipped minor are refused by `upgrade plan` and
//! `upgrade apply` with the rule named and nothing changed; `upgrade plan` orders the members
//! followers first, leader last; `upgrade apply --yes` while a writer keeps writing leaves every
//! member on 3.5.1 with every acknowledged write present, a verified snapshot kept, and a
//! second `upgrade plan` (and `plan --until etcd`) with nothing to do. The same on the external
//! topology (etcd1..3). A run killed after the first member has recorded its restart resumes
//! without restarting it. Needs root and the lab's
//! tools; runs only with KUBEFORGE_E2E=1. The lab has a unique name (pid) and is always brought
//! down.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubeforge::etcd::{EtcdClient, EtcdTls};
use kubeforge_tests::lab::{
    ETCD_TIMEOUTS as T, Lab, assert_all_written, enabled, etcd_endpoints, etcd_writer,
    kubeforge_bin, runtime, text,
};
use serde_json::Value;

const STACKED: [&str; 3] = ["cp1", "cp2", "cp3"];
const EXTERNAL: [&str; 3] = ["etcd1", "etcd2", "etcd3"];
const CERT: &str = "nodes/cp1/etcd/healthcheck-client";

/// The etcd members of a lab spec: `etcd1..3` when it has external etcd hosts.
fn members(spec: &str) -> Vec<&'static str> {
    if spec.contains("- name: etcd1") { EXTERNAL.to_vec() } else { STACKED.to_vec() }
}

fn lab_name(tag: &str) -> String {
    format!("up{tag}{}", std::process::id() % 100000)
}

/// The running version of each member that answers now (a restarting member does not).
async fn answering(spec: &str, tls: &EtcdTls) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for ep in etcd_endpoints(spec, &members(spec)) {
        let Ok(c) = EtcdClient::connect(&ep, Some(tls), T).await else { continue };
        if let Ok(s) = c.status().await {
            out.push((ep.name.clone(), s.version));
        }
    }
    out
}

/// Each member's running version and whether it leads, as it reports itself.
async fn statuses(spec: &str, tls: &EtcdTls) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for ep in etcd_endpoints(spec, &members(spec)) {
        let c = EtcdClient::connect(&ep, Some(tls), T).await.expect("connect");
        let s = c.status().await.expect("status");
        out.push((ep.name.clone(), s.version, s.leader == s.member_id));
    }
    out
}

fn versions(spec: &str, tls: &EtcdTls) -> Vec<String> {
    runtime().block_on(statuses(spec, tls)).into_iter().map(|(_, v, _)| v).collect()
}

fn with_etcd(spec: &str, version: &str) -> String {
    spec.replace("version: v3.4.23", &format!("version: {version}"))
}

/// `upgrade plan` and `upgrade apply --yes` both refuse `version`, naming `rule`; nothing changes.
fn refused(lab: &Lab, base: &str, version: &str, rule: &str, tls: &EtcdTls) {
    std::fs::write(&lab.spec, with_etcd(base, version)).unwrap();
    for args in [vec!["upgrade", "plan"], vec!["upgrade", "apply", "--yes"]] {
        let mut all = args.clone();
        all.extend(["-f", lab.spec_arg()]);
        let out = lab.run(&all);
        let shown = text(&out);
        assert!(!out.status.success(), "{all:?} to {version} must be refused: {shown}");
        assert!(shown.contains(rule), "{all:?} to {version} must name {rule}: {shown}");
        assert!(shown.contains("nothing was changed"), "{shown}");
    }
    assert_eq!(versions(base, tls), ["3.4.23"; 3]);
    std::fs::write(&lab.spec, base).unwrap();
}

#[test]
fn etcd_rolls_from_3_4_to_3_5_one_member_at_a_time_under_writes() {
    if enabled() {
        rolling_upgrade("r", &["--workers", "0"], CERT);
    }
}

#[test]
fn external_etcd_rolls_from_3_4_to_3_5_under_writes() {
    if enabled() {
        let args = ["--control-planes", "2", "--workers", "0", "--etcd", "3"];
        rolling_upgrade("x", &args, "nodes/cp1/apiserver-etcd-client");
    }
}

fn rolling_upgrade(tag: &str, lab_args: &[&str], cert: &str) {
    let lab = Lab::up(&lab_name(tag), lab_args);
    let original = lab.spec_text();
    assert!(original.contains("version: v3.5.1"), "{original}");
    let old = original.replace("version: v3.5.1", "version: v3.4.23");
    std::fs::write(&lab.spec, &old).unwrap();
    let spec = lab.spec_arg().to_string();
    lab.ok(&["apply", "-f", &spec, "--until", "etcd", "--yes"]);
    let tls = lab.etcd_tls(cert);
    assert_eq!(versions(&old, &tls), ["3.4.23"; 3]);

    // A skipped minor and a downgrade are refused with the rule named.
    refused(&lab, &old, "v3.6.0", "etcd-one-minor-at-a-time", &tls);
    refused(&lab, &old, "v3.4.20", "etcd-no-downgrade", &tls);

    // The spec moves to v3.5.1: plan and apply refuse and point to `upgrade plan`.
    let new = with_etcd(&old, "v3.5.1");
    std::fs::write(&lab.spec, &new).unwrap();
    for args in [
        vec!["plan", "-f", &spec, "--until", "etcd"],
        vec!["apply", "-f", &spec, "--until", "etcd", "--yes"],
    ] {
        let out = lab.run(&args);
        let shown = text(&out);
        assert!(!out.status.success(), "{args:?}: {shown}");
        assert!(shown.contains("kubeforge upgrade plan"), "{args:?}: {shown}");
        assert!(shown.contains("etcd 3.4.23 → 3.5.1"), "{args:?}: {shown}");
    }
    assert_eq!(versions(&new, &tls), ["3.4.23"; 3]);

    // `upgrade plan`: every member restarted once, followers first, the leader last.
    let out = lab.ok(&["-o", "json", "upgrade", "plan", "-f", &spec]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("upgrade plan json");
    let etcd = json["plan"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == "etcd")
        .expect("an etcd phase")
        .clone();
    let restarted: Vec<String> = etcd["sequence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"]["kind"] == "unit" && s["step"]["action"] == "restart")
        .map(|s| s["host"].as_str().unwrap().to_string())
        .collect();
    let before = runtime().block_on(statuses(&new, &tls));
    let leader = before.iter().find(|(_, _, l)| *l).expect("a leader").0.clone();
    assert_eq!(restarted.len(), 3, "{restarted:?}");
    assert_eq!(restarted.last(), Some(&leader), "the leader restarts last: {restarted:?}");
    let changes = json["upgrade"]["changes"].as_array().unwrap().len();
    assert_eq!(changes, 3, "{}", json["upgrade"]);

    // The upgrade, under writes.
    let rt = runtime();
    let stop = Arc::new(AtomicBool::new(false));
    let writes =
        rt.spawn(etcd_writer(etcd_endpoints(&new, &members(&new)), tls.clone(), stop.clone()));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let started = Instant::now();
    let out = lab.ok(&["upgrade", "apply", "-f", &spec, "--yes"]);
    let took = started.elapsed().as_secs_f64();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{shown}");
    eprintln!("{}: upgrade apply (3 members, snapshot included) took {took:.1} s", lab.name);
    std::thread::sleep(std::time::Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (acked, longest) = rt.block_on(writes).unwrap();
    eprintln!("{}: {acked} writes acknowledged, longest wait {longest:?}", lab.name);
    assert!(shown.contains("pre-upgrade"), "the kept snapshot is named: {shown}");
    assert!(shown.contains("verified"), "{shown}");
    let backups = lab.dir.path().join(".kubeforge").join(&lab.name).join("backups");
    let kept = std::fs::read_dir(&backups)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| e.file_name().to_string_lossy().contains("pre-upgrade"));
    assert!(kept, "a pre-upgrade snapshot is kept in {}", backups.display());
    assert_eq!(versions(&new, &tls), ["3.5.1"; 3]);
    let eps = etcd_endpoints(&new, &members(&new));
    rt.block_on(assert_all_written(&eps[0], &tls, acked));
    assert!(acked > 10, "the writer kept writing: {acked}");

    // Nothing left to do.
    let out = lab.ok(&["upgrade", "plan", "-f", &spec]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(shown.contains("Nothing to upgrade"), "{shown}");
    lab.assert_converged("etcd");
    eprintln!("UPGRADE_SECONDS={took:.1}");
}

/// The hosts whose etcd the `upgrade plan -o json` restarts, in order.
fn planned_restarts(lab: &Lab) -> Vec<String> {
    let out = lab.ok(&["-o", "json", "upgrade", "plan", "-f", lab.spec_arg()]);
    let json: Value = serde_json::from_slice(&out.stdout).expect("upgrade plan json");
    json["plan"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["phase"] == "etcd")
        .flat_map(|p| p["sequence"].as_array().unwrap().clone())
        .filter(|s| s["step"]["kind"] == "unit" && s["step"]["action"] == "restart")
        .map(|s| s["host"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn an_upgrade_killed_after_the_first_member_resumes_with_the_next() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(&lab_name("k"), &["--workers", "0"]);
    let old = lab.spec_text().replace("version: v3.5.1", "version: v3.4.23");
    std::fs::write(&lab.spec, &old).unwrap();
    let spec = lab.spec_arg().to_string();
    lab.ok(&["apply", "-f", &spec, "--until", "etcd", "--yes"]);
    let tls = lab.etcd_tls(CERT);
    let new = with_etcd(&old, "v3.5.1");
    std::fs::write(&lab.spec, &new).unwrap();
    let first_planned = planned_restarts(&lab);
    assert_eq!(first_planned.len(), 3, "{first_planned:?}");
    let (machines, _) = lab.machines();
    let first = machines.iter().find(|m| m.host == first_planned[0]).expect("first member");

    let mut child = Command::new(kubeforge_bin())
        .current_dir(lab.dir.path())
        .args(["upgrade", "apply", "-f", &spec, "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubeforge");
    // Killed once the first member runs 3.5.1 and has recorded what it loaded (its record
    // names the new binary's digest).
    let recorded = "grep -qF \"$(sha256sum /usr/local/bin/etcd | cut -d' ' -f1)\" \
                    /var/lib/kubeforge/loaded/etcd.service && /usr/local/bin/etcd --version | \
                    grep -q 3.5.1";
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        assert!(Instant::now() < deadline, "the first member was never upgraded");
        assert!(child.try_wait().unwrap().is_none(), "upgrade apply ended before the kill");
        let v = runtime().block_on(answering(&new, &tls));
        let first_on_new = v.iter().any(|(h, ver)| h == &first.host && ver == "3.5.1");
        if first_on_new && first.ssh(recorded).status.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.kill().expect("kill upgrade apply");
    let _ = child.wait();
    // A member the killed run had just restarted comes back by itself (systemd started it).
    std::thread::sleep(Duration::from_secs(3));
    let v = runtime().block_on(statuses(&new, &tls));
    let upgraded: Vec<&str> =
        v.iter().filter(|(_, ver, _)| ver == "3.5.1").map(|(h, _, _)| h.as_str()).collect();
    eprintln!("{}: killed with {upgraded:?} on 3.5.1", lab.name);
    assert!(upgraded.contains(&first.host.as_str()));

    // The re-run continues: the first member (upgraded and recorded) is not restarted again;
    // every member still on 3.4.23 is. (A member the kill caught between its restart and its
    // record is restarted once more: its record is not trusted.)
    let resumed = planned_restarts(&lab);
    eprintln!("{}: the re-run restarts {resumed:?}", lab.name);
    assert!(!resumed.contains(&first.host), "{resumed:?}");
    for (h, ver, _) in &v {
        if ver != "3.5.1" {
            assert!(resumed.contains(h), "{h} is still on {ver}: {resumed:?}");
        }
    }
    assert!(resumed.len() < 3, "{resumed:?}");
    lab.ok(&["upgrade", "apply", "-f", &spec, "--yes"]);
    assert_eq!(versions(&new, &tls), ["3.5.1"; 3]);
    assert!(planned_restarts(&lab).is_empty());
    lab.assert_converged("etcd");
}
