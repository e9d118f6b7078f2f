//! Parsers for single spec values (names, versions, addresses, CIDRs, endpoints, durations,
//! paths). Each returns the typed value or a message plus a remedy; they know nothing about
//! where the value sits in the spec.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::{Cidr, Endpoint, EndpointHost, KubeVersion};

/// Why a value was refused: what is wrong and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub help: String,
}

pub fn refuse(message: impl Into<String>, help: impl Into<String>) -> Refusal {
    Refusal { message: message.into(), help: help.into() }
}

pub type Checked<T> = Result<T, Refusal>;

/// A DNS-1123 label: lowercase alphanumerics and `-`, alphanumeric at both ends, 1–63 chars.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 chars.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

pub fn dns_label(s: &str, what: &str) -> Checked<String> {
    if is_dns_label(s) {
        return Ok(s.to_string());
    }
    let suggestion = label_suggestion(s);
    let help = match suggestion {
        Some(fixed) if fixed != s => format!(
            "use lowercase letters, digits and `-` (starting and ending with a letter or digit, at most 63 characters), e.g. `{fixed}`"
        ),
        _ => "use lowercase letters, digits and `-` (starting and ending with a letter or digit, at most 63 characters)".into(),
    };
    let why = if s.is_empty() {
        "is empty".to_string()
    } else if s.len() > 63 {
        format!("is {} characters long (at most 63)", s.len())
    } else {
        "is not a DNS-1123 label".to_string()
    };
    Err(refuse(format!("{what} `{}` {why}", shorten(s)), help))
}

/// The closest valid label, for "e.g." hints.
fn label_suggestion(s: &str) -> Option<String> {
    let mut out: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    out = out.trim_matches('-').to_string();
    out.truncate(63);
    let out = out.trim_end_matches('-').to_string();
    is_dns_label(&out).then_some(out)
}

/// Cuts long user input for messages.
pub fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

/// `v1.33.1` (the `v` may be left out).
pub fn kube_version(s: &str) -> Checked<KubeVersion> {
    let bad = || {
        refuse(
            format!("`{}` is not a Kubernetes version", shorten(s)),
            "write a full release version such as `v1.33.1`",
        )
    };
    let digits = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = digits.split('.').collect();
    if parts.len() == 2 && parts.iter().all(|p| is_number(p)) {
        return Err(refuse(
            format!("`{s}` names a minor release, not a version"),
            format!("add the patch release, e.g. `v{digits}.0`"),
        ));
    }
    if parts.len() != 3 || !parts.iter().all(|p| is_number(p)) {
        return Err(bad());
    }
    let n = |p: &str| p.parse::<u32>().map_err(|_| bad());
    Ok(KubeVersion { major: n(parts[0])?, minor: n(parts[1])?, patch: n(parts[2])? })
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `v3.5.21` (the `v` may be left out); etcd 3.4 to 3.6. Returned with the `v`.
pub fn etcd_version(s: &str) -> Checked<String> {
    let digits = s.strip_prefix('v').unwrap_or(s);
    let parts: Vec<&str> = digits.split('.').collect();
    if parts.len() != 3 || !parts.iter().all(|p| is_number(p)) {
        return Err(refuse(
            format!("`{}` is not an etcd version", shorten(s)),
            "write a release version such as `v3.5.21`, or leave `etcd.version` out to use the one kubeadm pairs with kubernetesVersion",
        ));
    }
    if parts[0] != "3" || !matches!(parts[1], "4" | "5" | "6") {
        return Err(refuse(
            format!("etcd `{s}` is not supported"),
            "use etcd v3.4, v3.5 or v3.6 (kubeadm pairs v3.5 with Kubernetes v1.31–v1.33 and v3.6 with v1.34)",
        ));
    }
    Ok(format!("v{digits}"))
}

/// An IP address usable as a machine's address (not unspecified, multicast or broadcast).
pub fn host_ip(s: &str) -> Checked<IpAddr> {
    let ip = ip(s)?;
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(refuse(
            format!("`{ip}` cannot be a machine's address"),
            "use the unicast address the machine answers SSH on",
        ));
    }
    Ok(ip)
}

