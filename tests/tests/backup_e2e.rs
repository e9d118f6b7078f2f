//! Backups end to end on lab machines (a stacked 3-member etcd, `apply --until etcd` with a
//! backup schedule in the spec): 1,000 keys written; `backup create` streams a snapshot through
//! an SSH tunnel and `backup verify` restores it and finds them; the etcd phase installed the
//! kubeforge binary and the timer (`systemctl list-timers` shows its next run), and
//! `systemctl start kubeforge-backup.service` on a member writes a snapshot that `backup
//! verify` accepts; a run against a stopped member fails the unit visibly and keeps the earlier
//! backups; the CronJob's argv, run as-is on a control plane, makes a backup too (containers
//! cannot run in the lab). That is stacked etcd 3.5.1; the same on external etcd 3.4.23 (one
//! lab: create through a tunnel and with --direct, verify with etcd 3.4's tools, the timer on
//! the etcd hosts only, three timer runs leaving the retention's two backups). Runs only with KUBEFORGE_E2E=1; each lab has a unique
//! name and is always brought down.

use std::path::Path;

use kubeforge::etcd::EtcdClient;
use kubeforge_tests::lab::{
    ETCD_TIMEOUTS as T, Lab, Machine, enabled, etcd_endpoints, runtime, text,
};
use serde_json::Value;

const DEST: &str = "/var/backups/kubeforge";

fn machine<'a>(machines: &'a [Machine], host: &str) -> &'a Machine {
    machines.iter().find(|m| m.host == host).unwrap_or_else(|| panic!("no machine {host}"))
}

