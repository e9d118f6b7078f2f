//! End-to-end test of switching etcd from stacked to external on lab machines. A lab of 3
//! control planes and 3 etcd machines is applied `--until loadbalancer` with the etcd machines
//! left out of the spec and `topology: stacked` (etcd on cp1..cp3), and keys are written; then
//! the spec is switched to `topology: external` with the 3 etcd hosts and applied again while a
//! writer keeps writing: the new members join as learners one at a time and are promoted, then
//! the control planes' members are removed one at a time. Afterwards the 3 external members
//! hold every key, etcd has exactly 3 healthy voting members (etcd1..etcd3), no control plane
//! runs etcd and each kept its data dir aside, and a second apply says "No changes.". Needs
//! root and the lab's tools; runs only with KUBEFORGE_E2E=1. The lab's name carries the pid
//! and the lab is always brought down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kubeforge_tests::lab::{
    Lab, assert_all_written, assert_disk_for_lab, assert_etcd_members, enabled, etcd_endpoints,
    etcd_writer, runtime, spec_without_hosts, text,
};

const UNTIL: &str = "loadbalancer";
const ETCD_HOSTS: [&str; 3] = ["etcd1", "etcd2", "etcd3"];
const CONTROL_PLANES: [&str; 3] = ["cp1", "cp2", "cp3"];

#[test]
fn stacked_etcd_moves_to_external_hosts_without_losing_a_write() {
    if !enabled() {
        return;
    }
    assert_disk_for_lab();
    let lab = Lab::up(
        &format!("t{}", std::process::id() % 100_000),
        &["--control-planes", "3", "--workers", "0", "--etcd", "3"],
    );
    let spec = lab.spec_arg().to_string();
    let external = lab.spec_text();
    assert!(external.contains("topology: external"), "{external}");
    let stacked = spec_without_hosts(&external, &ETCD_HOSTS)
        .replace("topology: external", "topology: stacked");
    std::fs::write(&lab.spec, &stacked).expect("write the stacked spec");
    let apply = ["apply", "-f", spec.as_str(), "--until", UNTIL, "--yes"];
    lab.ok(&apply);
    assert_eq!(lab.applied()["etcdTopology"], "stacked");
    let rt = runtime();
    // Any etcd-CA-signed client certificate works on every member; cp1's is read now.
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    rt.block_on(assert_etcd_members(&stacked, &CONTROL_PLANES, &tls));

    // A writer across every member, old and new: a write that fails (a learner, a member
    // being removed, a member not started yet) is retried on the next one.
    let all: Vec<&str> = CONTROL_PLANES.iter().chain(ETCD_HOSTS.iter()).copied().collect();
    let eps = etcd_endpoints(&external, &all);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = rt.spawn(etcd_writer(eps.clone(), tls.clone(), stop.clone()));
    std::thread::sleep(std::time::Duration::from_secs(2));

    // The switch.
    std::fs::write(&lab.spec, &external).expect("write the external spec");
    let plan = lab.ok(&["plan", "-f", &spec, "--until", UNTIL]);
    let shown = String::from_utf8_lossy(&plan.stdout).into_owned();
    eprintln!("{}: the switch's plan:\n{shown}", lab.name);
    let promote = shown.rfind("member promote etcd3").unwrap_or_else(|| panic!("{shown}"));
    let remove = shown.find("member remove cp").unwrap_or_else(|| panic!("{shown}"));
    assert!(promote < remove, "the new members are voters before any old one goes: {shown}");
    let started = Instant::now();
    let out = lab.run(&apply);
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (acked, longest) = rt.block_on(writes).expect("writer");
    assert!(out.status.success(), "the switch: {}", text(&out));
    eprintln!(
        "{}: switch applied in {took:?}; {acked} writes acknowledged, longest wait {longest:?}",
        lab.name
    );
    assert!(acked > 10, "the writer kept writing: {acked}");

    // etcd: exactly the three external members, healthy voters, holding every write.
    let tls = lab.etcd_tls("nodes/etcd1/etcd/healthcheck-client");
    rt.block_on(assert_etcd_members(&external, &ETCD_HOSTS, &tls));
    let external_eps = etcd_endpoints(&external, &ETCD_HOSTS);
    for ep in &external_eps {
        rt.block_on(assert_all_written(ep, &tls, acked));
    }
    // Each kube-apiserver's etcd client certificate (signed by the same etcd CA) reads the
    // keys from the external members.
    for cp in CONTROL_PLANES {
        let apiserver = lab.etcd_tls(&format!("nodes/{cp}/apiserver-etcd-client"));
        rt.block_on(assert_all_written(&external_eps[0], &apiserver, acked.min(20)));
    }
    // The control planes: no etcd running or enabled, the data dir kept aside, etcd's files
    // gone (the etcd CA the apiserver needs stays).
    let (machines, _) = lab.machines();
    for cp in CONTROL_PLANES {
        let m = machines.iter().find(|m| m.host == cp).expect("machine");
        assert_ne!(m.ssh("systemctl is-active etcd.service").status.code(), Some(0), "{cp}");
        assert_ne!(m.ssh("systemctl is-enabled etcd.service").status.code(), Some(0), "{cp}");
        assert_eq!(m.ssh("test -e /var/lib/etcd").status.code(), Some(1), "{cp}");
        let kept = m.ssh_ok("ls -d /var/lib/etcd.removed-*/member");
        assert_eq!(kept.lines().count(), 1, "{cp}: {kept}");
        for gone in [
            "/etc/systemd/system/etcd.service",
            "/etc/kubernetes/pki/etcd/server.key",
            "/etc/kubernetes/pki/etcd/peer.key",
            "/var/lib/kubeforge/loaded/etcd.service",
        ] {
            assert_eq!(m.ssh(&format!("test -e {gone}")).status.code(), Some(1), "{cp}: {gone}");
        }
        assert_eq!(m.ssh("test -e /etc/kubernetes/pki/etcd/ca.crt").status.code(), Some(0));
    }
    assert_eq!(lab.applied()["etcdTopology"], "external");
    let again = lab.ok(&apply);
    assert!(String::from_utf8_lossy(&again.stdout).ends_with("No changes.\n"), "{}", text(&again));
}
