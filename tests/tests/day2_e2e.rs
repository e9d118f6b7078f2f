//! End-to-end tests of day-2 operations on lab machines: the applied-state record and
//! `kubeforge reset`. A 3-control-plane + 1-worker lab is applied `--until loadbalancer`
//! (stacked etcd, keepalived-haproxy); `<state>/applied.json` then names every host with its
//! managed files. `reset --hosts w1 --yes` leaves no managed unit running and no managed file
//! on w1, touches no other host and drops w1 from the record; `reset --hosts cp3` removes cp3
//! from etcd before stopping it (cp1 and cp2 stay healthy members); `reset --yes` of the whole lab
//! leaves none anywhere with every etcd data dir moved aside; a second reset says
//! "No changes."; `apply --until loadbalancer` afterwards rebuilds a healthy 3-member etcd with
//! haproxy and keepalived. Needs root and the lab's tools; runs only with KUBEFORGE_E2E=1.
//! The lab's name carries the pid and the lab is always brought down.

use std::collections::BTreeMap;

use kubeforge_tests::lab::{
    Lab, Machine, assert_disk_for_lab, assert_etcd_members, enabled, runtime, text,
};
use serde_json::Value;

const UNTIL: &str = "loadbalancer";
const UNITS: &str =
    "etcd.service kubelet.service haproxy.service keepalived.service kubeforge-backup.timer";

/// Host → its managed files, from the applied record.
fn managed_files(record: &Value) -> BTreeMap<String, Vec<String>> {
    record["hosts"]
        .as_object()
        .expect("hosts")
        .iter()
        .map(|(h, v)| {
            let files = v["files"].as_object().expect("files").keys().cloned().collect();
            (h.clone(), files)
        })
        .collect()
}

/// The managed units running on `m` (`systemctl is-active` exits non-zero when any is not).
fn running_units(m: &Machine) -> Vec<String> {
    let out = m.ssh(&format!("systemctl is-active {UNITS}"));
    let states = String::from_utf8_lossy(&out.stdout).into_owned();
    UNITS
        .split(' ')
        .zip(states.lines())
        .filter(|(_, s)| *s == "active" || *s == "activating")
        .map(|(u, _)| u.to_string())
        .collect()
}

/// The files of `files` that exist on `m`.
fn present_files(m: &Machine, files: &[String]) -> Vec<String> {
    let script: String = files
        .iter()
        .map(|f| format!("test -e '{f}' && echo '{f}';"))
        .chain(["true".to_string()])
        .collect();
    m.ssh_ok(&script).lines().map(str::to_string).collect()
}

