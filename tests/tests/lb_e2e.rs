//! End-to-end test of the load balancer on lab machines: `apply --until loadbalancer` on 3
//! control planes + 1 worker gives haproxy on every control plane, the VIP on exactly one and
//! a 3-member etcd; a second plan says "No changes."; a hand-edited haproxy.cfg is put back with
//! a reload; powering off the VIP holder moves the VIP to exactly one other control plane (the
//! time it took is printed) while a writer keeps writing to etcd and loses nothing; powering it
//! on and applying again converges to a healthy 3-member cluster. A second test swaps two
//! hosts' addresses in the spec and expects host-key verification (strict, with the lab's
//! known_hosts, whose keys are bound to host names) to refuse before anything changes on any
//! host. Needs root and the lab's tools; runs only with KUBEFORGE_E2E=1.

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kubeforge_tests::lab::{
    Lab, Machine, assert_all_written, assert_etcd_members, enabled, etcd_endpoints, etcd_writer,
    kubeforge_bin, runtime, text,
};

const UNTIL: &str = "loadbalancer";

/// Whether `vip` is on one of the machine's interfaces (`ip -br addr`); `None` when the
/// machine does not answer.
fn holds_vip(m: &Machine, vip: &str) -> Option<bool> {
    let out = m.ssh("ip -br addr");
    if !out.status.success() {
        return None;
    }
    let listing = String::from_utf8_lossy(&out.stdout);
    let needle = format!(" {vip}/");
    Some(listing.lines().any(|l| format!("{l} ").contains(&needle)))
}

fn holders<'a>(cps: &[&'a Machine], vip: &str) -> Vec<&'a str> {
    cps.iter().filter(|m| holds_vip(m, vip) == Some(true)).map(|m| m.host.as_str()).collect()
}

/// Waits up to 15 s for the VIP to settle on exactly one machine.
fn settled_holders<'a>(cps: &[&'a Machine], vip: &str) -> Vec<&'a str> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut held = holders(cps, vip);
    while held.len() != 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        held = holders(cps, vip);
    }
    held
}

