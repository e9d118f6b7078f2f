//! Validation: turns a parsed [`ClusterSpec`] into a [`model::Cluster`] with every default
//! filled in, or reports *every* problem at once, each with its YAML path, its position (found
//! through a locator over the parsed file, so no spans are carried in the types) and a remedy.
//! Pure: the spec is data in, problems or the model out.

mod cron;
mod hosts;
mod network;
pub mod values;

use std::time::Duration;

use crate::model::{
    ArtifactSource, Backup, BackupRunner, Bastion, Cluster, Etcd, EtcdTopology, HostKeyPolicy,
    KeyAlgorithm, Pki, Ssh,
};
use crate::spec::diagnostics::{Position, Problem};
use crate::spec::types::{
    API_VERSION, BackupRunnerSpec, ClusterSpec, EtcdTopologySpec, HostKeyPolicySpec, KIND,
    KeyAlgorithmSpec, Spec,
};
use crate::versions;
use values::{Checked, Refusal};

pub use cron::schedule as cron_schedule;

/// Default backup retention (snapshots kept).
pub const DEFAULT_RETENTION: u32 = 7;
/// Default snapshot directory on the etcd hosts.
pub const DEFAULT_BACKUP_DIR: &str = "/var/backups/kubeforge";

/// Collects problems; finds positions for paths only when something is wrong.
pub struct Checker<'a> {
    locate: &'a dyn Fn(&str) -> Position,
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub fn new(locate: &'a dyn Fn(&str) -> Position) -> Self {
        Checker { locate, problems: Vec::new() }
    }

    pub fn position(&self, path: &str) -> Position {
        (self.locate)(path)
    }

    pub fn report(&mut self, path: &str, message: impl Into<String>, help: impl Into<String>) {
        let position = self.position(path);
        self.problems.push(Problem::new(path, position, message, help));
    }

    /// Reports a problem that also points at a second place (e.g. the first duplicate).
    pub fn report_related(
        &mut self,
        path: &str,
        message: impl Into<String>,
        help: impl Into<String>,
        related_path: &str,
        related_label: impl Into<String>,
    ) {
        let position = self.position(path);
        let related = self.position(related_path);
        self.problems
            .push(Problem::new(path, position, message, help).with_related(related_label, related));
    }

    pub fn refused(&mut self, path: &str, refusal: Refusal) {
        self.report(path, refusal.message, refusal.help);
    }

    /// The value, or `None` after reporting why it was refused; `path` is built only then.
    pub fn check<T>(&mut self, path: impl FnOnce() -> String, checked: Checked<T>) -> Option<T> {
        match checked {
            Ok(v) => Some(v),
            Err(refusal) => {
                self.refused(&path(), refusal);
                None
            }
        }
    }
}

/// Validates `spec`; `locate` maps a YAML path to where it is written.
pub fn validate(
    spec: &ClusterSpec,
    locate: &dyn Fn(&str) -> Position,
) -> Result<Cluster, Vec<Problem>> {
    let mut c = Checker::new(locate);
    header(&mut c, spec);
    let name =
        c.check(|| "metadata.name".into(), values::dns_label(&spec.metadata.name, "cluster name"));
    let s = &spec.spec;
    let version = kubernetes_version(&mut c, s);
    let network = network::network(&mut c, s);
    let etcd_topology = match s.etcd.as_ref().and_then(|e| e.topology) {
        Some(EtcdTopologySpec::External) => EtcdTopology::External,
        Some(EtcdTopologySpec::Stacked) | None => EtcdTopology::Stacked,
    };
    let etcd_version = etcd_version(&mut c, s, version);
    let pki = pki(&mut c, s);
    let ssh = ssh(&mut c, s);
    let artifacts = artifacts(&mut c, s);
    let artifact_mirror = artifact_mirror(&mut c, s, artifacts.as_ref());
    let backup = backup(&mut c, s);
    let hosts = hosts::hosts(&mut c, s, etcd_topology, network.as_ref(), ssh.as_ref());
    let lb = hosts::load_balancer(&mut c, s, &hosts, network.as_ref());

    if !c.problems.is_empty() {
        return Err(c.problems);
    }
    let (Some(name), Some(version), Some(network), Some(etcd_version), Some(pki), Some(ssh)) =
        (name, version, network, etcd_version, pki, ssh)
    else {
        return Err(vec![internal()]);
    };
    let (Some(artifacts), Some(backup), Some(hosts), Some((load_balancer, endpoint))) =
        (artifacts, backup, hosts.hosts, lb)
    else {
        return Err(vec![internal()]);
    };
    Ok(Cluster {
        name,
        kubernetes_version: version,
        control_plane_endpoint: endpoint,
        network,
        etcd: Etcd { topology: etcd_topology, version: etcd_version },
        load_balancer,
        pki,
        ssh,
        artifacts,
        artifact_mirror,
        backup,
        hosts,
    })
}

