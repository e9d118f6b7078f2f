//! Benchmark: the full PKI of 3 control planes + 100 workers (stacked etcd, ECDSA P-256) from an
//! empty store, then a second run that reuses everything. Prints wall-clock figures; run with
//! `cargo bench -p kubeforge-pki` (release). Target: the first run under one second.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kubeforge_pki::{
    ApiServerNames, ControlPlane, EtcdMember, KeyAlgorithm, Node, PkiRequest, SeededSerials, Store,
    generate,
};

fn ip(last: u16) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, (last / 250) as u8, (last % 250) as u8 + 1))
}

fn request(alg: KeyAlgorithm) -> PkiRequest {
    let server = "https://10.0.9.100:6443".to_string();
    let cps: Vec<ControlPlane> = (0..3)
        .map(|i| ControlPlane {
            name: format!("cp{i}"),
            address: ip(i),
            local_server: format!("https://{}:6443", ip(i)),
        })
        .collect();
    let mut nodes: Vec<Node> = cps
        .iter()
        .map(|c| Node {
            name: c.name.clone(),
            address: c.address,
            kubelet_server: c.local_server.clone(),
        })
        .collect();
    nodes.extend((0..100).map(|i| Node {
        name: format!("worker{i}"),
        address: ip(10 + i),
        kubelet_server: server.clone(),
    }));
    PkiRequest {
        cluster_name: "bench".into(),
        key_algorithm: alg,
        certificate_validity: Duration::from_secs(365 * 86_400),
        ca_validity: Duration::from_secs(3650 * 86_400),
        api_server: ApiServerNames {
            service_ip: "10.96.0.1".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            endpoint_host: Some("10.0.9.100".into()),
            vip: Some("10.0.9.100".parse().unwrap()),
            extra_sans: vec!["api.example.com".into()],
        },
        cluster_server: server,
        etcd_members: cps
            .iter()
            .map(|c| EtcdMember { name: c.name.clone(), address: c.address })
            .collect(),
        control_planes: cps,
        nodes,
    }
}

fn main() {
    let now = time::OffsetDateTime::from_unix_timestamp(1_768_471_200).unwrap();
    for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384] {
        let req = request(alg);
        let mut best_fresh = Duration::MAX;
        let mut best_reuse = Duration::MAX;
        let mut files = 0;
        for round in 0..5 {
            let start = Instant::now();
            let out = generate(&req, &Store::new(), now, &mut SeededSerials::new(round)).unwrap();
            best_fresh = best_fresh.min(start.elapsed());
            files = out.store.len();
            let start = Instant::now();
            let again = generate(&req, &out.store, now, &mut SeededSerials::new(round)).unwrap();
            best_reuse = best_reuse.min(start.elapsed());
            assert!(again.report.is_unchanged());
        }
        println!(
            "pki generate, 3 control planes + 100 workers, {alg}: fresh {:.1} ms ({files} files), reuse-all {:.1} ms (best of 5)",
            best_fresh.as_secs_f64() * 1e3,
            best_reuse.as_secs_f64() * 1e3
        );
    }
    let req = request(KeyAlgorithm::Rsa2048);
    let start = Instant::now();
    let out = generate(&req, &Store::new(), now, &mut SeededSerials::new(1)).unwrap();
    println!(
        "pki generate, 3 control planes + 100 workers, rsa-2048: fresh {:.1} ms ({} files), one run",
        start.elapsed().as_secs_f64() * 1e3,
        out.store.len()
    );
}
