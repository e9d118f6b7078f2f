//! End-to-end test of removing hosts from a running lab cluster: 5 stacked control planes and 2
//! workers applied `--until loadbalancer` (keepalived-haproxy); leadership is moved to cp5 so
//! that one of the removed members leads; cp4, cp5 and w2 are removed from the spec and one
//! `apply` cleans them: etcd has exactly cp1–cp3 as healthy voters, the removed machines run no
//! etcd, haproxy or keepalived and keep their etcd data aside, every remaining haproxy.cfg lists
//! exactly cp1–cp3, the record forgets the removed hosts, and a second apply says
//! "No changes.". Needs root and the lab's tools; runs only with KUBEFORGE_E2E=1. The lab's
//! name carries the pid and the lab is always brought down.

use kubeforge::etcd::EtcdClient;
use kubeforge_tests::lab::{
    ETCD_TIMEOUTS, Lab, Machine, assert_disk_for_lab, assert_etcd_members, enabled, etcd_endpoints,
    runtime, spec_without_hosts, text,
};

const UNTIL: &str = "loadbalancer";
const REMOVED: [&str; 3] = ["cp4", "cp5", "w2"];

/// Which of etcd, haproxy and keepalived run on `m`.
fn running(m: &Machine) -> Vec<String> {
    let units = ["etcd.service", "haproxy.service", "keepalived.service"];
    let out = m.ssh(&format!("systemctl is-active {}", units.join(" ")));
    let states = String::from_utf8_lossy(&out.stdout).into_owned();
    units
        .iter()
        .zip(states.lines())
        .filter(|(_, s)| *s == "active" || *s == "activating")
        .map(|(u, _)| u.to_string())
        .collect()
}

/// Moves etcd leadership to `target` (sent to the current leader, as etcd requires).
async fn make_leader(spec: &str, target: &str, tls: &kubeforge::etcd::EtcdTls) {
    let names = ["cp1", "cp2", "cp3", "cp4", "cp5"];
    let eps = etcd_endpoints(spec, &names);
    let first = EtcdClient::connect(&eps[0], Some(tls), ETCD_TIMEOUTS).await.expect("connect");
    let members = first.member_list().await.expect("member list");
    let id = |n: &str| members.iter().find(|m| m.name == n).map(|m| m.id).expect("member");
    let target_id = id(target);
    for _ in 0..30 {
        let leader = first.status().await.expect("status").leader;
        if leader == target_id {
            return;
        }
        if let Some(m) = members.iter().find(|m| m.id == leader) {
            let ep = eps.iter().find(|e| e.name == m.name).expect("leader endpoint");
            let client = EtcdClient::connect(ep, Some(tls), ETCD_TIMEOUTS).await.expect("connect");
            let _ = client.move_leader(target_id).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    panic!("{target} did not become the etcd leader");
}

#[test]
fn removing_two_control_planes_one_leading_and_a_worker_cleans_them_in_one_apply() {
    if !enabled() {
        return;
    }
    assert_disk_for_lab();
    let args = ["--control-planes", "5", "--workers", "2"];
    let lab = Lab::up(&format!("r{}", std::process::id() % 100_000), &args);
    let spec = lab.spec_arg().to_string();
    let apply = ["apply", "-f", spec.as_str(), "--until", UNTIL, "--yes"];
    lab.ok(&apply);
    let (all, _) = lab.machines();
    let by_name = |n: &str| all.iter().find(|m| m.host == n).unwrap_or_else(|| panic!("{n}"));
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    let rt = runtime();
    let five = lab.spec_text();
    rt.block_on(assert_etcd_members(&five, &["cp1", "cp2", "cp3", "cp4", "cp5"], &tls));
    // cp5 leads: removing it is what failed before leadership was moved first.
    rt.block_on(make_leader(&five, "cp5", &tls));

    // What each removed host was given, as the record says.
    let before = lab.applied();
    let given = |h: &str| -> Vec<String> {
        before["hosts"][h]["files"].as_object().expect("files").keys().cloned().collect()
    };
    assert!(given("cp4").contains(&"/etc/haproxy/haproxy.cfg".to_string()));
    std::fs::write(&lab.spec, spec_without_hosts(&five, &REMOVED)).expect("write the smaller spec");
    let plan = lab.ok(&["plan", "-f", &spec, "--until", UNTIL]);
    let shown = String::from_utf8_lossy(&plan.stdout).into_owned();
    for h in REMOVED {
        assert!(shown.contains(&format!("  {h} (")), "{h} is named: {shown}");
    }
    assert!(shown.contains("move leadership away from cp5"), "{shown}");
    assert!(shown.contains("cleaned by this run"), "{shown}");

    let started = std::time::Instant::now();
    let out = lab.ok(&apply);
    let shown = text(&out);
    eprintln!("{shown}");
    eprintln!("{}: the removing apply took {:.1} s", lab.name, started.elapsed().as_secs_f64());
    rt.block_on(assert_etcd_members(&lab.spec_text(), &["cp1", "cp2", "cp3"], &tls));
    for h in REMOVED {
        let m = by_name(h);
        assert_eq!(running(m), Vec::<String>::new(), "{h} still runs: {shown}");
        let files = given(h);
        assert!(!files.is_empty(), "{h} was given files");
        let script: String =
            files.iter().map(|f| format!("test -e '{f}' && echo '{f}';")).collect();
        let left = m.ssh_ok(&format!("{script} true"));
        assert_eq!(left, "", "{h} keeps managed files");
    }
    for h in ["cp4", "cp5"] {
        let m = by_name(h);
        assert_eq!(m.ssh("test -e /var/lib/etcd").status.code(), Some(1), "{h}: data dir moved");
        let kept = m.ssh_ok("ls -d /var/lib/etcd.removed-*/member");
        assert_eq!(kept.lines().count(), 1, "{h} keeps its etcd data aside: {kept}");
    }
    let staying = lab.spec_text();
    let want: Vec<String> = ["cp1", "cp2", "cp3"]
        .iter()
        .map(|h| format!("{h} {}", kubeforge_tests::lab::address(&staying, h)))
        .collect();
    for h in ["cp1", "cp2", "cp3"] {
        let cfg = by_name(h).ssh_ok("cat /etc/haproxy/haproxy.cfg");
        let servers: Vec<String> = cfg
            .lines()
            .filter_map(|l| l.trim().strip_prefix("server "))
            .map(|l| {
                let mut w = l.split_whitespace();
                let (name, addr) = (w.next().unwrap_or(""), w.next().unwrap_or(""));
                format!("{name} {}", addr.rsplit_once(':').map_or(addr, |(a, _)| a))
            })
            .collect();
        assert_eq!(servers, want, "{h}'s haproxy backends:\n{cfg}");
        assert_eq!(running(by_name(h)), ["etcd.service", "haproxy.service", "keepalived.service"]);
    }
    let record = lab.applied();
    let hosts: Vec<&String> = record["hosts"].as_object().expect("hosts").keys().collect();
    assert_eq!(hosts, ["cp1", "cp2", "cp3", "w1"], "{record}");
    assert!(record.get("departed").is_none(), "the cleaned hosts leave the record: {record}");

    let again = lab.ok(&apply);
    assert!(String::from_utf8_lossy(&again.stdout).contains("No changes."), "{}", text(&again));
    lab.assert_converged(UNTIL);
}
