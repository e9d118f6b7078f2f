//! End-to-end test of replacing a failed control plane: 3 stacked control planes applied
//! `--until loadbalancer` (keepalived-haproxy; the lab's worker machine is left out of the spec
//! and stays blank); cp3 is powered off for good (`lab stop`); the spec gives the name cp3 the
//! blank machine's address; the host-key step (`ssh-keygen -R cp3` on the known_hosts file:
//! the dead machine's key is bound to the name; the new machine's key is known at its address)
//! is needed, and then `apply` removes the dead member and joins the new machine as a
//! learner: etcd is back to 3 healthy voters with cp3 at its new address, a writer running
//! through it all loses nothing, and a second plan says "No changes.". Needs root and the lab's
//! tools; runs only with KUBEFORGE_E2E=1. The lab's name carries the pid and the lab is always
//! brought down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use kubeforge_tests::lab::{
    Lab, address, assert_all_written, assert_disk_for_lab, assert_etcd_members, enabled,
    etcd_endpoints, etcd_writer, runtime, spec_without_hosts, text,
};

const UNTIL: &str = "loadbalancer";

#[test]
fn a_powered_off_control_plane_is_replaced_by_a_new_machine_under_its_name() {
    if !enabled() {
        return;
    }
    assert_disk_for_lab();
    let lab = Lab::up(&format!("p{}", std::process::id() % 100_000), &[]);
    let spec = lab.spec_arg().to_string();
    let full = lab.spec_text();
    let old_cp3 = address(&full, "cp3");
    let spare = address(&full, "w1");
    // w1's machine stays blank: it is the replacement.
    std::fs::write(&lab.spec, spec_without_hosts(&full, &["w1"])).expect("write the spec");
    let apply = ["apply", "-f", spec.as_str(), "--until", UNTIL, "--yes"];
    lab.ok(&apply);
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    let rt = runtime();
    rt.block_on(assert_etcd_members(&lab.spec_text(), &["cp1", "cp2", "cp3"], &tls));

    // A writer through the members that stay, for the whole replacement.
    let stop = Arc::new(AtomicBool::new(false));
    let eps = etcd_endpoints(&lab.spec_text(), &["cp1", "cp2"]);
    let writes = rt.spawn(etcd_writer(eps.clone(), tls.clone(), stop.clone()));
    std::thread::sleep(std::time::Duration::from_secs(1));

    // cp3 dies for good.
    lab.ok(&["lab", "stop", "cp3", "--name", &lab.name]);
    // The spec gives cp3 the new machine's address.
    let replaced = lab.spec_text().replace(
        &format!("- name: cp3\n      address: {old_cp3}\n"),
        &format!("- name: cp3\n      address: {spare}\n"),
    );
    assert!(replaced.contains(&format!("address: {spare}")), "{replaced}");
    std::fs::write(&lab.spec, &replaced).expect("write the spec");
    // The host-key step: the dead machine's key, bound to the name cp3, goes; the new machine's
    // key is known at its address (here from `lab up`; elsewhere: ssh-keyscan, checked against
    // the machine's console, or hostKeyPolicy accept-new).
    let known_hosts = replaced
        .lines()
        .find_map(|l| l.trim().strip_prefix("knownHostsFile:"))
        .and_then(|v| v.split('#').next())
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("the lab spec names its known_hosts file");
    let refused = lab.run(&["plan", "-f", &spec, "--until", UNTIL]);
    assert!(!refused.status.success(), "the old key bound to cp3 is refused first");
    assert!(text(&refused).contains("ssh-keygen -R 'cp3'"), "{}", text(&refused));
    let out = std::process::Command::new("ssh-keygen")
        .args(["-R", "cp3", "-f", &known_hosts])
        .output()
        .expect("run ssh-keygen");
    assert!(out.status.success(), "ssh-keygen -R: {}", String::from_utf8_lossy(&out.stderr));
    let plan = lab.ok(&["plan", "-f", &spec, "--until", UNTIL]);
    let shown = String::from_utf8_lossy(&plan.stdout).into_owned();
    let removal = shown.find("member remove cp3").unwrap_or_else(|| panic!("{shown}"));
    let join = shown.find("member add cp3").unwrap_or_else(|| panic!("{shown}"));
    assert!(removal < join, "the dead member goes before the new one joins: {shown}");
    assert!(shown.contains(&format!("https://{spare}:2380")), "{shown}");

    let out = lab.ok(&apply);
    eprintln!("{}", text(&out));
    rt.block_on(assert_etcd_members(&replaced, &["cp1", "cp2", "cp3"], &tls));
    std::thread::sleep(std::time::Duration::from_secs(1));
    stop.store(true, Ordering::Relaxed);
    let (acked, longest) = rt.block_on(writes).expect("writer");
    eprintln!("{}: {acked} writes acknowledged, longest wait {longest:?}", lab.name);
    assert!(acked > 10, "the writer kept writing: {acked}");
    rt.block_on(assert_all_written(&eps[0], &tls, acked));
    // cp3's member is the new machine's.
    let members = rt.block_on(async {
        let c = kubeforge::etcd::EtcdClient::connect(
            &eps[0],
            Some(&tls),
            kubeforge_tests::lab::ETCD_TIMEOUTS,
        )
        .await
        .expect("connect");
        c.member_list().await.expect("member list")
    });
    let cp3 = members.iter().find(|m| m.name == "cp3").expect("cp3 is a member");
    assert_eq!(cp3.peer_urls, [format!("https://{spare}:2380")]);
    lab.assert_converged(UNTIL);
}
