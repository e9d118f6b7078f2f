//! Validation speed for a 50,000-host spec (target: well under 2 s for parse + validate).
//! Run with `cargo bench -p kubeforge-playbooks --bench validate`; prints figures, asserts
//! nothing (speed is measured here, never in timed tests).

use std::fmt::Write;
use std::time::{Duration, Instant};

fn spec(hosts: u32) -> String {
    let mut out = String::from(
        "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: big\nspec:\n  kubernetesVersion: v1.33.1\n  controlPlaneEndpoint: 172.31.255.100:6443\n  network:\n    podSubnet: 10.0.0.0/8\n    serviceSubnet: 192.168.0.0/16\n  loadBalancer:\n    mode: keepalived-haproxy\n    vip: 172.31.255.100\n  hosts:\n",
    );
    for i in 0..hosts {
        let role = if i < 3 { "control-plane" } else { "worker" };
        let _ = write!(
            out,
            "    - name: node-{i}\n      address: 172.16.{}.{}\n      roles: [{role}]\n",
            i / 250,
            i % 250 + 1
        );
        if i % 10 == 0 {
            out.push_str("      ssh: {user: admin, port: 2222}\n");
        }
    }
    out
}

fn time<T>(runs: u32, mut f: impl FnMut() -> T) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        let start = Instant::now();
        std::hint::black_box(f());
        best = best.min(start.elapsed());
    }
    best
}

fn main() {
    for hosts in [1_000u32, 10_000, 50_000] {
        let src = spec(hosts);
        let total =
            time(5, || kubeforge_playbooks::spec::load_str(&src, "bench.yaml").expect("valid"));
        let parse = time(5, || {
            kubeforge_playbooks::spec::parse(&src, "bench.yaml")
                .ok()
                .map(|p| p.spec.spec.hosts.len())
        });
        let tree = time(5, || kubeforge_playbooks::spec::yaml::parse_tree(&src).is_ok());
        let typed = time(5, || {
            serde_saphyr::from_str_with_options::<kubeforge_playbooks::spec::ClusterSpec>(
                &src,
                kubeforge_playbooks::spec::yaml::options(),
            )
            .is_ok()
        });
        println!(
            "  of which: node tree {:>7.1} ms, typed serde parse {:>7.1} ms",
            tree.as_secs_f64() * 1e3,
            typed.as_secs_f64() * 1e3
        );
        println!(
            "validate {hosts:>6} hosts ({:>5.1} MiB): parse {:>7.1} ms, parse+validate {:>7.1} ms (best of 5)",
            src.len() as f64 / (1024.0 * 1024.0),
            parse.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3
        );
    }
    // A broken 50,000-host spec: every host duplicated, so problems are found, capped and placed.
    let mut broken = spec(50_000);
    broken = broken.replace("address: 172.16.1.", "address: 172.16.2.");
    let failing = time(3, || {
        kubeforge_playbooks::spec::load_str(&broken, "bench.yaml").err().map(|d| d.problems.len())
    });
    println!(
        "validate  50000 hosts with 250 duplicate addresses: {:>7.1} ms",
        failing.as_secs_f64() * 1e3
    );
}