#[test]
fn reset_of_a_worker_then_of_the_whole_lab_leaves_nothing_and_apply_rebuilds() {
    if !enabled() {
        return;
    }
    assert_disk_for_lab();
    let lab = Lab::up(&format!("d{}", std::process::id() % 100_000), &[]);
    let spec = lab.spec_arg().to_string();
    let apply = ["apply", "-f", spec.as_str(), "--until", UNTIL, "--yes"];
    lab.ok(&apply);
    let (all, _) = lab.machines();
    let by_name = |n: &str| all.iter().find(|m| m.host == n).unwrap_or_else(|| panic!("{n}"));
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    let rt = runtime();
    rt.block_on(assert_etcd_members(&lab.spec_text(), &["cp1", "cp2", "cp3"], &tls));

    // 1. The applied record.
    let first = lab.applied();
    assert_eq!(first["generation"], 1, "{first}");
    assert_eq!(first["loadBalancer"], "keepalived-haproxy");
    assert_eq!(first["etcdTopology"], "stacked");
    let files = managed_files(&first);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["cp1", "cp2", "cp3", "w1"]);
    assert!(files["cp1"].contains(&"/etc/haproxy/haproxy.cfg".to_string()));
    let w1_files = files["w1"].clone();
    assert!(!present_files(by_name("w1"), &w1_files).is_empty(), "apply put files on w1");
    // A converged apply writes no new generation.
    lab.ok(&apply);
    assert_eq!(lab.applied()["generation"], 1);

    // 2. Reset one worker.
    let out = lab.ok(&["reset", "-f", &spec, "--hosts", "w1", "--yes"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!shown.contains("member remove"), "w1 is no etcd member: {shown}");
    let w1 = by_name("w1");
    assert_eq!(running_units(w1), Vec::<String>::new());
    assert_eq!(present_files(w1, &w1_files), Vec::<String>::new(), "{shown}");
    let after_w1 = lab.applied();
    assert_eq!(after_w1["generation"], 2);
    assert!(after_w1["hosts"].get("w1").is_none(), "{after_w1}");
    for cp in ["cp1", "cp2", "cp3"] {
        let units = running_units(by_name(cp));
        assert_eq!(units, ["etcd.service", "haproxy.service", "keepalived.service"], "{cp}");
    }
    let again = lab.ok(&["reset", "-f", &spec, "--hosts", "w1", "--yes"]);
    assert!(String::from_utf8_lossy(&again.stdout).ends_with("No changes.\n"), "{}", text(&again));

    // 3. Reset one etcd member while the others stay: removed from etcd first, then stopped.
    let out = lab.ok(&["reset", "-f", &spec, "--hosts", "cp3", "--yes"]);
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let removed = shown.find("member remove cp3").unwrap_or_else(|| panic!("{shown}"));
    let stopped = shown.find("systemctl stop etcd.service").unwrap_or_else(|| panic!("{shown}"));
    assert!(removed < stopped, "removal is planned before the stop: {shown}");
    rt.block_on(assert_etcd_members(&lab.spec_text(), &["cp1", "cp2"], &tls));
    let cp3 = by_name("cp3");
    assert_eq!(running_units(cp3), Vec::<String>::new());
    assert_eq!(present_files(cp3, &files["cp3"]), Vec::<String>::new());
    assert_eq!(cp3.ssh_ok("ls -d /var/lib/etcd.reset-*/member").lines().count(), 1);
    let again = lab.ok(&["reset", "-f", &spec, "--hosts", "cp3", "--yes"]);
    assert!(String::from_utf8_lossy(&again.stdout).ends_with("No changes.\n"), "{}", text(&again));

    // 4. Reset the whole lab.
    let out = lab.ok(&["reset", "-f", &spec, "--yes"]);
    for m in &all {
        assert_eq!(running_units(m), Vec::<String>::new(), "{}: {}", m.host, text(&out));
        let left = present_files(m, &files[&m.host]);
        assert_eq!(left, Vec::<String>::new(), "{}", m.host);
        assert_eq!(present_files(m, &["/var/lib/kubeforge/loaded/etcd.service".into()]).len(), 0);
    }
    for cp in ["cp1", "cp2", "cp3"] {
        let m = by_name(cp);
        assert!(m.ssh("test -e /var/lib/etcd").status.code() == Some(1), "{cp} data dir moved");
        let kept = m.ssh_ok("ls -d /var/lib/etcd.reset-*/member");
        assert_eq!(kept.lines().count(), 1, "{cp}: {kept}");
    }
    let again = lab.ok(&["reset", "-f", &spec, "--yes"]);
    assert!(String::from_utf8_lossy(&again.stdout).ends_with("No changes.\n"), "{}", text(&again));

    // 5. apply rebuilds the cluster on the same machines (host keys and PKI were kept).
    lab.ok(&apply);
    rt.block_on(assert_etcd_members(&lab.spec_text(), &["cp1", "cp2", "cp3"], &tls));
    for cp in ["cp1", "cp2", "cp3"] {
        let units = running_units(by_name(cp));
        assert_eq!(units, ["etcd.service", "haproxy.service", "keepalived.service"], "{cp}");
    }
    assert_eq!(lab.applied()["generation"], 1, "the whole-lab reset moved the record aside");
    lab.assert_converged(UNTIL);
}
