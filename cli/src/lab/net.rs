//! The lab network: which /24 a lab gets (derived from its name, skipping anything the host
//! already routes), and the host bridge that joins the machines' veth links. Choosing is pure;
//! the bridge functions are thin `ip` calls.

use std::fmt;
use std::net::Ipv4Addr;

use super::error::LabError;
use super::layout::fnv1a;
use super::sys;

/// Labs live in 10.200.0.0/13 (10.200.0.0–10.207.255.255): clear of kubeadm's default pod
/// (10.244.0.0/16) and service (10.96.0.0/12) subnets, room for 2048 labs.
const POOL_BASE: u32 = u32::from_be_bytes([10, 200, 0, 0]);
const POOL_SIZE: u32 = 2048;

/// A lab's /24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Subnet {
    network: u32,
}

impl Subnet {
    /// The `index`th /24 of the pool (taken modulo the pool size).
    pub fn from_index(index: u32) -> Self {
        Subnet { network: POOL_BASE + (index % POOL_SIZE) * 256 }
    }
    /// Parses `a.b.c.0/24`.
    pub fn parse(text: &str) -> Option<Self> {
        let net = Ipv4Net::parse(text)?;
        (net.prefix == 24 && net.addr & 0xff == 0).then_some(Subnet { network: net.addr })
    }
    /// The address with last octet `octet`.
    pub fn host(&self, octet: u8) -> Ipv4Addr {
        Ipv4Addr::from(self.network | u32::from(octet))
    }
    fn as_net(&self) -> Ipv4Net {
        Ipv4Net { addr: self.network, prefix: 24 }
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/24", Ipv4Addr::from(self.network))
    }
}

/// An IPv4 network or single address (prefix 32) as `ip route` prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    addr: u32,
    prefix: u8,
}

impl Ipv4Net {
    pub fn parse(text: &str) -> Option<Self> {
        let (ip, prefix) = match text.split_once('/') {
            Some((ip, p)) => (ip, p.parse().ok()?),
            None => (text, 32),
        };
        if prefix > 32 {
            return None;
        }
        let addr = u32::from(ip.parse::<Ipv4Addr>().ok()?);
        Some(Ipv4Net { addr: addr & mask(prefix), prefix })
    }
    fn overlaps(&self, other: &Ipv4Net) -> bool {
        let m = mask(self.prefix.min(other.prefix));
        self.addr & m == other.addr & m
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 { 0 } else { u32::MAX << (32 - prefix) }
}

/// The lab's subnet: the /24 its name hashes to, or the next one that overlaps none of `taken`
/// (host routes and other labs' subnets). A default route (0.0.0.0/0) is not a conflict.
pub fn pick_subnet(name: &str, taken: &[Ipv4Net]) -> Result<Subnet, LabError> {
    let start = (fnv1a(name.as_bytes()) % u64::from(POOL_SIZE)) as u32;
    (0..POOL_SIZE)
        .map(|i| Subnet::from_index(start + i))
        .find(|s| taken.iter().filter(|t| t.prefix > 0).all(|t| !t.overlaps(&s.as_net())))
        .ok_or_else(|| LabError::NoFreeSubnet { name: name.to_string() })
}

/// Destinations in the output of `ip -4 -j route show table all` (`default` and unparsable
/// entries are skipped).
pub fn route_destinations(json: &str) -> Vec<Ipv4Net> {
    let routes: Vec<serde_json::Value> = serde_json::from_str(json).unwrap_or_default();
    routes.iter().filter_map(|r| r.get("dst")?.as_str()).filter_map(Ipv4Net::parse).collect()
}

/// Every IPv4 destination the host routes now, in any table.
pub fn host_routes() -> Result<Vec<Ipv4Net>, LabError> {
    let mut cmd = sys::command("ip");
    cmd.args(["-4", "-j", "route", "show", "table", "all"]);
    let out = sys::run("listing the host's routes", &mut cmd, "check that `ip route` works")?;
    Ok(route_destinations(&String::from_utf8_lossy(&out.stdout)))
}

/// True when a network link named `name` exists.
pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

/// Creates the lab bridge with the gateway address and brings it up.
pub fn create_bridge(bridge: &str, gateway: Ipv4Addr) -> Result<(), LabError> {
    let help = "remove a stale bridge with `kubeforge lab down --name NAME`";
    if !link_exists(bridge) {
        let mut add = sys::command("ip");
        add.args(["link", "add", bridge, "type", "bridge"]);
        sys::run(&format!("creating the lab bridge {bridge}"), &mut add, help)?;
    }
    let mut flush = sys::command("ip");
    flush.args(["-4", "addr", "flush", "dev", bridge]);
    sys::run(&format!("clearing the addresses of {bridge}"), &mut flush, help)?;
    let mut addr = sys::command("ip");
    addr.args(["addr", "add", &format!("{gateway}/24"), "dev", bridge]);
    sys::run(&format!("giving {bridge} the address {gateway}/24"), &mut addr, help)?;
    let mut up = sys::command("ip");
    up.args(["link", "set", bridge, "up"]);
    sys::run(&format!("bringing {bridge} up"), &mut up, help)?;
    Ok(())
}

/// Names of links enslaved to `bridge` (the machines' host-side veths), from `/sys`.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let dir = std::path::Path::new("/sys/class/net").join(bridge).join("brif");
    std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default()
}