pub fn ip(s: &str) -> Checked<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(ip);
    }
    let help = if s.contains('/') {
        "write a single address without a prefix length, e.g. `10.0.0.11`"
    } else if s.contains(':') && s.matches(':').count() == 1 {
        "write the address without a port, e.g. `10.0.0.11`"
    } else {
        "write an IPv4 address such as `10.0.0.11` or an IPv6 address such as `fd00::11`"
    };
    Err(refuse(format!("`{}` is not an IP address", shorten(s)), help))
}

/// `a.b.c.d/n` with the host bits zero.
pub fn cidr(s: &str) -> Checked<Cidr> {
    let bad = |help: &str| refuse(format!("`{}` is not a CIDR", shorten(s)), help);
    let Some((addr, prefix)) = s.split_once('/') else {
        return Err(bad("write a network with its prefix length, e.g. `10.244.0.0/16`"));
    };
    let network: IpAddr = addr
        .parse()
        .map_err(|_| bad("the part before `/` must be an IP address, e.g. `10.244.0.0/16`"))?;
    let width = if network.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= width)
        .ok_or_else(|| bad(&format!("the prefix length must be a number from 0 to {width}")))?;
    let masked = mask(network, prefix);
    if masked != network {
        return Err(refuse(
            format!("`{s}` has host bits set"),
            format!("write the network address: `{masked}/{prefix}`"),
        ));
    }
    Ok(Cidr { network, prefix })
}

fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let bits = u32::from(v4);
            let m = if prefix == 0 { 0 } else { u32::MAX << (32 - prefix as u32) };
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            let m = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix as u32) };
            IpAddr::V6((bits & m).into())
        }
    }
}

/// `host:port` or `[v6]:port`; the host is an IP or a DNS name.
pub fn endpoint(s: &str) -> Checked<Endpoint> {
    let example = "write `host:port`, e.g. `10.0.0.100:6443` or `api.example.com:6443`";
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, p)) = rest.split_once("]:") else {
            return Err(refuse(
                format!("`{}` is not host:port", shorten(s)),
                "write an IPv6 endpoint as `[fd00::100]:6443`",
            ));
        };
        (h, p)
    } else if s.parse::<IpAddr>().is_ok_and(|ip| ip.is_ipv6()) {
        return Err(refuse(
            format!("`{s}` has no port"),
            format!("write `[{s}]:6443` (IPv6 addresses go in brackets)"),
        ));
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => {
                return Err(refuse(
                    format!("`{}` has no port", shorten(s)),
                    format!("add the API server port, e.g. `{}:6443`", shorten(s)),
                ));
            }
        }
    };
    let port = port_number(port)
        .map_err(|_| refuse(format!("`{}` has an invalid port", shorten(s)), example))?;
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => EndpointHost::Ip(ip),
        Err(_) if is_dns_subdomain(host) && !looks_numeric(host) => {
            EndpointHost::Dns(host.to_string())
        }
        Err(_) => {
            return Err(refuse(
                format!("`{}` is neither an IP address nor a DNS name", shorten(host)),
                example,
            ));
        }
    };
    Ok(Endpoint { host, port })
}

