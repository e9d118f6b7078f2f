//! End-to-end test of `kubeforge lab` on this host: bring a lab up, reach every machine over SSH
//! with systemd running, power one machine off and on, bring the lab down and check that no
//! process, link, mount or directory is left behind. Needs root, systemd-container and
//! debootstrap; runs only with KUBEFORGE_E2E=1 (CI sets it) and prints why it skipped otherwise.
//! The binary is `KUBEFORGE_BIN`, else `kubeforge` next to this test's target directory.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn kubeforge(args: &[&str]) -> Output {
    Command::new(kubeforge_tests::lab::kubeforge_bin()).args(args).output().expect("run kubeforge")
}

fn ok(args: &[&str]) -> String {
    let out = kubeforge(args);
    assert!(
        out.status.success(),
        "kubeforge {} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status(name: &str) -> Value {
    serde_json::from_str(&ok(&["-o", "json", "lab", "status", "--name", name]))
        .expect("status json")
}

/// Runs `remote` over SSH with the login command `lab status` prints for the machine.
fn ssh(login: &str, remote: &str) -> Output {
    let words: Vec<&str> = login.split_whitespace().collect();
    Command::new(words[0])
        .args(&words[1..])
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=3",
            "-o",
            "StrictHostKeyChecking=yes",
            remote,
        ])
        .output()
        .expect("run ssh")
}

fn links() -> BTreeSet<String> {
    std::fs::read_dir("/sys/class/net")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect()
}

fn nspawn_processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else { continue };
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("systemd-nspawn") && text.contains(&dir.to_string_lossy().into_owned()) {
            found.push(text);
        }
    }
    found
}

/// Brings the lab down even when an assertion fails half-way.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubeforge(&["lab", "down", "--name", &self.0]);
    }
}

#[test]
fn lab_up_reach_every_machine_stop_start_and_down_leaves_nothing() {
    if !kubeforge_tests::lab::enabled() {
        return;
    }
    let name = format!("e2e-{}", std::process::id());
    let work = tempfile::tempdir().unwrap();
    let spec = work.path().join("lab.cluster.yaml");
    let links_before = links();
    let _cleanup = Cleanup(name.clone());

    let out = ok(&["lab", "up", "--name", &name, "--spec-out", spec.to_str().unwrap()]);
    assert!(out.contains(&format!("Lab {name} is up: 4 machines ready")), "{out}");

    let st = status(&name);
    let machines = st["machines"].as_array().unwrap().clone();
    let hosts: Vec<&str> = machines.iter().map(|m| m["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, ["cp1", "cp2", "cp3", "w1"]);
    let login_of = |host: &str| -> String {
        machines.iter().find(|m| m["host"] == host).unwrap()["ssh"].as_str().unwrap().to_string()
    };
    // The lab dir holds the key: `ssh -i <lab dir>/id_ed25519 …`.
    let lab_dir = PathBuf::from(login_of("cp1").split_whitespace().nth(2).unwrap())
        .parent()
        .unwrap()
        .to_path_buf();

    let spec_text = std::fs::read_to_string(&spec).unwrap();
    assert!(spec_text.contains("mode: keepalived-haproxy"), "{spec_text}");
    assert!(spec_text.contains(&format!("vip: {}", st["vip"].as_str().unwrap())), "{spec_text}");
    for m in &machines {
        let address = m["address"].as_str().unwrap();
        assert!(
            spec_text.contains(&format!("      address: {address}\n")),
            "{address} missing in\n{spec_text}"
        );
        assert_eq!(m["state"], "running");

        let login = m["ssh"].as_str().unwrap();
        let out = ssh(
            login,
            "hostname; systemctl is-system-running; sshd -T | grep -i '^passwordauthentication'",
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first().copied(), m["host"].as_str(), "hostname of {address}: {text}");
        assert!(
            matches!(lines.get(1).copied(), Some("running" | "degraded")),
            "systemd on {address}: {text}"
        );
        assert_eq!(lines.get(2).copied(), Some("passwordauthentication no"), "{text}");
    }
    // The artifact directory the spec names is there, with etcd v3.5.1.
    let artifacts = spec_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("source: \"dir:"))
        .unwrap()
        .trim_end_matches('"');
    assert!(Path::new(artifacts).join("etcd/v3.5.1/etcd").is_file(), "{artifacts}");

    // Power w1 off and on again.
    ok(&["lab", "stop", "w1", "--name", &name]);
    let st = status(&name);
    let w1 = st["machines"].as_array().unwrap().iter().find(|m| m["host"] == "w1").unwrap().clone();
    assert_eq!(w1["state"], "stopped");
    assert!(!ssh(&login_of("w1"), "true").status.success(), "w1 still answers after stop");
    assert!(ssh(&login_of("cp1"), "true").status.success(), "cp1 went away with w1");
    ok(&["lab", "start", "w1", "--name", &name]);
    let out = ssh(&login_of("w1"), "systemctl is-system-running");
    assert!(matches!(String::from_utf8_lossy(&out.stdout).trim(), "running" | "degraded"));

    // Down, twice (idempotent), and nothing is left.
    let out = ok(&["lab", "down", "--name", &name]);
    assert!(out.contains("removed (4 machines stopped)"), "{out}");
    let out = ok(&["lab", "down", "--name", &name]);
    assert!(out.contains("not up"), "{out}");
    assert!(!lab_dir.exists(), "{} left behind", lab_dir.display());
    assert_eq!(nspawn_processes_under(&lab_dir), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&lab_dir.to_string_lossy().into_owned()), "mounts left:\n{mounts}");
    // Only links this lab could have made (other labs may come and go meanwhile): its bridge
    // `kf-e2e…` and the machines' veths `vb-e2e…`.
    let new_links: Vec<String> =
        links().difference(&links_before).filter(|l| l.contains("e2e")).cloned().collect();
    assert_eq!(new_links, Vec::<String>::new(), "links left behind");
    assert!(spec.exists(), "down keeps the written spec");
    let out = kubeforge(&["lab", "status", "--name", &name]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("there is no lab `{name}`")));
}