/// The backups (`*.db.zst`) in the destination on a machine, sorted.
fn remote_backups(m: &Machine) -> Vec<String> {
    let out = m.ssh_ok(&format!("ls -1 {DEST} | grep '\\.db\\.zst$' || true"));
    let mut v: Vec<String> = out.lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Copies a backup and its sidecar from a machine into `dir`; the local snapshot path.
fn fetch(m: &Machine, name: &str, dir: &Path) -> std::path::PathBuf {
    let base = name.trim_end_matches(".db.zst");
    for file in [format!("{base}.db.zst"), format!("{base}.json")] {
        let out = m.ssh(&format!("cat {DEST}/{file}"));
        assert!(out.status.success(), "{}", text(&out));
        std::fs::write(dir.join(&file), &out.stdout).unwrap();
    }
    dir.join(format!("{base}.db.zst"))
}

fn verify_json(lab: &Lab, what: &str) -> Value {
    let out = lab.ok(&["-o", "json", "backup", "verify", "-f", lab.spec_arg(), what]);
    serde_json::from_slice(&out.stdout).expect("verify json")
}

#[test]
fn create_verify_timer_run_failure_and_cronjob_argv() {
    if !enabled() {
        return;
    }
    let name = format!("bk{}", std::process::id() % 100000);
    let lab = Lab::up(&name, &["--control-planes", "3", "--workers", "0"]);
    let spec = with_schedule(&lab.spec_text());
    std::fs::write(&lab.spec, &spec).unwrap();
    lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"]);
    lab.assert_converged("etcd");

    // 1,000 keys.
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    runtime().block_on(async {
        let ep = &etcd_endpoints(&spec, &["cp1"])[0];
        let c = EtcdClient::connect(ep, Some(&tls), T).await.expect("connect");
        for i in 0..1000 {
            c.put(&format!("/e2e/backup/{i:04}"), format!("v{i}").as_bytes()).await.unwrap();
        }
    });

    // backup create + verify from the operator machine. The lab's members' client port is
    // reachable from here, so the default (`--via auto`) goes direct.
    let out = lab.ok(&["-o", "json", "backup", "create", "-f", lab.spec_arg()]);
    let created: Value = serde_json::from_slice(&out.stdout).expect("create json");
    assert_eq!(created["via"], "direct", "{created}");
    let endpoint = created["backup"]["endpoint"].as_str().unwrap();
    assert!(!endpoint.contains("127.0.0.1") && endpoint.ends_with(":2379"), "{created}");
    let file = created["backup"]["file"].as_str().unwrap().to_string();
    assert!(created["backup"]["keyCount"].as_u64().unwrap() >= 1000, "{created}");
    assert_ne!(created["backup"]["member"], "", "{created}");
    let verified = verify_json(&lab, file.trim_end_matches(".db.zst"));
    assert!(verified["keyCount"].as_u64().unwrap() >= 1000, "{verified}");
    assert!(verified["revision"].as_i64().unwrap() >= 1000, "{verified}");
    // Recorded in the audit log, without key material.
    let audit_dir = lab.dir.path().join(".kubeforge").join(&name).join("audit");
    let audit: String = std::fs::read_dir(&audit_dir)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    assert!(audit.contains("\"phase\":\"backup\"") && audit.contains(&file), "{audit}");
    assert!(!audit.contains("PRIVATE KEY"));

    // The timer is installed and scheduled; its service makes a snapshot.
    let (machines, _) = lab.machines();
    let cp2 = machine(&machines, "cp2");
    let timers = cp2.ssh_ok("systemctl list-timers --all --no-pager kubeforge-backup.timer");
    assert!(timers.contains("kubeforge-backup.timer"), "{timers}");
    assert!(cp2.ssh_ok("systemctl is-enabled kubeforge-backup.timer").trim() == "enabled");
    cp2.ssh_ok("systemctl start kubeforge-backup.service");
    let first = remote_backups(cp2);
    assert_eq!(first.len(), 1, "{first:?}");
    let local = tempfile::tempdir().unwrap();
    let fetched = fetch(cp2, &first[0], local.path());
    let verified = verify_json(&lab, fetched.to_str().unwrap());
    assert!(verified["keyCount"].as_u64().unwrap() >= 1000, "{verified}");
    assert_eq!(verified["checkedAgainstSidecar"], true);
    let status = cp2.ssh_ok(&format!("cat {DEST}/kubeforge-backup-status.json"));
    assert!(status.contains("\"lastResult\": \"success\""), "{status}");

    // A failing run (its member stopped): the unit fails visibly, earlier backups stay.
    cp2.ssh_ok("systemctl stop etcd");
    let out = cp2.ssh("systemctl start kubeforge-backup.service");
    assert!(!out.status.success(), "the unit must fail");
    let state = cp2.ssh("systemctl is-failed kubeforge-backup.service");
    assert_eq!(String::from_utf8_lossy(&state.stdout).trim(), "failed");
    let journal = cp2.ssh_ok("journalctl -u kubeforge-backup.service --no-pager -n 20");
    assert!(journal.contains("kubeforge backup run failed: no healthy etcd member"), "{journal}");
    assert_eq!(remote_backups(cp2), first, "the earlier backup is kept");
    let status = cp2.ssh_ok(&format!("cat {DEST}/kubeforge-backup-status.json"));
    assert!(
        status.contains("\"lastResult\": \"failure\"") && status.contains("lastSuccess"),
        "{status}"
    );
    cp2.ssh_ok("systemctl start etcd");

    // `backup list --remote` shows each member's backups and its last run.
    let out = lab.ok(&["-o", "json", "backup", "list", "-f", lab.spec_arg(), "--remote"]);
    let remote: Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(remote["cp2"]["backups"].as_array().map(Vec::len), Some(1), "{remote}");
    assert_eq!(remote["cp2"]["status"]["lastResult"], "failure", "{remote}");
    assert_eq!(remote["cp1"]["backups"].as_array().map(Vec::len), Some(0), "{remote}");
    let out = lab.ok(&["-o", "json", "backup", "list", "-f", lab.spec_arg()]);
    let local: Value = serde_json::from_slice(&out.stdout).expect("list json");
    assert_eq!(local[0]["sidecar"]["file"], file.as_str(), "{local}");
    assert!(local[0]["sidecar"]["verified"].is_object(), "verify recorded: {local}");

    // The CronJob runner's argv, rendered for this cluster, run as-is on a control plane.
    let cron_spec = lab.dir.path().join("cron.cluster.yaml");
    std::fs::write(
        &cron_spec,
        spec.replace("    retention: 2\n", "    retention: 2\n    runner: cronjob\n"),
    )
    .unwrap();
    let rendered = lab.dir.path().join("rendered");
    lab.ok(&[
        "render",
        "-f",
        cron_spec.to_str().unwrap(),
        "--state",
        lab.dir.path().join(".kubeforge").join(&name).to_str().unwrap(),
        "--out",
        rendered.to_str().unwrap(),
    ]);
    let manifest =
        std::fs::read_to_string(rendered.join("cp1/etc/kubernetes/addons/etcd-backup.yaml"))
            .unwrap();
    let cronjob: Value = serde_saphyr::from_str(&manifest).expect("cronjob yaml");
    let argv: Vec<String> =
        cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["command"]
            .as_array()
            .expect("command")
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
    assert_eq!(&argv[..3], ["/usr/local/bin/kubeforge", "backup", "run"]);
    let cp1 = machine(&machines, "cp1");
    // cp1 has the apiserver's etcd client certificate the CronJob mounts? Only with the pki
    // phase's control-plane files; check and report.
    let quoted: Vec<String> =
        argv.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))).collect();
    let out = cp1.ssh(&quoted.join(" "));
    assert!(out.status.success(), "CronJob argv on cp1: {}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("kubeforge backup run: saved "));
}

/// The spec's backup schedule (retention 2 into [`DEST`]) added to a lab's spec.
fn with_schedule(spec: &str) -> String {
    spec.replace(
        "  hosts:\n",
        &format!(
            "  backup:\n    schedule: \"0 3 * * *\"\n    retention: 2\n    destination: {DEST}\n  hosts:\n"
        ),
    )
}