/// Deletes a link if it exists (idempotent).
pub fn delete_link(name: &str) -> Result<(), LabError> {
    if !link_exists(name) {
        return Ok(());
    }
    let mut del = sys::command("ip");
    del.args(["link", "del", name]);
    sys::run(
        &format!("deleting the link {name}"),
        &mut del,
        "delete it by hand with `ip link del`",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<Ipv4Net> {
        list.iter().map(|s| Ipv4Net::parse(s).unwrap()).collect()
    }

    #[test]
    fn subnet_is_derived_from_the_name_and_stable() {
        let a = pick_subnet("lab", &[]).unwrap();
        assert_eq!(a, pick_subnet("lab", &[]).unwrap());
        assert_ne!(a, pick_subnet("other", &[]).unwrap());
        let text = a.to_string();
        assert!(text.starts_with("10.20") && text.ends_with(".0/24"), "{text}");
        assert_eq!(Subnet::parse(&text), Some(a));
    }

    #[test]
    fn taken_subnets_are_skipped_and_default_routes_ignored() {
        let first = pick_subnet("lab", &[]).unwrap();
        let taken = nets(&["0.0.0.0/0", &first.to_string()]);
        let second = pick_subnet("lab", &taken).unwrap();
        assert_ne!(first, second);
        // A single host address inside the /24 is a conflict too, and so is a covering /16.
        assert_ne!(pick_subnet("lab", &nets(&[&first.host(77).to_string()])).unwrap(), first);
        let wide = Ipv4Net::parse(&format!("{}/13", first.host(0))).unwrap();
        assert!(matches!(pick_subnet("lab", &[wide]), Err(LabError::NoFreeSubnet { .. })));
    }

    #[test]
    fn pool_wraps_around() {
        assert_eq!(Subnet::from_index(2048), Subnet::from_index(0));
        assert_eq!(Subnet::from_index(2047).to_string(), "10.207.255.0/24");
        assert_eq!(Subnet::from_index(0).host(1).to_string(), "10.200.0.1");
    }

    #[test]
    fn route_json_gives_destinations() {
        let json = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0"},
            {"dst":"192.0.2.0/24","dev":"eth0"},{"type":"local","dst":"192.0.2.2","table":"local"},
            {"dst":"nonsense"}]"#;
        assert_eq!(route_destinations(json), nets(&["192.0.2.0/24", "192.0.2.2/32"]));
        assert!(route_destinations("not json").is_empty());
    }

    #[test]
    fn ipv4_net_parse_rejects_junk_and_masks_host_bits() {
        assert_eq!(Ipv4Net::parse("10.1.2.3/8"), Ipv4Net::parse("10.0.0.0/8"));
        assert_eq!(Ipv4Net::parse("10.0.0.0/33"), None);
        assert_eq!(Ipv4Net::parse("fe80::/64"), None);
        assert_eq!(Subnet::parse("10.200.0.0/16"), None);
    }
}