#[test]
fn haproxy_on_every_control_plane_vip_on_one_and_it_moves_when_its_holder_powers_off() {
    if !enabled() {
        return;
    }
    let started = Instant::now();
    let lab = Lab::up(&format!("lb{}", std::process::id() % 100_000), &[]);
    let spec_arg = lab.spec_arg();
    let apply = ["apply", "-f", spec_arg, "--until", UNTIL, "--yes"];
    let plan = ["plan", "-f", spec_arg, "--until", UNTIL];
    let (all, vip) = lab.machines();
    let vip = vip.expect("a 3-control-plane lab has a VIP");
    let cps: Vec<&Machine> = all.iter().filter(|m| m.host.starts_with("cp")).collect();
    assert_eq!(cps.len(), 3);
    let worker = all.iter().find(|m| m.host == "w1").expect("w1");

    let apply_started = Instant::now();
    lab.ok(&apply);
    let apply_took = apply_started.elapsed();
    let spec = lab.spec_text();
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    let rt = runtime();
    rt.block_on(assert_etcd_members(&spec, &["cp1", "cp2", "cp3"], &tls));

    let port = format!("{vip}:6443");
    for m in &cps {
        let units = m.ssh_ok("systemctl is-active haproxy.service keepalived.service");
        assert_eq!(units, "active\nactive\n", "{}", m.host);
        let listening = m.ssh_ok("ss -Hltn");
        assert!(listening.contains(&port), "{} does not listen on {port}:\n{listening}", m.host);
        let cfg = m.ssh_ok("cat /etc/haproxy/haproxy.cfg");
        for backend in ["cp1", "cp2", "cp3"] {
            assert!(cfg.contains(&format!("    server {backend} ")), "{}: {cfg}", m.host);
        }
    }
    // Workers run no load balancer in keepalived-haproxy mode.
    assert!(!worker.ssh_ok("ss -Hltn").contains(":6443"));
    // keepalived needs a moment after start to elect the holder.
    let held = settled_holders(&cps, &vip);
    assert_eq!(held.len(), 1, "the VIP {vip} must be on exactly one control plane: {held:?}");
    let holder = held[0].to_string();

    let replan_started = Instant::now();
    lab.assert_converged(UNTIL);
    let replan_took = replan_started.elapsed();

    // A hand-edited haproxy.cfg is put back and haproxy reloaded, not restarted: its main
    // (master) process stays the same.
    let edited = cps[1];
    let main_pid = |m: &Machine| m.ssh_ok("systemctl show -p MainPID --value haproxy.service");
    let pid_before = main_pid(edited);
    edited.ssh_ok("sed -i 's/retries 3/retries 5/' /etc/haproxy/haproxy.cfg");
    let planned = lab.ok(&plan);
    let shown = String::from_utf8_lossy(&planned.stdout);
    assert!(shown.contains("-    retries 5\n"), "{shown}");
    assert!(shown.contains("systemctl reload haproxy.service"), "{shown}");
    lab.ok(&apply);
    assert_eq!(main_pid(edited), pid_before, "haproxy on {} was restarted", edited.host);
    assert!(edited.ssh_ok("cat /etc/haproxy/haproxy.cfg").contains("    retries 3\n"));
    lab.assert_converged(UNTIL);

    // Fault: power the holder off and time the VIP's move to a survivor, while a writer keeps
    // writing to etcd through the survivors.
    let survivors: Vec<&Machine> = cps.iter().copied().filter(|m| m.host != holder).collect();
    let survivor_names: Vec<&str> = survivors.iter().map(|m| m.host.as_str()).collect();
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writes = rt.spawn(etcd_writer(
        etcd_endpoints(&spec, &survivor_names),
        tls.clone(),
        stop_writing.clone(),
    ));
    std::thread::sleep(Duration::from_secs(1));
    let stop_started = Instant::now();
    let mut stop = Command::new(kubeforge_bin())
        .current_dir(lab.dir.path())
        .args(["lab", "stop", "--name", &lab.name, &holder])
        .spawn()
        .expect("spawn lab stop");
    let mut moved = None;
    while stop_started.elapsed() < Duration::from_secs(30) {
        let now_held = holders(&survivors, &vip);
        if now_held.len() == 1 {
            moved = Some((now_held[0].to_string(), stop_started.elapsed()));
            break;
        }
        assert!(now_held.len() < 2, "the VIP is on two survivors at once: {now_held:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let stop_status = stop.wait().expect("lab stop");
    assert!(stop_status.success(), "lab stop {holder} failed");
    let (new_holder, failover) =
        moved.unwrap_or_else(|| panic!("the VIP did not move from {holder} within 30 s"));
    // Still exactly one once the old holder is fully off.
    assert_eq!(holders(&survivors, &vip), [new_holder.as_str()]);
    assert!(failover < Duration::from_secs(10), "failover took {failover:?}");
    // etcd kept its quorum on the two survivors: writes went on.
    std::thread::sleep(Duration::from_secs(2));
    stop_writing.store(true, Ordering::Relaxed);
    let (acked, longest) = rt.block_on(writes).expect("writer task");
    assert!(acked > 20, "the writer barely wrote ({acked}) with {holder} off");
    let survivor_ep = &etcd_endpoints(&spec, &[survivor_names[0]])[0];
    rt.block_on(assert_all_written(survivor_ep, &tls, acked));

    lab.ok(&["lab", "start", "--name", &lab.name, &holder]);
    lab.ok(&apply);
    lab.assert_converged(UNTIL);
    rt.block_on(assert_etcd_members(&spec, &["cp1", "cp2", "cp3"], &tls));
    let held = settled_holders(&cps, &vip);
    assert_eq!(held.len(), 1, "after the restart the VIP is on exactly one: {held:?}");
    for m in &cps {
        assert_eq!(m.ssh_ok("systemctl is-active haproxy.service"), "active\n", "{}", m.host);
    }
    eprintln!(
        "lb_e2e figures: apply --until loadbalancer {:.1} s; no-op re-plan {:.2} s; VIP moved \
         from {holder} to {new_holder} {:.2} s after `lab stop` began; {acked} etcd writes \
         meanwhile, longest wait {:.2} s; whole test {:.0} s",
        apply_took.as_secs_f64(),
        replan_took.as_secs_f64(),
        failover.as_secs_f64(),
        longest.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn a_spec_with_two_hosts_addresses_swapped_is_refused_before_anything_changes() {
    if !enabled() {
        return;
    }
    let name = format!("sw{}", std::process::id() % 100_000);
    let lab = Lab::up(&name, &["--control-planes", "1", "--workers", "2"]);
    let (all, _) = lab.machines();
    let text_before = lab.spec_text();
    assert!(text_before.contains("hostKeyPolicy: strict"), "{text_before}");
    // The state dir's PKI and secrets exist before the swap (as after any earlier apply).
    lab.ok(&["certs", "generate", "-f", lab.spec_arg()]);
    let state_dir = lab.dir.path().join(".kubeforge").join(&name);
    let state_files = || {
        let mut files = std::collections::BTreeMap::new();
        let mut stack = vec![state_dir.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.starts_with(state_dir.join("pki")) || p.ends_with("secrets.json") {
                    // The PKI and the secrets (known_hosts and the lock file are not compared).
                    files.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        files
    };
    let state_before = state_files();
    assert!(!state_before.is_empty(), "the PKI exists before the swap");

    // Swap cp1's and w1's addresses.
    let address_of = |host: &str| -> String {
        let at = text_before.find(&format!("- name: {host}\n")).expect("host in spec");
        let rest = &text_before[at..];
        let line = rest.lines().find(|l| l.trim_start().starts_with("address:")).unwrap();
        line.trim().trim_start_matches("address:").trim().to_string()
    };
    let (a, b) = (address_of("cp1"), address_of("w1"));
    let swapped = text_before
        .replace(&format!("address: {a}\n"), "address: @A@\n")
        .replace(&format!("address: {b}\n"), &format!("address: {a}\n"))
        .replace("address: @A@\n", &format!("address: {b}\n"));
    assert_ne!(swapped, text_before);
    std::fs::write(&lab.spec, &swapped).unwrap();

    let fingerprint =
        |m: &Machine| m.ssh_ok("sha256sum /etc/hosts; ls /etc/modules-load.d /etc/sysctl.d");
    let before: Vec<String> = all.iter().map(fingerprint).collect();
    let apply = lab.run(&["apply", "-f", lab.spec_arg(), "--until", "os", "--yes"]);
    let shown = text(&apply);
    assert!(!apply.status.success(), "{shown}");
    assert!(shown.to_lowercase().contains("host key"), "the refusal names host keys: {shown}");
    assert!(shown.contains("cp1") && shown.contains("w1"), "both hosts are named: {shown}");
    assert!(shown.contains("nothing was changed on any host"), "{shown}");
    let after: Vec<String> = all.iter().map(fingerprint).collect();
    assert_eq!(before, after, "nothing changed on the machines");

    // With the etcd phase selected, the refusal is still the error (never etcd's quorum, whose
    // advice to restore a snapshot would destroy a healthy cluster), for plan and apply alike,
    // and the state dir's PKI and secrets stay byte for byte as they were: no certificate is
    // reissued for the swapped addresses.
    for args in [
        vec!["plan", "-f", lab.spec_arg(), "--until", "etcd"],
        vec!["apply", "-f", lab.spec_arg(), "--until", "etcd", "--yes"],
    ] {
        let out = lab.run(&args);
        let shown = text(&out);
        assert!(!out.status.success(), "{shown}");
        assert!(shown.contains("host key verification failed for"), "{shown}");
        assert!(shown.contains("cp1") && shown.contains("w1"), "{shown}");
        assert!(!shown.contains("quorum") && !shown.contains("snapshot"), "{shown}");
    }
    assert!(state_files() == state_before, "a refused run changed the state dir");
    let after: Vec<String> = all.iter().map(fingerprint).collect();
    assert_eq!(before, after, "nothing changed on the machines");
}
