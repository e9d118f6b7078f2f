//! The shape of a lab, decided purely from its name, the requested sizes and a free subnet:
//! machine names, roles, addresses, the bridge name and the VIP. No I/O here; `net` finds the
//! subnet, everything else only reads the [`Layout`].

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::error::LabError;
use super::net::Subnet;

/// Longest lab name: machine names are `<lab>-<host>` and must stay short hostnames.
pub const MAX_NAME_LEN: usize = 32;

/// What `lab up` was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub control_planes: u32,
    pub workers: u32,
    pub etcd: u32,
}

/// A machine's role in the written spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabRole {
    ControlPlane,
    Etcd,
    Worker,
}

impl fmt::Display for LabRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LabRole::ControlPlane => "control-plane",
            LabRole::Etcd => "etcd",
            LabRole::Worker => "worker",
        })
    }
}

/// One machine as planned: its spec host name, its systemd-nspawn machine name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachinePlan {
    /// The host name in the spec and inside the machine (`cp1`, `w1`, `etcd1`).
    pub host: String,
    /// The nspawn machine name, unique on this host: `<lab>-<host>`.
    pub machine: String,
    pub role: LabRole,
    pub address: Ipv4Addr,
}

/// The whole lab: network and machines in spec order (control planes, etcd hosts, workers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub name: String,
    pub subnet: Subnet,
    pub bridge: String,
    /// The bridge's own address, `.1`.
    pub gateway: Ipv4Addr,
    /// The keepalived VIP, `.250`, only with more than one control plane.
    pub vip: Option<Ipv4Addr>,
    /// True when `--etcd N` asked for separate etcd hosts.
    pub external_etcd: bool,
    pub machines: Vec<MachinePlan>,
}

/// Host numbers (last octet) of each role: control planes .11–.29, etcd .31–.49, workers .51–.199.
const CONTROL_PLANE_BASE: u8 = 10;
const ETCD_BASE: u8 = 30;
const WORKER_BASE: u8 = 50;
const MAX_CONTROL_PLANES: u32 = 19;
const MAX_ETCD: u32 = 7;
/// More etcd members only slow every write down; the spec validation refuses them.
const MAX_ETCD_MEMBERS: u32 = 7;
const MAX_WORKERS: u32 = 149;
const GATEWAY_HOST: u8 = 1;
const VIP_HOST: u8 = 250;

/// Checks a lab name: a DNS-1123 label of at most [`MAX_NAME_LEN`] characters.
pub fn validate_name(name: &str) -> Result<(), LabError> {
    let bad = |reason| Err(LabError::InvalidName { name: name.to_string(), reason });
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 32 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return bad("only lower-case letters, digits and '-' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_lowercase() {
        return bad("it must start with a letter");
    }
    if name.ends_with('-') {
        return bad("it must not end with '-'");
    }
    Ok(())
}

/// Checks the sizes before anything is created, so that the written spec will validate.
pub fn validate_request(req: &Request) -> Result<(), LabError> {
    validate_name(&req.name)?;
    let bad = |msg: String| Err(LabError::InvalidSize(msg));
    if req.control_planes == 0 || req.control_planes > MAX_CONTROL_PLANES {
        return bad(format!("{} control planes (1–{MAX_CONTROL_PLANES})", req.control_planes));
    }
    if req.workers > MAX_WORKERS {
        return bad(format!("{} workers (0–{MAX_WORKERS})", req.workers));
    }
    if req.etcd > MAX_ETCD {
        return bad(format!("{} etcd hosts (0–{MAX_ETCD})", req.etcd));
    }
    let (members, what) = if req.etcd > 0 {
        (req.etcd, "etcd hosts")
    } else {
        (req.control_planes, "control planes (stacked etcd members)")
    };
    if members > MAX_ETCD_MEMBERS {
        return bad(format!(
            "{members} {what}: more than {MAX_ETCD_MEMBERS} etcd members only slow every write down"
        ));
    }
    if members % 2 == 0 {
        return bad(format!(
            "{members} {what}: an even number of etcd members tolerates no more failures than one less"
        ));
    }
    Ok(())
}

/// Plans the lab inside `subnet`. The request must have passed [`validate_request`].
pub fn plan(req: &Request, subnet: Subnet) -> Result<Layout, LabError> {
    validate_request(req)?;
    let mut machines = Vec::new();
    let mut add = |prefix: &str, role, base: u8, count: u32| {
        for i in 1..=count {
            let host = format!("{prefix}{i}");
            // Counts are bounded by validate_request, so base + i stays below 200.
            let octet = base + i as u8;
            machines.push(MachinePlan {
                machine: format!("{}-{host}", req.name),
                host,
                role,
                address: subnet.host(octet),
            });
        }
    };
    add("cp", LabRole::ControlPlane, CONTROL_PLANE_BASE, req.control_planes);
    add("etcd", LabRole::Etcd, ETCD_BASE, req.etcd);
    add("w", LabRole::Worker, WORKER_BASE, req.workers);
    Ok(Layout {
        name: req.name.clone(),
        bridge: bridge_name(&req.name),
        gateway: subnet.host(GATEWAY_HOST),
        vip: (req.control_planes > 1).then(|| subnet.host(VIP_HOST)),
        external_etcd: req.etcd > 0,
        subnet,
        machines,
    })
}

