//! End-to-end test of a load-balancer mode switch on lab machines (issue 14 item 4): a
//! 3-control-plane + 1-worker lab applied `--until loadbalancer` with keepalived-haproxy, a
//! stand-in TLS server (`openssl s_server -www`, started as a transient unit over the lab's
//! ssh) on each control plane's address at the API port (stopped while an apply brings haproxy
//! up on the control planes: preflight's port check counts listeners by port, and haproxy's
//! 6443 would count as taken by a process that is not haproxy, nor the kubelet that will run
//! the apiserver); then the spec switched to node-local
//! and applied, and back to keepalived-haproxy and applied. After each switch every node
//! reaches a control plane's API port through the new path (the VIP, or the worker's local
//! haproxy on 127.0.0.1), nothing of the old mode is left running, enabled or on disk (units,
//! configs, keepalived's drop-in and interface script, the non-local bind sysctl, restart
//! records), no machine holds the VIP in node-local mode, and a second plan says
//! "No changes.". Finally an etcd topology change (stacked → external, w1 made the etcd host)
//! in a run without the etcd phase is refused before anything changes: the state dir's record,
//! PKI and secrets and the hosts' managed files stay byte for byte. Needs root and the lab's
//! tools; runs only with KUBEFORGE_E2E=1. The lab's name carries the pid and the lab is always
//! brought down.

use std::time::{Duration, Instant};

use kubeforge_tests::lab::{Lab, Machine, address, enabled, text};

const UNTIL: &str = "loadbalancer";
const STANDIN: &str = "kubeforge-test-standin-apiserver";

/// Every file either mode leaves on a host.
const KEEPALIVED_FILES: [&str; 6] = [
    "/etc/keepalived/keepalived.conf",
    "/etc/systemd/system/keepalived.service.d/10-kubeforge.conf",
    "/usr/local/lib/kubeforge/keepalived-interface",
    "/etc/sysctl.d/99-kubeforge-loadbalancer.conf",
    "/run/keepalived-kubeforge/interface.conf",
    "/var/lib/kubeforge/loaded/keepalived.service",
];
const HAPROXY_FILES: [&str; 3] = [
    "/etc/haproxy/haproxy.cfg",
    "/etc/haproxy/.haproxy.cfg.kubeforge-check",
    "/var/lib/kubeforge/loaded/haproxy.service",
];

/// A TLS server on `addr:6443` playing the apiserver: any GET gets `HTTP/1.0 200 ok`, so
/// haproxy's /readyz check passes. A transient unit, so it outlives the ssh session.
fn start_standin(m: &Machine, addr: &str) {
    m.ssh_ok(&format!(
        "set -e; cd /root; \
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
           -subj /CN=standin-{host} -keyout standin.key -out standin.crt 2>/dev/null; \
         systemctl reset-failed {STANDIN} 2>/dev/null || true; \
         systemd-run --unit={STANDIN} openssl s_server -quiet -www -accept {addr}:6443 \
           -cert /root/standin.crt -key /root/standin.key",
        host = m.host
    ));
}

