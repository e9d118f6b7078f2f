//! The Kubernetes releases kubeforge supports and, per minor, the component versions kubeadm of
//! that minor pairs with it (etcd, pause, CoreDNS). Validation rejects other minors; the
//! templates and the planner read image tags and the default etcd version from here. Pure data:
//! no I/O, no network look-ups.
//!
//! Sources: kubeadm `cmd/kubeadm/app/constants/constants.go` of each release branch
//! (`DefaultEtcdVersion`/`SupportedEtcdVersion`, `PauseVersion`, `CoreDNSVersion`).

use crate::model::KubeVersion;

/// One supported Kubernetes minor (major is always 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    /// The minor of `v1.MINOR`.
    pub minor: u32,
    /// The etcd kubeadm runs with this minor, `vX.Y.Z` (image tag: [`Release::etcd_image_tag`]).
    pub etcd: &'static str,
    /// The pause (sandbox) image tag, as in `registry.k8s.io/pause:<tag>`.
    pub pause: &'static str,
    /// The CoreDNS image tag, as in `registry.k8s.io/coredns/coredns:<tag>`.
    pub coredns: &'static str,
}

impl Release {
    /// The etcd image tag kubeadm uses: the version without `v`, suffixed `-0`.
    pub fn etcd_image_tag(&self) -> String {
        format!("{}-0", self.etcd.trim_start_matches('v'))
    }
}

/// Supported releases, oldest first.
pub const SUPPORTED: &[Release] = &[
    Release { minor: 31, etcd: "v3.5.15", pause: "3.10", coredns: "v1.11.3" },
    Release { minor: 32, etcd: "v3.5.16", pause: "3.10", coredns: "v1.11.3" },
    Release { minor: 33, etcd: "v3.5.21", pause: "3.10", coredns: "v1.12.0" },
    Release { minor: 34, etcd: "v3.6.4", pause: "3.10.1", coredns: "v1.12.1" },
];

/// The release data for `v`, if its minor is supported.
pub fn release(v: KubeVersion) -> Option<&'static Release> {
    if v.major != 1 {
        return None;
    }
    SUPPORTED.iter().find(|r| r.minor == v.minor)
}

/// `v1.31–v1.34`, for messages and docs.
pub fn supported_range() -> String {
    match (SUPPORTED.first(), SUPPORTED.last()) {
        (Some(first), Some(last)) => format!("v1.{}–v1.{}", first.minor, last.minor),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(minor: u32, patch: u32) -> KubeVersion {
        KubeVersion { major: 1, minor, patch }
    }

    #[test]
    fn supported_minors_resolve() {
        assert_eq!(release(v(31, 0)).map(|r| r.etcd), Some("v3.5.15"));
        assert_eq!(release(v(33, 1)).map(|r| r.etcd), Some("v3.5.21"));
        assert_eq!(release(v(34, 2)).map(|r| r.pause), Some("3.10.1"));
        assert_eq!(release(v(30, 9)), None);
        assert_eq!(release(v(35, 0)), None);
        assert_eq!(release(KubeVersion { major: 2, minor: 31, patch: 0 }), None);
    }

    #[test]
    fn etcd_image_tag_is_kubeadm_style() {
        assert_eq!(release(v(34, 0)).unwrap().etcd_image_tag(), "3.6.4-0");
        assert_eq!(supported_range(), "v1.31–v1.34");
    }

    #[test]
    fn releases_are_sorted_and_unique() {
        assert!(SUPPORTED.windows(2).all(|w| w[0].minor < w[1].minor));
    }
}
