//! End-to-end tests of etcd on lab machines, through the load balancer: `apply --until
//! loadbalancer` builds a 3-member etcd cluster over mutual TLS (stacked on 3 control planes, or
//! external on 3 etcd hosts with the control planes' client certificate), a second plan says
//! "No changes.", and a stacked cluster scales 3 → 5 → 3 while a writer keeps writing
//! sequential keys and loses none. The test talks to etcd from this machine over the lab
//! network with the state dir's certificates. Needs root and the lab's tools; runs only with
//! KUBEFORGE_E2E=1 and prints why it skipped otherwise. Each test brings up its own lab (unique
//! name) and always brings it down.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kubeforge::etcd::EtcdClient;
use kubeforge_tests::lab::{
    ETCD_TIMEOUTS as T, Lab, assert_all_written, assert_etcd_members as assert_members, enabled,
    etcd_endpoints as endpoints, etcd_writer, runtime,
};
use serde_json::Value;

const UNTIL: &str = "loadbalancer";

/// `apply --until loadbalancer --yes`, which must succeed; its stdout.
fn apply(lab: &Lab) -> String {
    let started = Instant::now();
    let out = lab.ok(&["apply", "-f", lab.spec_arg(), "--until", UNTIL, "--yes"]);
    eprintln!("{}: apply --until {UNTIL} took {:.1} s", lab.name, started.elapsed().as_secs_f64());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The spec's text with the named hosts' entries removed.
fn spec_without(original: &str, hosts: &[&str]) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in original.lines() {
        if let Some(name) = line.trim_start().strip_prefix("- name: ") {
            skipping = hosts.contains(&name.trim());
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn stacked_three_control_planes_form_a_healthy_cluster_and_converge() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("kfetcdst", &[]);
    apply(&lab);
    lab.assert_converged(UNTIL);
    let spec = std::fs::read_to_string(&lab.spec).unwrap();
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    runtime().block_on(assert_members(&spec, &["cp1", "cp2", "cp3"], &tls));
    // Mutual TLS: a client without a certificate signed by the etcd CA is refused.
    let mut wrong = tls.clone();
    wrong.cert_pem = lab.pki("nodes/cp1/apiserver.crt");
    wrong.key_pem = lab.pki("nodes/cp1/apiserver.key");
    let refused = runtime().block_on(async {
        let ep = &endpoints(&spec, &["cp2"])[0];
        match EtcdClient::connect(ep, Some(&wrong), T).await {
            Ok(c) => c.member_list().await.is_err(),
            Err(_) => true,
        }
    });
    assert!(refused, "a certificate from the Kubernetes CA must not be accepted by etcd");
    the_vip_is_on_exactly_one_control_plane(&lab);
    served_certificates_follow_a_renewal(&lab);
    an_interrupted_renewal_is_completed_by_the_next_apply(&lab);
}

/// Issue 10 item 5: when apply has returned, exactly one control plane holds the VIP.
fn the_vip_is_on_exactly_one_control_plane(lab: &Lab) {
    let spec = lab.spec_text();
    let vip = spec
        .lines()
        .find_map(|l| l.trim().strip_prefix("vip:"))
        .map(|v| v.trim().trim_matches('"').to_string())
        .expect("the lab spec has a vip");
    let (all, _) = lab.machines();
    let holders: Vec<&str> = all
        .iter()
        .filter(|m| !m.ssh_ok(&format!("ip -o addr show to {vip}")).trim().is_empty())
        .map(|m| m.host.as_str())
        .collect();
    assert_eq!(holders.len(), 1, "VIP {vip} held by {holders:?}");
}

/// Issue 10 item 6: `certs renew --all`, `apply --until pki` (certificates put, nothing
/// restarted: every member still serves its old certificate), then `apply`: the members are
/// restarted and every served certificate matches the state dir.
fn an_interrupted_renewal_is_completed_by_the_next_apply(lab: &Lab) {
    lab.ok(&["certs", "renew", "--all", "-f", lab.spec_arg()]);
    lab.ok(&["apply", "-f", lab.spec_arg(), "--until", "pki", "--yes"]);
    let served = |certs: &BTreeMap<(String, String), Value>, want: &str| {
        for ((host, what), on_host) in certs {
            let etcd = what.ends_with(":2379") || what.ends_with(":2380");
            if what.starts_with("https://") && etcd {
                assert_eq!(on_host, want, "{host} {what}");
            }
        }
    };
    let after_pki = lab.remote_certs();
    served(&after_pki, "differs");
    assert_eq!(
        after_pki[&("cp2".to_string(), "/etc/kubernetes/pki/etcd/server.crt".to_string())],
        "matches",
        "the files were put"
    );
    apply(lab);
    served(&lab.remote_certs(), "matches");
    lab.assert_converged(UNTIL);
}

/// A renewed etcd server certificate shows as `differs` on cp1's file and on what its etcd
/// serves; after apply (which restarts that member) both match, and the other members' served
/// certificates matched throughout. The kube-apiserver is not running (`--until loadbalancer`).
fn served_certificates_follow_a_renewal(lab: &Lab) {
    let key = |host: &str, path: &str| (host.to_string(), path.to_string());
    let certs = lab.remote_certs();
    // The endpoint `https://<host address>:<port>` that `host` serves.
    let endpoint = |host: &str, port: u16| {
        let suffix = format!(":{port}");
        certs
            .keys()
            .find(|(h, p)| h == host && p.starts_with("https://") && p.ends_with(&suffix))
            .map(|(_, p)| p.clone())
            .unwrap_or_else(|| panic!("{host} has no endpoint on port {port}: {certs:?}"))
    };
    for host in ["cp1", "cp2", "cp3"] {
        assert_eq!(certs[&key(host, &endpoint(host, 2379))], "matches", "{host} etcd client");
        assert_eq!(certs[&key(host, &endpoint(host, 2380))], "matches", "{host} etcd peer");
        assert_eq!(certs[&key(host, &endpoint(host, 6443))], "not-serving", "{host} apiserver");
    }
    let cp1_client = endpoint("cp1", 2379);
    let file = "/etc/kubernetes/pki/etcd/server.crt";

    lab.ok(&["certs", "renew", "cp1/etcd-server", "-f", lab.spec_arg()]);
    let renewed = lab.remote_certs();
    assert_eq!(renewed[&key("cp1", file)], "differs", "renewed, not applied");
    assert_eq!(renewed[&key("cp1", &cp1_client)], "differs", "still serving the old one");
    assert_eq!(renewed[&key("cp2", file)], "matches", "only cp1's was renewed");

    apply(lab);
    let applied = lab.remote_certs();
    assert_eq!(applied[&key("cp1", file)], "matches");
    assert_eq!(applied[&key("cp1", &cp1_client)], "matches", "the restarted member serves it");
    lab.assert_converged(UNTIL);
}

#[test]
fn external_etcd_hosts_serve_the_control_planes_client_certificate() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("kfetcdex", &["--control-planes", "2", "--workers", "0", "--etcd", "3"]);
    apply(&lab);
    lab.assert_converged(UNTIL);
    let spec = std::fs::read_to_string(&lab.spec).unwrap();
    let tls = lab.etcd_tls("nodes/cp1/apiserver-etcd-client");
    runtime().block_on(assert_members(&spec, &["etcd1", "etcd2", "etcd3"], &tls));
}

#[test]
fn stacked_scales_three_to_five_and_back_while_a_writer_loses_nothing() {
    if !enabled() {
        return;
    }
    let lab = Lab::up("kfetcdsc", &["--control-planes", "5", "--workers", "0"]);
    let five = std::fs::read_to_string(&lab.spec).unwrap();
    let three = spec_without(&five, &["cp4", "cp5"]);
    std::fs::write(&lab.spec, &three).unwrap();
    apply(&lab);
    lab.assert_converged(UNTIL);
    let tls = lab.etcd_tls("nodes/cp1/etcd/healthcheck-client");
    let rt = runtime();
    rt.block_on(assert_members(&five, &["cp1", "cp2", "cp3"], &tls));

    let stop = Arc::new(AtomicBool::new(false));
    let writes =
        rt.spawn(etcd_writer(endpoints(&five, &["cp1", "cp2", "cp3"]), tls.clone(), stop.clone()));

    // 3 → 5: two learner joins, one at a time.
    std::fs::write(&lab.spec, &five).unwrap();
    let out = apply(&lab);
    assert!(out.contains("etcd member add cp4"), "{out}");
    lab.assert_converged(UNTIL);
    rt.block_on(assert_members(&five, &["cp1", "cp2", "cp3", "cp4", "cp5"], &tls));

    // 5 → 3: both members removed in one apply (2 of 5 keeps a majority of the old cluster).
    std::fs::write(&lab.spec, &three).unwrap();
    let out = apply(&lab);
    assert!(
        out.contains("etcd member remove cp4") && out.contains("etcd member remove cp5"),
        "{out}"
    );
    lab.assert_converged(UNTIL);
    rt.block_on(assert_members(&five, &["cp1", "cp2", "cp3"], &tls));

    stop.store(true, Ordering::Relaxed);
    let (acked, longest) = rt.block_on(writes).unwrap();
    eprintln!("writer: {acked} writes acknowledged, longest wait {:.2} s", longest.as_secs_f64());
    assert!(acked > 50, "the writer barely wrote ({acked})");
    // Every acknowledged write is there, read linearizably.
    rt.block_on(assert_all_written(&endpoints(&five, &["cp1"])[0], &tls, acked));
}
