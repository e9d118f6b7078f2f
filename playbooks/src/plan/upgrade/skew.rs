//! Version skew rules of an upgrade, as pure functions: given the versions the hosts run (etcd,
//! the static pods' from their manifests' image tags, the kubelet's `--version`, kube-proxy's
//! and CoreDNS's as the cluster reports them) and the spec's targets, say what changes, which
//! rule refuses the change and what only deserves a warning. It owns the rules and their names
//! (which every message carries); it does not read facts (see `super::host_versions`) and does
//! no I/O. The rules judge kube-apiserver, the kubelets and etcd; the other components follow
//! the control plane and are only reported as changes.
//!
//! The rules (kubeadm's `EnforceVersionPolicies`, `../shared/reference/kubeadm.md` §5.2, and
//! etcd's one-minor-at-a-time upgrade, `etcd-lifecycle.md` §3):
//! - `control-plane-one-minor-at-a-time`: a kube-apiserver moves at most one minor up;
//! - `no-downgrade`: a kube-apiserver never moves down (not even a patch);
//! - `kubelet-not-newer-than-apiserver`: no kubelet runs newer than the target API server;
//! - `kubelet-at-most-three-minors-older`: the target API server is at most three minors
//!   newer than any kubelet (`MaximumAllowedMinorVersionKubeletSkew = 3` since v1.29);
//! - `etcd-one-minor-at-a-time`: an etcd member moves at most one minor up (3.4 → 3.5 → 3.6);
//! - `etcd-no-downgrade`: an etcd member never moves down (a cluster version, once raised,
//!   refuses older members);
//! - warning `etcd-older-than-kubeadm-pairs`: the target etcd is older than the one kubeadm
//!   pairs with the target Kubernetes minor.

use std::fmt;

use serde::Serialize;

/// `MAJOR.MINOR.PATCH`, read from `v1.33.1`, `3.4.23`, `1.6.20~ds1` (the suffix is ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Semver {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Semver {
    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        Semver { major, minor, patch }
    }

    /// Parses the leading `[v]MAJOR.MINOR[.PATCH]`; `None` when there is none.
    pub fn parse(text: &str) -> Option<Semver> {
        let text = text.trim();
        let text = text.strip_prefix('v').unwrap_or(text);
        let mut parts = text.splitn(3, '.');
        let num = |s: Option<&str>| -> Option<u32> {
            let s = s?;
            let digits: String = s.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        };
        let major = num(parts.next())?;
        let minor = num(parts.next())?;
        let patch = parts.next().map(|p| num(Some(p))).unwrap_or(Some(0))?;
        Some(Semver { major, minor, patch })
    }

    /// How many minors `to` is above `self` (negative: below); across majors, `None`.
    fn minors_to(self, to: Semver) -> Option<i64> {
        (self.major == to.major).then(|| i64::from(to.minor) - i64::from(self.minor))
    }
}

impl fmt::Display for Semver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The component a version belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    Etcd,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    KubeProxy,
    Coredns,
}

impl Component {
    /// Every component an upgrade reports, in the order it upgrades them.
    pub const ALL: [Component; 7] = [
        Component::Etcd,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::Kubelet,
        Component::KubeProxy,
        Component::Coredns,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
            Component::Coredns => "coredns",
        }
    }

    /// The control plane's static pods (upgraded together, one control plane at a time).
    pub fn is_static_pod(self) -> bool {
        matches!(
            self,
            Component::KubeApiserver | Component::KubeControllerManager | Component::KubeScheduler
        )
    }

    /// The add-ons applied through the API, read from the cluster (not from a host).
    pub fn is_addon(self) -> bool {
        matches!(self, Component::KubeProxy | Component::Coredns)
    }
}