/// A value was refused without a report: a bug, said plainly rather than a panic.
fn internal() -> Problem {
    Problem::new(
        "",
        Position::START,
        "validation stopped without naming a problem (a kubeforge bug)",
        "please report this with the spec file",
    )
}

fn header(c: &mut Checker<'_>, spec: &ClusterSpec) {
    if spec.api_version != API_VERSION {
        let help = match values::closest(&spec.api_version, [API_VERSION]) {
            Some(_) => format!("did you mean `{API_VERSION}`?"),
            None => format!("this kubeforge reads `apiVersion: {API_VERSION}`"),
        };
        let msg = format!("unknown apiVersion `{}`", values::shorten(&spec.api_version));
        c.report("apiVersion", msg, help);
    }
    if spec.kind != KIND {
        let help = match values::closest(&spec.kind, [KIND]) {
            Some(_) => format!("did you mean `{KIND}`?"),
            None => format!("this kubeforge reads `kind: {KIND}`"),
        };
        c.report("kind", format!("unknown kind `{}`", values::shorten(&spec.kind)), help);
    }
}

fn kubernetes_version(c: &mut Checker<'_>, s: &Spec) -> Option<crate::model::KubeVersion> {
    let path = "spec.kubernetesVersion";
    let v = c.check(|| path.into(), values::kube_version(&s.kubernetes_version))?;
    if versions::release(v).is_none() {
        c.report(
            path,
            format!("Kubernetes {v} is not supported"),
            format!(
                "use a release of a supported minor ({}), e.g. `v1.33.1`",
                versions::supported_range()
            ),
        );
        return None;
    }
    Some(v)
}

fn etcd_version(
    c: &mut Checker<'_>,
    s: &Spec,
    version: Option<crate::model::KubeVersion>,
) -> Option<String> {
    match s.etcd.as_ref().and_then(|e| e.version.as_deref()) {
        Some(v) => c.check(|| "spec.etcd.version".into(), values::etcd_version(v)),
        // Without a usable Kubernetes version that field already carries the problem.
        None => version.and_then(versions::release).map(|r| r.etcd.to_string()),
    }
}

const HOUR: Duration = Duration::from_secs(3600);
const CENTURY: Duration = Duration::from_secs(100 * 8760 * 3600);

