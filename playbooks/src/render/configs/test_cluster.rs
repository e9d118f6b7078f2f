//! Hand-built clusters for the unit tests of this module (the spec loader has its own tests).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::*;
use crate::secrets::ClusterSecrets;

fn ssh() -> Ssh {
    Ssh {
        user: "root".into(),
        port: 22,
        identity_file: None,
        known_hosts_file: None,
        host_key_policy: HostKeyPolicy::Strict,
        bastion: None,
    }
}

fn host(name: &str, address: &str, roles: &[Role]) -> Host {
    Host {
        name: name.into(),
        address: address.parse().unwrap(),
        roles: roles.iter().copied().collect::<BTreeSet<_>>(),
        ssh: ssh(),
    }
}

fn cidr(s: &str) -> Cidr {
    let (ip, p) = s.split_once('/').unwrap();
    Cidr { network: ip.parse().unwrap(), prefix: p.parse().unwrap() }
}

/// Three stacked control planes behind keepalived-haproxy on VIP:6443, two workers, backups.
pub fn stacked() -> Cluster {
    Cluster {
        name: "demo".into(),
        kubernetes_version: KubeVersion { major: 1, minor: 33, patch: 1 },
        control_plane_endpoint: Some(Endpoint::ip("10.88.0.100".parse().unwrap(), 6443)),
        network: Network {
            pod_subnet: cidr("10.244.0.0/16"),
            service_subnet: cidr("10.96.0.0/12"),
            cluster_domain: "cluster.local".into(),
        },
        etcd: Etcd { topology: EtcdTopology::Stacked, version: "v3.5.21".into() },
        load_balancer: LoadBalancer {
            mode: LoadBalancerMode::KeepalivedHaproxy,
            vip: Some("10.88.0.100".parse().unwrap()),
        },
        pki: Pki {
            key_algorithm: KeyAlgorithm::EcdsaP256,
            certificate_validity: Duration::from_secs(365 * 86400),
            ca_validity: Duration::from_secs(3650 * 86400),
            extra_sans: Vec::new(),
        },
        ssh: ssh(),
        artifacts: ArtifactSource::Upstream,
        artifact_mirror: None,
        backup: Some(Backup {
            schedule: Some("0 3 * * *".into()),
            retention: 7,
            destination: PathBuf::from("/var/backups/etcd"),
            runner: BackupRunner::SystemdTimer,
        }),
        hosts: vec![
            host("cp1", "10.88.0.11", &[Role::ControlPlane]),
            host("cp2", "10.88.0.12", &[Role::ControlPlane]),
            host("cp3", "10.88.0.13", &[Role::ControlPlane]),
            host("w1", "10.88.0.21", &[Role::Worker]),
            host("w2", "10.88.0.22", &[Role::Worker]),
        ],
    }
}

/// External etcd on three hosts, v1.34 (etcd 3.6), no backups, external LB.
pub fn external() -> Cluster {
    let mut c = stacked();
    c.kubernetes_version = KubeVersion { major: 1, minor: 34, patch: 0 };
    c.etcd = Etcd { topology: EtcdTopology::External, version: "v3.6.4".into() };
    c.load_balancer = LoadBalancer { mode: LoadBalancerMode::External, vip: None };
    c.control_plane_endpoint =
        Some(Endpoint { host: EndpointHost::Dns("api.demo.test".into()), port: 443 });
    c.backup = None;
    c.hosts = vec![
        host("cp1", "10.88.0.11", &[Role::ControlPlane]),
        host("cp2", "10.88.0.12", &[Role::ControlPlane]),
        host("e1", "10.88.0.31", &[Role::Etcd]),
        host("e2", "10.88.0.32", &[Role::Etcd]),
        host("e3", "10.88.0.33", &[Role::Etcd]),
        host("w1", "10.88.0.21", &[Role::Worker]),
    ];
    c
}

/// node-local LB, v1.31, no endpoint.
pub fn node_local() -> Cluster {
    let mut c = stacked();
    c.kubernetes_version = KubeVersion { major: 1, minor: 31, patch: 4 };
    c.etcd.version = "v3.5.15".into();
    c.load_balancer = LoadBalancer { mode: LoadBalancerMode::NodeLocal, vip: None };
    c.control_plane_endpoint = None;
    c
}

pub fn secrets() -> ClusterSecrets {
    let mut next = 0u8;
    ClusterSecrets::generate(|buf: &mut [u8]| {
        for b in buf {
            *b = next;
            next = next.wrapping_add(37);
        }
        Ok::<(), std::convert::Infallible>(())
    })
    .unwrap()
}