/// Whether `from` gets an HTTP answer from a stand-in through `target` (`host:port`), over TLS.
fn reaches(from: &Machine, target: &str) -> Result<String, String> {
    let cmd = format!(
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 openssl s_client -quiet -connect {target} \
         2>/dev/null | head -1"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = from.ssh(&cmd);
        let first = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if first.starts_with("HTTP/1.0 200") {
            return Ok(first);
        }
        if Instant::now() > deadline {
            return Err(format!("{} through {target}: `{first}` ({})", from.host, text(&out)));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The units of `units` that run or start at boot on `m`.
fn units_left(m: &Machine, units: &[&str]) -> Vec<String> {
    let mut left = Vec::new();
    for u in units {
        let active = m.ssh(&format!("systemctl is-active {u}"));
        let state = String::from_utf8_lossy(&active.stdout).trim().to_string();
        if state == "active" || state == "activating" {
            left.push(format!("{u} {state}"));
        }
        let enabled = m.ssh(&format!("systemctl is-enabled {u}"));
        let state = String::from_utf8_lossy(&enabled.stdout).trim().to_string();
        if state == "enabled" {
            left.push(format!("{u} {state}"));
        }
    }
    left
}

/// The files of `files` that exist on `m`.
fn files_left(m: &Machine, files: &[&str]) -> Vec<String> {
    let script: String = files
        .iter()
        .map(|f| format!("test -e '{f}' && echo '{f}';"))
        .chain(["true".into()])
        .collect();
    m.ssh_ok(&script).lines().map(str::to_string).collect()
}

fn holds(m: &Machine, vip: &str) -> bool {
    m.ssh_ok("ip -br addr").split_whitespace().any(|w| w.starts_with(&format!("{vip}/")))
}

fn switch_to_node_local(spec: &str, vip: &str) -> String {
    let out = spec
        .replace(&format!("  controlPlaneEndpoint: {vip}:6443\n"), "")
        .replace("    mode: keepalived-haproxy\n", "    mode: node-local\n")
        .replace(&format!("    vip: {vip}\n"), "");
    assert!(out.contains("mode: node-local") && !out.contains(vip), "{out}");
    out
}

/// sha256 of every file kubeforge manages on `m` (for "nothing changed").
fn digests(m: &Machine) -> String {
    m.ssh_ok(
        "find /etc/haproxy /etc/keepalived /etc/systemd/system /etc/kubernetes /var/lib/kubeforge \
         -type f 2>/dev/null | sort | xargs -r sha256sum",
    )
}

#[test]
fn keepalived_haproxy_to_node_local_and_back_leaves_nothing_of_the_old_mode() {
    if !enabled() {
        return;
    }
    let lab = Lab::up(&format!("sm{}", std::process::id() % 100_000), &[]);
    let spec_arg = lab.spec_arg().to_string();
    let apply = ["apply", "-f", &spec_arg, "--until", UNTIL, "--yes"];
    let (all, vip) = lab.machines();
    let vip = vip.expect("a 3-control-plane lab has a VIP");
    let keepalived_spec = lab.spec_text();
    let cps: Vec<&Machine> = all.iter().filter(|m| m.host.starts_with("cp")).collect();
    let worker = all.iter().find(|m| m.host == "w1").expect("w1");
    assert_eq!(cps.len(), 3);

    // keepalived-haproxy: every node reaches a stand-in through the VIP.
    lab.ok(&apply);
    for m in &cps {
        start_standin(m, &address(&keepalived_spec, &m.host));
    }
    let through_vip = format!("{vip}:6443");
    for m in &all {
        reaches(m, &through_vip).unwrap();
    }

    // → node-local.
    let started = Instant::now();
    std::fs::write(&lab.spec, switch_to_node_local(&keepalived_spec, &vip)).unwrap();
    let plan = lab.ok(&["plan", "-f", &spec_arg, "--until", UNTIL]);
    let shown = text(&plan);
    assert!(shown.contains("systemctl stop keepalived.service"), "{shown}");
    lab.ok(&apply);
    eprintln!("switch to node-local applied in {:.1?}", started.elapsed());
    reaches(worker, "127.0.0.1:6443").unwrap();
    assert_eq!(files_left(worker, &["/etc/haproxy/haproxy.cfg"]).len(), 1);
    for m in &cps {
        // Control planes use no balancer in node-local mode: their own apiserver.
        reaches(m, &format!("{}:6443", address(&keepalived_spec, &m.host))).unwrap();
        let units = units_left(m, &["keepalived.service", "haproxy.service"]);
        assert!(units.is_empty(), "{}: {units:?}", m.host);
        let mut files = files_left(m, &KEEPALIVED_FILES);
        files.extend(files_left(m, &HAPROXY_FILES));
        assert!(files.is_empty(), "{}: {files:?}", m.host);
        assert!(!holds(m, &vip), "{} still holds the VIP", m.host);
    }
    lab.assert_converged(UNTIL);

    // → back to keepalived-haproxy.
    let started = Instant::now();
    std::fs::write(&lab.spec, &keepalived_spec).unwrap();
    for m in &cps {
        m.ssh_ok(&format!("systemctl stop {STANDIN}"));
    }
    lab.ok(&apply);
    eprintln!("switch back to keepalived-haproxy applied in {:.1?}", started.elapsed());
    for m in &cps {
        start_standin(m, &address(&keepalived_spec, &m.host));
    }
    for m in &all {
        reaches(m, &through_vip).unwrap();
    }
    let units = units_left(worker, &["haproxy.service", "keepalived.service"]);
    assert!(units.is_empty(), "w1: {units:?}");
    let mut files = files_left(worker, &HAPROXY_FILES);
    files.extend(files_left(worker, &KEEPALIVED_FILES));
    assert!(files.is_empty(), "w1: {files:?}");
    assert_eq!(cps.iter().filter(|m| holds(m, &vip)).count(), 1);
    lab.assert_converged(UNTIL);

    // An etcd topology change (w1 made the external etcd host) in a run that does not cover
    // the etcd phase, where the switch starts, is refused before anything changes: the state
    // dir's record, PKI and secrets and every host's managed files stay. (The switch itself is
    // etcd_topology_e2e's.)
    let state = lab.dir.path().join(".kubeforge").join(&lab.name);
    let state_before = state_digest(&state);
    let before: Vec<String> = all.iter().map(digests).collect();
    let external = keepalived_spec
        .replace("topology: stacked", "topology: external")
        .replace("roles: [worker]", "roles: [etcd]");
    assert!(external.contains("roles: [etcd]"), "{external}");
    std::fs::write(&lab.spec, &external).unwrap();
    let refused = lab.run(&["apply", "-f", lab.spec_arg(), "--until", "pki", "--yes"]);
    let said = text(&refused);
    assert!(!refused.status.success(), "{said}");
    // miette wraps the message to the terminal's width: compare words.
    let words: Vec<&str> = said.split_whitespace().filter(|w| *w != "│").collect();
    let flat = words.join(" ");
    assert!(flat.contains("etcd topology change refused (stacked → external"), "{said}");
    assert!(flat.contains("starts in the etcd phase"), "{said}");
    assert!(flat.contains("Set `spec.etcd.topology` back to `stacked`"), "{said}");
    assert_eq!(state_digest(&state), state_before, "state dir unchanged");
    let after: Vec<String> = all.iter().map(digests).collect();
    assert_eq!(after, before, "no host changed");
    std::fs::write(&lab.spec, &keepalived_spec).unwrap();
    lab.assert_converged(UNTIL);
}

/// The state dir's applied record, PKI and secrets, as `sha256  path` lines.
fn state_digest(state: &std::path::Path) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("find applied.json secrets.json pki -type f | sort | xargs sha256sum")
        .current_dir(state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