/// All-digit-and-dot names (`10.0.0.300`) are typos of IPs, not DNS names.
fn looks_numeric(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn port_number(s: &str) -> Result<u16, ()> {
    s.parse::<u16>().ok().filter(|p| *p != 0).ok_or(())
}

/// A host name or IP for the bastion or a SAN.
pub fn host_or_ip(s: &str, what: &str) -> Checked<String> {
    if s.parse::<IpAddr>().is_ok() || (is_dns_subdomain(s) && !looks_numeric(s)) {
        Ok(s.to_string())
    } else {
        Err(refuse(
            format!("{what} `{}` is neither an IP address nor a DNS name", shorten(s)),
            "write an IP address such as `192.0.2.10` or a lowercase DNS name such as `bastion.example.com`",
        ))
    }
}

/// A port: 1–65535.
pub fn port(p: u16) -> Checked<u16> {
    if p == 0 {
        Err(refuse("port 0 is not a usable port", "use a port from 1 to 65535, e.g. 22"))
    } else {
        Ok(p)
    }
}

/// A Go-style duration: `8760h`, `30m`, `1h30m`, `90s`, `1.5h`; positive.
pub fn duration(s: &str) -> Checked<Duration> {
    let bad = || {
        refuse(
            format!("`{}` is not a duration", shorten(s)),
            "write a number with a unit (h, m, s, ms, us, ns), e.g. `8760h` for a year or `1h30m`",
        )
    };
    let mut rest = s.trim();
    if rest.is_empty() || rest.len() > 64 {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count()
            + rest.chars().take_while(|c| *c == 'µ').map(char::len_utf8).sum::<usize>();
        let (unit, tail) = rest.split_at(unit_len.min(rest.len()));
        let scale = match unit {
            "h" => 3_600e9,
            "m" => 60e9,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            "d" | "y" | "w" => {
                return Err(refuse(
                    format!("`{s}` uses the unit `{unit}`, which durations do not have"),
                    "use hours: a day is `24h`, a year `8760h`, ten years `87600h`",
                ));
            }
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = tail;
    }
    if !nanos.is_finite() || nanos <= 0.0 || nanos > 1e20 {
        return Err(refuse(format!("`{s}` is not a positive duration"), "e.g. `8760h`"));
    }
    Ok(Duration::from_nanos(nanos as u64))
}

/// A path written in the spec: non-empty, one line; `~/` is expanded later by the CLI.
pub fn path(s: &str, what: &str) -> Checked<std::path::PathBuf> {
    if s.trim().is_empty() {
        return Err(refuse(format!("{what} is empty"), "write a path, or leave the field out"));
    }
    if s.contains(['\0', '\n', '\r']) {
        return Err(refuse(
            format!("{what} `{}` contains a control character", shorten(s.trim())),
            "write the path on one line without control characters",
        ));
    }
    if s.starts_with('~') && !s.starts_with("~/") && s != "~" {
        return Err(refuse(
            format!("{what} `{}` uses `~user`, which kubeforge does not expand", shorten(s)),
            "write `~/…` for your own home directory or an absolute path",
        ));
    }
    Ok(std::path::PathBuf::from(s))
}

/// An absolute directory on the hosts (not `/` itself, no `..`).
pub fn host_dir(s: &str, what: &str) -> Checked<std::path::PathBuf> {
    let p = path(s, what)?;
    if !s.starts_with('/') || s.trim_end_matches('/').is_empty() || s.split('/').any(|c| c == "..")
    {
        return Err(refuse(
            format!("{what} `{}` is not an absolute directory below `/`", shorten(s)),
            "write an absolute path such as `/var/backups/kubeforge`",
        ));
    }
    Ok(p)
}

/// A login name: what `useradd` accepts.
pub fn user(s: &str, what: &str) -> Checked<String> {
    let ok = !s.is_empty()
        && s.len() <= 32
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !s.starts_with('-');
    if ok {
        Ok(s.to_string())
    } else {
        Err(refuse(
            format!("{what} `{}` is not a valid user name", shorten(s)),
            "use letters, digits, `_`, `-` or `.` (at most 32 characters), e.g. `root` or `ubuntu`",
        ))
    }
}

/// Edit distance, for "did you mean" hints.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The closest candidate within a small edit distance (case-insensitive), if any.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > 64 {
        return None;
    }
    let lower = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (distance(&lower, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len() / 3).clamp(1, 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        assert!(is_dns_label("cp1"));
        assert!(is_dns_label("a-b-1"));
        assert!(!is_dns_label("Cp1"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label("a_b"));
        assert!(!is_dns_label(&"a".repeat(64)));
        let e = dns_label("Prod_EU1", "cluster name").unwrap_err();
        assert!(e.help.contains("`prod-eu1`"), "{e:?}");
        assert!(is_dns_subdomain("cluster.local"));
        assert!(!is_dns_subdomain("cluster..local"));
    }

    #[test]
    fn versions() {
        assert_eq!(kube_version("v1.33.1").unwrap(), KubeVersion { major: 1, minor: 33, patch: 1 });
        assert_eq!(kube_version("1.31.0").unwrap().minor, 31);
        assert!(kube_version("v1.33").unwrap_err().help.contains("v1.33.0"));
        assert!(kube_version("latest").is_err());
        assert!(kube_version("v1.34.0-rc.1").is_err());
        assert_eq!(etcd_version("3.5.21").unwrap(), "v3.5.21");
        assert!(etcd_version("v3.3.0").is_err());
        assert!(etcd_version("v3.5").is_err());
    }

    #[test]
    fn addresses_and_cidrs() {
        assert!(host_ip("10.0.0.1").is_ok());
        assert!(host_ip("fd00::1").is_ok());
        assert!(host_ip("10.0.0.256").is_err());
        assert!(host_ip("0.0.0.0").is_err());
        assert!(host_ip("224.0.0.1").is_err());
        assert!(ip("10.0.0.1:22").unwrap_err().help.contains("without a port"));
        assert_eq!(cidr("10.244.0.0/16").unwrap().prefix, 16);
        assert!(cidr("10.244.1.0/16").unwrap_err().help.contains("`10.244.0.0/16`"));
        assert!(cidr("10.244.0.0/33").is_err());
        assert!(cidr("10.244.0.0").is_err());
        assert!(cidr("fd00::/64").is_ok());
    }

    #[test]
    fn endpoints() {
        assert_eq!(endpoint("10.0.0.100:6443").unwrap().to_string(), "10.0.0.100:6443");
        assert_eq!(endpoint("[fd00::1]:6443").unwrap().to_string(), "[fd00::1]:6443");
        assert_eq!(endpoint("api.example.com:443").unwrap().port, 443);
        assert!(endpoint("10.0.0.100").unwrap_err().help.contains("10.0.0.100:6443"));
        assert!(endpoint("10.0.0.100:0").is_err());
        assert!(endpoint("10.0.0.100:99999").is_err());
        assert!(endpoint("10.0.0.300:6443").is_err());
        assert!(endpoint("fd00::1").unwrap_err().help.contains("[fd00::1]:6443"));
    }

    #[test]
    fn durations() {
        assert_eq!(duration("8760h").unwrap(), Duration::from_secs(8760 * 3600));
        assert_eq!(duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(duration("365d").unwrap_err().help.contains("8760h"));
        assert!(duration("8760").is_err());
        assert!(duration("h").is_err());
        assert!(duration("0s").is_err());
        assert!(duration("-1h").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn paths_users_and_hints() {
        assert!(path("~/.ssh/id_ed25519", "identityFile").is_ok());
        assert!(path("~bob/.ssh/id", "identityFile").is_err());
        assert!(path("a\nb", "identityFile").is_err());
        assert!(host_dir("/var/backups/kubeforge", "destination").is_ok());
        assert!(host_dir("backups", "destination").is_err());
        assert!(host_dir("/", "destination").is_err());
        assert!(host_dir("/var/../etc", "destination").is_err());
        assert!(user("ubuntu", "ssh.user").is_ok());
        assert!(user("bad user", "ssh.user").is_err());
        assert_eq!(closest("adress", ["name", "address", "roles"]), Some("address"));
        assert_eq!(closest("zzz", ["name", "address"]), None);
    }
}