#[test]
fn external_etcd_34_create_verify_timer_runs_and_retention() {
    if !enabled() {
        return;
    }
    let name = format!("bkx{}", std::process::id() % 100000);
    let lab = Lab::up(&name, &["--control-planes", "1", "--workers", "0", "--etcd", "3"]);
    let spec = with_schedule(&lab.spec_text()).replace("version: v3.5.1", "version: v3.4.23");
    assert!(spec.contains("topology: external") && spec.contains("version: v3.4.23"), "{spec}");
    std::fs::write(&lab.spec, &spec).unwrap();
    lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"]);
    lab.assert_converged("etcd");

    let tls = lab.etcd_tls("nodes/cp1/apiserver-etcd-client");
    runtime().block_on(async {
        let ep = &etcd_endpoints(&spec, &["etcd1"])[0];
        let c = EtcdClient::connect(ep, Some(&tls), T).await.expect("connect");
        for i in 0..1000 {
            c.put(&format!("/e2e/backup/{i:04}"), format!("v{i}").as_bytes()).await.unwrap();
        }
    });

    // backup create through an SSH tunnel to an etcd host; verify with etcd 3.4's tools.
    let out = lab.ok(&["-o", "json", "backup", "create", "-f", lab.spec_arg(), "--via", "tunnel"]);
    let created: Value = serde_json::from_slice(&out.stdout).expect("create json");
    assert_eq!(created["via"], "tunnel", "{created}");
    assert!(created["backup"]["endpoint"].as_str().unwrap().contains("127.0.0.1"), "{created}");
    let backup = &created["backup"];
    assert!(backup["etcdVersion"].as_str().unwrap().starts_with("3.4."), "{created}");
    assert!(backup["member"].as_str().unwrap().starts_with("etcd"), "{created}");
    assert_eq!(backup["members"].as_array().map(Vec::len), Some(3), "{created}");
    assert!(backup["keyCount"].as_u64().unwrap() >= 1000, "{created}");
    let file = backup["file"].as_str().unwrap().to_string();
    let verified = verify_json(&lab, file.trim_end_matches(".db.zst"));
    assert!(verified["keyCount"].as_u64().unwrap() >= 1000, "{verified}");
    assert!(verified["revision"].as_i64().unwrap() >= 1000, "{verified}");

    // --direct: the same over mutual TLS to the members' client port, no SSH tunnel.
    let out = lab.ok(&["-o", "json", "backup", "create", "-f", lab.spec_arg(), "--direct"]);
    let direct: Value = serde_json::from_slice(&out.stdout).expect("create json");
    let endpoint = direct["backup"]["endpoint"].as_str().unwrap();
    assert!(!endpoint.contains("127.0.0.1") && endpoint.ends_with(":2379"), "{direct}");
    assert_eq!(direct["via"], "direct", "{direct}");
    assert!(direct["backup"]["keyCount"].as_u64().unwrap() >= 1000, "{direct}");
    assert_ne!(direct["backup"]["file"], backup["file"], "{direct}");

    // The timer is on the etcd hosts, not on the control plane; three runs keep two backups.
    let (machines, _) = lab.machines();
    let cp1 = machine(&machines, "cp1");
    let units = cp1.ssh_ok("systemctl list-unit-files --no-legend 'kubeforge-backup*' | wc -l");
    assert_eq!(units.trim(), "0", "no backup units on a control plane of external etcd");
    let etcd2 = machine(&machines, "etcd2");
    let timers = etcd2.ssh_ok("systemctl list-timers --all --no-pager kubeforge-backup.timer");
    assert!(timers.contains("kubeforge-backup.timer"), "{timers}");
    let mut runs = Vec::new();
    for _ in 0..3 {
        etcd2.ssh_ok("systemctl start kubeforge-backup.service");
        let now = remote_backups(etcd2);
        runs.push(now.clone());
        std::thread::sleep(std::time::Duration::from_millis(1100)); // a new name each run
    }
    assert_eq!(runs[0].len(), 1, "{runs:?}");
    assert_eq!(runs[1].len(), 2, "{runs:?}");
    assert_eq!(runs[2].len(), 2, "retention 2: {runs:?}");
    assert!(!runs[2].contains(&runs[0][0]), "the oldest was pruned: {runs:?}");
    let newest = runs[2].iter().find(|n| !runs[1].contains(n)).expect("the third run's backup");
    let local = tempfile::tempdir().unwrap();
    let fetched = fetch(etcd2, newest, local.path());
    let verified = verify_json(&lab, fetched.to_str().unwrap());
    assert!(verified["keyCount"].as_u64().unwrap() >= 1000, "{verified}");
    assert_eq!(verified["checkedAgainstSidecar"], true, "{verified}");
    let status = etcd2.ssh_ok(&format!("cat {DEST}/kubeforge-backup-status.json"));
    assert!(status.contains("\"lastResult\": \"success\""), "{status}");
}