fn pki(c: &mut Checker<'_>, s: &Spec) -> Option<Pki> {
    let spec = s.pki.clone().unwrap_or_default();
    let key_algorithm = match spec.key_algorithm {
        None | Some(KeyAlgorithmSpec::EcdsaP256) => KeyAlgorithm::EcdsaP256,
        Some(KeyAlgorithmSpec::EcdsaP384) => KeyAlgorithm::EcdsaP384,
        Some(KeyAlgorithmSpec::Rsa2048) => KeyAlgorithm::Rsa2048,
        Some(KeyAlgorithmSpec::Rsa3072) => KeyAlgorithm::Rsa3072,
        Some(KeyAlgorithmSpec::Rsa4096) => KeyAlgorithm::Rsa4096,
    };
    let mut validity = |field: &str, text: Option<&str>, default: u64| -> Option<Duration> {
        let path = format!("spec.pki.{field}");
        let d = match text {
            Some(t) => c.check(|| path.clone(), values::duration(t))?,
            None => Duration::from_secs(default * 3600),
        };
        if d < HOUR || d > CENTURY {
            c.report(
                &path,
                format!("{field} `{}` is outside 1h to 876000h (100 years)", text.unwrap_or("")),
                "certificates need a lifetime of at least an hour and at most 100 years, e.g. `8760h`",
            );
            return None;
        }
        Some(d)
    };
    let certificate_validity =
        validity("certificateValidity", spec.certificate_validity.as_deref(), 8760);
    let ca_validity = validity("caValidity", spec.ca_validity.as_deref(), 87600);
    if let (Some(leaf), Some(ca)) = (certificate_validity, ca_validity)
        && leaf > ca
    {
        c.report(
            "spec.pki.certificateValidity",
            format!(
                "certificateValidity ({}h) is longer than caValidity ({}h)",
                leaf.as_secs() / 3600,
                ca.as_secs() / 3600
            ),
            "a certificate cannot outlive the CA that signed it; shorten certificateValidity or lengthen caValidity",
        );
    }
    let mut extra_sans = Vec::new();
    for (i, san) in spec.extra_sans.iter().flatten().enumerate() {
        let name = san.strip_prefix("*.").unwrap_or(san);
        if c.check(|| format!("spec.pki.extraSANs[{i}]"), values::host_or_ip(name, "extra SAN"))
            .is_some()
        {
            extra_sans.push(san.clone());
        }
    }
    Some(Pki {
        key_algorithm,
        certificate_validity: certificate_validity?,
        ca_validity: ca_validity?,
        extra_sans,
    })
}

fn ssh(c: &mut Checker<'_>, s: &Spec) -> Option<Ssh> {
    let spec = s.ssh.clone().unwrap_or_default();
    let user = match &spec.user {
        Some(u) => c.check(|| "spec.ssh.user".into(), values::user(u, "ssh user")),
        None => Some("root".to_string()),
    };
    let port = c.check(|| "spec.ssh.port".into(), values::port(spec.port.unwrap_or(22)));
    let identity_file = optional(
        spec.identity_file
            .as_ref()
            .map(|p| c.check(|| "spec.ssh.identityFile".into(), values::path(p, "identityFile"))),
    );
    let known_hosts_file =
        optional(spec.known_hosts_file.as_ref().map(|p| {
            c.check(|| "spec.ssh.knownHostsFile".into(), values::path(p, "knownHostsFile"))
        }));
    let host_key_policy = match spec.host_key_policy {
        Some(HostKeyPolicySpec::Strict) => HostKeyPolicy::Strict,
        Some(HostKeyPolicySpec::AcceptNew) | None => HostKeyPolicy::AcceptNew,
    };
    let bastion = match &spec.bastion {
        None => Some(None),
        Some(b) => {
            let address = match &b.address {
                Some(a) => c.check(
                    || "spec.ssh.bastion.address".into(),
                    values::host_or_ip(a, "bastion address"),
                ),
                None => {
                    c.report(
                        "spec.ssh.bastion",
                        "the bastion has no address",
                        "add `address:` with the jump host's IP or DNS name, or remove `bastion`",
                    );
                    None
                }
            };
            let port =
                c.check(|| "spec.ssh.bastion.port".into(), values::port(b.port.unwrap_or(22)));
            let buser = match &b.user {
                Some(u) => {
                    c.check(|| "spec.ssh.bastion.user".into(), values::user(u, "bastion user"))
                }
                None => user.clone(),
            };
            let identity = match &b.identity_file {
                Some(p) => c
                    .check(
                        || "spec.ssh.bastion.identityFile".into(),
                        values::path(p, "identityFile"),
                    )
                    .map(Some),
                None => identity_file.clone(),
            };
            (|| {
                Some(Bastion {
                    address: address?,
                    port: port?,
                    user: buser?,
                    identity_file: identity?,
                })
            })()
            .map(Some)
        }
    };
    Some(Ssh {
        user: user?,
        port: port?,
        identity_file: identity_file?,
        known_hosts_file: known_hosts_file?,
        host_key_policy,
        bastion: bastion?,
    })
}