/// The host bridge of a lab: `kf-<name>` when it fits in an interface name (15 bytes), else
/// `kf-<first 5>-<6 hex of the name's hash>`, so that different long names do not collide.
pub fn bridge_name(name: &str) -> String {
    if name.len() <= 12 {
        format!("kf-{name}")
    } else {
        let head: String = name.chars().take(5).collect();
        format!("kf-{head}-{:06x}", fnv1a(name.as_bytes()) & 0xff_ffff)
    }
}

/// 64-bit FNV-1a: a small stable hash (unlike std's, which may change between releases).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(cp: u32, w: u32, etcd: u32) -> Request {
        Request { name: "lab".into(), control_planes: cp, workers: w, etcd }
    }

    fn subnet() -> Subnet {
        Subnet::from_index(7)
    }

    #[test]
    fn default_lab_has_three_control_planes_a_worker_and_a_vip() {
        let l = plan(&req(3, 1, 0), subnet()).unwrap();
        let hosts: Vec<_> =
            l.machines.iter().map(|m| (m.host.as_str(), m.address.to_string())).collect();
        assert_eq!(
            hosts,
            [
                ("cp1", "10.200.7.11"),
                ("cp2", "10.200.7.12"),
                ("cp3", "10.200.7.13"),
                ("w1", "10.200.7.51")
            ]
            .map(|(h, a)| (h, a.to_string()))
        );
        assert_eq!(l.machines[0].machine, "lab-cp1");
        assert_eq!(l.gateway.to_string(), "10.200.7.1");
        assert_eq!(l.vip.map(|v| v.to_string()), Some("10.200.7.250".into()));
        assert_eq!(l.bridge, "kf-lab");
        assert!(!l.external_etcd);
    }

    #[test]
    fn one_control_plane_has_no_vip_and_etcd_hosts_make_it_external() {
        let l = plan(&req(1, 0, 3), subnet()).unwrap();
        assert_eq!(l.vip, None);
        assert!(l.external_etcd);
        let roles: Vec<_> = l.machines.iter().map(|m| (m.host.as_str(), m.role)).collect();
        assert_eq!(
            roles,
            [
                ("cp1", LabRole::ControlPlane),
                ("etcd1", LabRole::Etcd),
                ("etcd2", LabRole::Etcd),
                ("etcd3", LabRole::Etcd)
            ]
        );
        assert_eq!(l.machines[1].address.to_string(), "10.200.7.31");
    }

    #[test]
    fn largest_lab_keeps_addresses_apart_from_the_vip() {
        let l = plan(&req(19, 149, 7), subnet()).unwrap();
        let last = l.machines.last().unwrap();
        assert_eq!(
            (last.host.as_str(), last.address.to_string().as_str()),
            ("w149", "10.200.7.199")
        );
        assert!(l.machines.iter().all(|m| Some(m.address) != l.vip && m.address != l.gateway));
    }

    #[test]
    fn bad_sizes_are_refused_with_the_reason() {
        for (r, needle) in [
            (req(0, 1, 0), "0 control planes"),
            (req(2, 1, 0), "2 control planes"),
            (req(3, 1, 2), "2 etcd hosts"),
            (req(20, 0, 0), "20 control planes"),
            (req(3, 150, 0), "150 workers"),
            (req(9, 0, 0), "9 control planes (stacked etcd members): more than 7"),
            (req(1, 0, 8), "8 etcd hosts (0–7)"),
        ] {
            let err = validate_request(&r).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        // Two control planes are fine when etcd runs on three separate hosts.
        validate_request(&req(2, 0, 3)).unwrap();
    }

    #[test]
    fn names_must_be_short_dns_labels() {
        for good in ["lab", "e2e-123", "a"] {
            validate_name(good).unwrap();
        }
        for bad in ["", "Lab", "1lab", "lab-", "la_b", &"x".repeat(33)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bridge_names_fit_an_interface_name_and_differ() {
        assert_eq!(bridge_name("twelve-chars"), "kf-twelve-chars");
        let a = bridge_name("kubeforge-e2e-1234");
        let b = bridge_name("kubeforge-e2e-1235");
        assert!(a.len() <= 15 && b.len() <= 15, "{a} {b}");
        assert_ne!(a, b);
        assert!(a.starts_with("kf-kubef-"));
    }

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
    }
}