/// What one host runs (`None`: the component is not there, not running, or — for the
/// add-ons — not observed: a fresh host is not an upgrade, and nothing is assumed).
/// `kube_proxy` and `coredns` are the cluster's (the DaemonSet's and the Deployment's image
/// tags), shown on every host that runs a kubelet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostVersions {
    pub host: String,
    pub etcd: Option<Semver>,
    pub kube_apiserver: Option<Semver>,
    pub kube_controller_manager: Option<Semver>,
    pub kube_scheduler: Option<Semver>,
    pub kubelet: Option<Semver>,
    pub kube_proxy: Option<Semver>,
    pub coredns: Option<Semver>,
}

impl HostVersions {
    pub fn get(&self, c: Component) -> Option<Semver> {
        match c {
            Component::Etcd => self.etcd,
            Component::KubeApiserver => self.kube_apiserver,
            Component::KubeControllerManager => self.kube_controller_manager,
            Component::KubeScheduler => self.kube_scheduler,
            Component::Kubelet => self.kubelet,
            Component::KubeProxy => self.kube_proxy,
            Component::Coredns => self.coredns,
        }
    }
}

/// The spec's versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Targets {
    pub kubernetes: Semver,
    pub etcd: Semver,
    /// The etcd kubeadm pairs with the target Kubernetes minor, when known.
    pub kubeadm_etcd: Option<Semver>,
    /// The CoreDNS kubeadm pairs with the target Kubernetes minor (what the add-ons render).
    pub coredns: Option<Semver>,
}

impl Targets {
    /// The target of `c` (`None`: CoreDNS of a release kubeforge has no pairing for).
    pub fn get(&self, c: Component) -> Option<Semver> {
        match c {
            Component::Etcd => Some(self.etcd),
            Component::Coredns => self.coredns,
            _ => Some(self.kubernetes),
        }
    }
}

/// A named rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    ControlPlaneOneMinorAtATime,
    NoDowngrade,
    KubeletNotNewerThanApiserver,
    KubeletAtMostThreeMinorsOlder,
    EtcdOneMinorAtATime,
    EtcdNoDowngrade,
    EtcdOlderThanKubeadmPairs,
}

impl Rule {
    pub fn name(self) -> &'static str {
        match self {
            Rule::ControlPlaneOneMinorAtATime => "control-plane-one-minor-at-a-time",
            Rule::NoDowngrade => "no-downgrade",
            Rule::KubeletNotNewerThanApiserver => "kubelet-not-newer-than-apiserver",
            Rule::KubeletAtMostThreeMinorsOlder => "kubelet-at-most-three-minors-older",
            Rule::EtcdOneMinorAtATime => "etcd-one-minor-at-a-time",
            Rule::EtcdNoDowngrade => "etcd-no-downgrade",
            Rule::EtcdOlderThanKubeadmPairs => "etcd-older-than-kubeadm-pairs",
        }
    }
}

/// The kubelet may be this many minors older than the API server (kubeadm since v1.29).
pub const KUBELET_MAX_MINORS_OLDER: i64 = 3;

/// One rule's finding on one host (or the cluster, for `host == "*"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub host: String,
    pub component: Component,
    pub observed: Option<Semver>,
    pub target: Semver,
    /// Says the rule's name, both versions and what to do.
    pub message: String,
}

/// What the rules say about a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SkewReport {
    /// Any refusal refuses the whole upgrade (nothing is changed).
    pub refusals: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// A component whose running version differs from the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub host: String,
    pub component: Component,
    pub from: Semver,
    pub to: Semver,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {} → {}", self.host, self.component.name(), self.from, self.to)
    }
}

/// Every running component whose version differs from the spec's target, in host order.
pub fn changes(observed: &[HostVersions], targets: &Targets) -> Vec<Change> {
    let mut out = Vec::new();
    for h in observed {
        for c in Component::ALL {
            if let (Some(from), Some(to)) = (h.get(c), targets.get(c))
                && from != to
            {
                out.push(Change { host: h.host.clone(), component: c, from, to });
            }
        }
    }
    out
}