/// An optional field after checking: `None` = refused, `Some(None)` = absent.
pub fn optional<T>(checked: Option<Option<T>>) -> Option<Option<T>> {
    match checked {
        None => Some(None),
        Some(None) => None,
        Some(Some(v)) => Some(Some(v)),
    }
}

fn artifacts(c: &mut Checker<'_>, s: &Spec) -> Option<ArtifactSource> {
    let Some(source) = s.artifacts.as_ref().and_then(|a| a.source.as_deref()) else {
        return Some(ArtifactSource::Upstream);
    };
    let path = "spec.artifacts.source";
    if source == "upstream" {
        return Some(ArtifactSource::Upstream);
    }
    if let Some(dir) = source.strip_prefix("dir:") {
        let dir = c.check(|| path.into(), values::path(dir, "artifact directory"))?;
        return Some(ArtifactSource::Dir(dir));
    }
    let help = if values::closest(source, ["upstream"]).is_some() {
        "did you mean `upstream`?".to_string()
    } else if source.starts_with('/') || source.starts_with('.') {
        format!("write `dir:{source}` for an offline bundle directory")
    } else {
        "write `upstream` or `dir:<path>` (an offline bundle directory)".to_string()
    };
    c.report(path, format!("unknown artifact source `{}`", values::shorten(source)), help);
    None
}

fn artifact_mirror(
    c: &mut Checker<'_>,
    s: &Spec,
    source: Option<&ArtifactSource>,
) -> Option<String> {
    let mirror = s.artifacts.as_ref().and_then(|a| a.mirror.as_deref())?;
    let path = "spec.artifacts.mirror";
    if let Some(ArtifactSource::Dir(_)) = source {
        c.report(
            path,
            "a mirror applies to `source: upstream` only",
            "remove `mirror`, or set `source: upstream` to download from the mirror",
        );
        return None;
    }
    let rest = mirror.strip_prefix("https://").or_else(|| mirror.strip_prefix("http://"));
    if rest.is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace)) {
        c.report(
            path,
            format!("`{}` is not an http:// or https:// URL", values::shorten(mirror)),
            "write the mirror's base URL, e.g. `https://mirror.example/kubeforge`",
        );
        return None;
    }
    Some(mirror.trim_end_matches('/').to_string())
}

fn backup(c: &mut Checker<'_>, s: &Spec) -> Option<Option<Backup>> {
    let Some(b) = &s.backup else { return Some(None) };
    let schedule = b
        .schedule
        .as_ref()
        .map(|expr| c.check(|| "spec.backup.schedule".into(), cron::schedule(expr)));
    let retention = b.retention.unwrap_or(DEFAULT_RETENTION);
    let retention_ok = (1..=10_000).contains(&retention);
    if !retention_ok {
        c.report(
            "spec.backup.retention",
            format!("retention {retention} is outside 1 to 10000"),
            "keep at least one snapshot (e.g. `retention: 14`); remove `backup` to turn scheduled backups off",
        );
    }
    let destination = c.check(
        || "spec.backup.destination".into(),
        values::host_dir(
            b.destination.as_deref().unwrap_or(DEFAULT_BACKUP_DIR),
            "backup destination",
        ),
    );
    let schedule = match schedule {
        Some(checked) => Some(checked?),
        None => None,
    };
    retention_ok.then_some(())?;
    let runner = match b.runner {
        None | Some(BackupRunnerSpec::SystemdTimer) => BackupRunner::SystemdTimer,
        Some(BackupRunnerSpec::Cronjob) => BackupRunner::CronJob,
    };
    Some(Some(Backup { schedule, retention, destination: destination?, runner }))
}

#[cfg(test)]
mod tests;