/// Applies every rule; see the module doc.
pub fn check(observed: &[HostVersions], targets: &Targets) -> SkewReport {
    let mut report = SkewReport::default();
    let k8s = targets.kubernetes;
    let mut refuse = |rule: Rule, h: &HostVersions, c: Component, from: Semver, why: String| {
        let target = targets.get(c).unwrap_or(k8s);
        report.refusals.push(Finding {
            rule,
            host: h.host.clone(),
            component: c,
            observed: Some(from),
            target,
            message: format!(
                "[{}] {} on {} runs {from}, the spec says {target}: {why}",
                rule.name(),
                c.name(),
                h.host
            ),
        });
    };
    for h in observed {
        if let Some(from) = h.kube_apiserver {
            match from.minors_to(k8s) {
                _ if k8s < from => refuse(
                    Rule::NoDowngrade,
                    h,
                    Component::KubeApiserver,
                    from,
                    "kubeforge never downgrades a control plane; set the spec back to the \
                     running version (or newer)"
                        .into(),
                ),
                Some(n) if n <= 1 => {}
                _ => refuse(
                    Rule::ControlPlaneOneMinorAtATime,
                    h,
                    Component::KubeApiserver,
                    from,
                    format!(
                        "the control plane moves one minor at a time; upgrade to v{}.{}.x first",
                        from.major,
                        from.minor + 1
                    ),
                ),
            }
        }
        if let Some(from) = h.kubelet {
            if from > k8s {
                refuse(
                    Rule::KubeletNotNewerThanApiserver,
                    h,
                    Component::Kubelet,
                    from,
                    format!(
                        "a kubelet must never be newer than the API server (target {k8s}); \
                         set the spec to at least {from}"
                    ),
                );
            } else if from.minors_to(k8s).is_none_or(|n| n > KUBELET_MAX_MINORS_OLDER) {
                refuse(
                    Rule::KubeletAtMostThreeMinorsOlder,
                    h,
                    Component::Kubelet,
                    from,
                    format!(
                        "a kubelet may be at most {KUBELET_MAX_MINORS_OLDER} minors older than \
                         the API server; upgrade the kubelets first to within \
                         {KUBELET_MAX_MINORS_OLDER} minors of {k8s}"
                    ),
                );
            }
        }
        if let Some(from) = h.etcd {
            let to = targets.etcd;
            match from.minors_to(to) {
                _ if to < from => refuse(
                    Rule::EtcdNoDowngrade,
                    h,
                    Component::Etcd,
                    from,
                    "etcd is never downgraded (once the cluster version is raised, older \
                     members refuse to start); set spec.etcd.version back to the running \
                     version (or newer), or restore a backup taken before the upgrade"
                        .into(),
                ),
                Some(n) if n <= 1 => {}
                _ => refuse(
                    Rule::EtcdOneMinorAtATime,
                    h,
                    Component::Etcd,
                    from,
                    format!(
                        "etcd moves one minor at a time; upgrade to v{}.{}.x first",
                        from.major,
                        from.minor + 1
                    ),
                ),
            }
        }
    }
    if let Some(paired) = targets.kubeadm_etcd
        && targets.etcd < paired
    {
        report.warnings.push(Finding {
            rule: Rule::EtcdOlderThanKubeadmPairs,
            host: "*".into(),
            component: Component::Etcd,
            observed: None,
            target: targets.etcd,
            message: format!(
                "[{}] etcd {} is older than the etcd {paired} kubeadm pairs with Kubernetes \
                 v{}.{}; it works, but plan an etcd upgrade",
                Rule::EtcdOlderThanKubeadmPairs.name(),
                targets.etcd,
                k8s.major,
                k8s.minor
            ),
        });
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Semver {
        Semver::parse(s).unwrap()
    }

    fn targets(k8s: &str, etcd: &str) -> Targets {
        Targets { kubernetes: v(k8s), etcd: v(etcd), kubeadm_etcd: None, coredns: None }
    }

    fn host(
        name: &str,
        etcd: Option<&str>,
        api: Option<&str>,
        kubelet: Option<&str>,
    ) -> HostVersions {
        HostVersions {
            host: name.into(),
            etcd: etcd.map(v),
            kube_apiserver: api.map(v),
            kubelet: kubelet.map(v),
            ..HostVersions::default()
        }
    }

    fn only_refusal(report: &SkewReport, rule: Rule, host: &str) {
        assert_eq!(report.refusals.len(), 1, "{report:#?}");
        let f = &report.refusals[0];
        assert_eq!(f.rule, rule);
        assert_eq!(f.host, host);
        assert!(f.message.contains(rule.name()), "{}", f.message);
        assert!(f.message.contains(host), "{}", f.message);
    }

    #[test]
    fn versions_parse_from_tags_and_version_outputs() {
        assert_eq!(Semver::parse("v1.33.1"), Some(Semver::new(1, 33, 1)));
        assert_eq!(Semver::parse("3.4.23"), Some(Semver::new(3, 4, 23)));
        assert_eq!(Semver::parse("1.6.20~ds1"), Some(Semver::new(1, 6, 20)));
        assert_eq!(Semver::parse("v3.5"), Some(Semver::new(3, 5, 0)));
        assert_eq!(Semver::parse("latest"), None);
        assert_eq!(Semver::parse(""), None);
    }

    #[test]
    fn one_minor_up_everywhere_passes_with_nothing_refused() {
        let hosts = [
            host("cp1", Some("3.4.23"), Some("v1.33.2"), Some("v1.33.2")),
            host("w1", None, None, Some("v1.31.0")),
        ];
        let r = check(&hosts, &targets("v1.34.0", "v3.5.1"));
        assert!(r.refusals.is_empty(), "{r:#?}");
        assert_eq!(changes(&hosts, &targets("v1.34.0", "v3.5.1")).len(), 4);
    }

    #[test]
    fn every_component_that_differs_is_a_change_and_an_unobserved_one_is_not() {
        let mut t = targets("v1.34.1", "v3.6.4");
        t.coredns = Some(v("v1.12.1"));
        let h = HostVersions {
            host: "cp1".into(),
            etcd: Some(v("3.6.4")),
            kube_apiserver: Some(v("v1.34.1")),
            kube_controller_manager: Some(v("v1.33.1")),
            kube_scheduler: Some(v("v1.33.1")),
            kubelet: Some(v("v1.34.1")),
            kube_proxy: Some(v("v1.33.1")),
            coredns: None,
        };
        let shown: Vec<String> = changes(&[h], &t).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "cp1 kube-controller-manager 1.33.1 → 1.34.1",
                "cp1 kube-scheduler 1.33.1 → 1.34.1",
                "cp1 kube-proxy 1.33.1 → 1.34.1",
            ]
        );
    }

    #[test]
    fn a_fresh_host_is_not_an_upgrade() {
        let hosts = [host("new", None, None, None)];
        let t = targets("v1.34.0", "v3.5.1");
        assert!(check(&hosts, &t).refusals.is_empty());
        assert!(changes(&hosts, &t).is_empty());
    }

    #[test]
    fn control_plane_skipping_a_minor_is_refused() {
        let hosts = [host("cp1", None, Some("v1.32.4"), None)];
        let r = check(&hosts, &targets("v1.34.0", "v3.5.1"));
        only_refusal(&r, Rule::ControlPlaneOneMinorAtATime, "cp1");
        assert!(r.refusals[0].message.contains("1.32.4"));
        assert!(r.refusals[0].message.contains("v1.33.x"));
    }

    #[test]
    fn control_plane_downgrade_is_refused_even_by_a_patch() {
        let r = check(&[host("cp2", None, Some("v1.34.2"), None)], &targets("v1.34.1", "v3.5.1"));
        only_refusal(&r, Rule::NoDowngrade, "cp2");
        let r = check(&[host("cp2", None, Some("v1.34.0"), None)], &targets("v1.33.5", "v3.5.1"));
        only_refusal(&r, Rule::NoDowngrade, "cp2");
    }

    #[test]
    fn kubelet_newer_than_the_api_server_is_refused() {
        let r = check(&[host("w1", None, None, Some("v1.34.1"))], &targets("v1.34.0", "v3.5.1"));
        only_refusal(&r, Rule::KubeletNotNewerThanApiserver, "w1");
    }

    #[test]
    fn kubelet_more_than_three_minors_older_is_refused_and_three_is_fine() {
        let t = targets("v1.34.0", "v3.5.1");
        let r = check(&[host("w2", None, None, Some("v1.30.9"))], &t);
        only_refusal(&r, Rule::KubeletAtMostThreeMinorsOlder, "w2");
        assert!(check(&[host("w2", None, None, Some("v1.31.0"))], &t).refusals.is_empty());
    }

    #[test]
    fn etcd_skipping_a_minor_is_refused() {
        let r = check(&[host("e1", Some("3.4.23"), None, None)], &targets("v1.34.0", "v3.6.4"));
        only_refusal(&r, Rule::EtcdOneMinorAtATime, "e1");
        assert!(r.refusals[0].message.contains("v3.5.x"));
        let r = check(&[host("e1", Some("2.3.8"), None, None)], &targets("v1.34.0", "v3.5.1"));
        only_refusal(&r, Rule::EtcdOneMinorAtATime, "e1");
    }

    #[test]
    fn etcd_downgrade_is_refused() {
        let r = check(&[host("e2", Some("3.5.1"), None, None)], &targets("v1.33.0", "v3.4.23"));
        only_refusal(&r, Rule::EtcdNoDowngrade, "e2");
        let r = check(&[host("e2", Some("3.5.2"), None, None)], &targets("v1.33.0", "v3.5.1"));
        only_refusal(&r, Rule::EtcdNoDowngrade, "e2");
    }

    #[test]
    fn etcd_older_than_kubeadms_pairing_is_a_warning_not_a_refusal() {
        let mut t = targets("v1.33.0", "v3.5.1");
        t.kubeadm_etcd = Some(v("v3.5.21"));
        let r = check(&[host("e1", Some("3.4.23"), None, None)], &t);
        assert!(r.refusals.is_empty(), "{r:#?}");
        assert_eq!(r.warnings.len(), 1);
        assert_eq!(r.warnings[0].rule, Rule::EtcdOlderThanKubeadmPairs);
        assert!(r.warnings[0].message.contains("etcd-older-than-kubeadm-pairs"));
        t.etcd = v("v3.5.21");
        assert!(check(&[], &t).warnings.is_empty());
    }

    #[test]
    fn every_violation_on_every_host_is_reported() {
        let hosts = [
            host("a", Some("3.5.1"), Some("v1.34.0"), Some("v1.35.0")),
            host("b", Some("3.2.0"), Some("v1.31.0"), Some("v1.29.0")),
        ];
        let r = check(&hosts, &targets("v1.33.0", "v3.4.23"));
        let rules: Vec<(String, Rule)> =
            r.refusals.iter().map(|f| (f.host.clone(), f.rule)).collect();
        assert_eq!(
            rules,
            vec![
                ("a".into(), Rule::NoDowngrade),
                ("a".into(), Rule::KubeletNotNewerThanApiserver),
                ("a".into(), Rule::EtcdNoDowngrade),
                ("b".into(), Rule::ControlPlaneOneMinorAtATime),
                ("b".into(), Rule::KubeletAtMostThreeMinorsOlder),
                ("b".into(), Rule::EtcdOneMinorAtATime),
            ]
        );
    }
}
