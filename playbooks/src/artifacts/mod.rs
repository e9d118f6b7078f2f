//! Artifacts: which file of which component version each node needs, where it comes from and
//! which sha256 it must have. This module owns the built-in catalog ([`catalog`]), the offline
//! directory layout ([`layout`]) and the pure resolver [`resolve`]. It never downloads, reads or
//! hashes anything: the `cli` crate fetches what the returned [`ArtifactRef`]s name, verifies
//! them and pushes them; the planner decides which host gets which file.
//!
//! Decisions recorded here:
//! * Binaries: etcd, kubelet, kubectl, crictl, containerd, runc and the CNI plugins are host
//!   binaries, pushed over SSH and verified by sha256 on the node.
//! * kube-apiserver, kube-controller-manager and kube-scheduler run as static pods, as kubeadm
//!   runs them (`/etc/kubernetes/manifests`), so they are **container images**, not binaries.
//!   With `artifacts.source: dir:<path>` they are image archives in the layout, imported with
//!   `ctr -n k8s.io images import`. With `upstream` they are pulled by containerd on the control
//!   planes from `registry.k8s.io` by tag: no public source publishes sha256 values for the
//!   release image archives, so the catalog holds no file for them and the registry's content
//!   addressing is the only check. This is the one case where `upstream` needs registry access
//!   from the nodes; `dir:` needs none.
//! * The pause, CoreDNS and kube-proxy images follow the same rule: image archives in a
//!   directory, registry pulls with `upstream`.
//! * Upstream archives are unpacked on the operator's machine into the same layout as `dir:`,
//!   so everything after the download treats both sources alike.
//!
//! What each phase needs, and the names under which the cli hands the files to the planner
//! (the `ArtifactInventory` keys), are in [`needs`].

pub mod catalog;
pub mod layout;
pub mod needs;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::model::{ArtifactSource, Cluster};

/// A node CPU architecture kubeforge has artifacts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// The name release files use (`amd64`, `arm64`).
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Amd64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }
    /// Maps `uname -m` output (`x86_64`, `aarch64`, also `amd64`/`arm64`); `None` if unsupported.
    pub fn from_uname(machine: &str) -> Option<Arch> {
        match machine.trim() {
            "x86_64" | "amd64" => Some(Arch::Amd64),
            "aarch64" | "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A component kubeforge installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Etcd,
    Kubelet,
    Kubectl,
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    KubeProxy,
    Pause,
    CoreDns,
    /// The CNI add-on's images (the tags pinned in `render::configs::addons::PINNED_IMAGES`).
    Flannel,
    FlannelCniPlugin,
    Containerd,
    Runc,
    Crictl,
    CniPlugins,
}

/// Which hosts need a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostScope {
    /// The etcd members (control planes when stacked, etcd hosts when external).
    EtcdMembers,
    /// Every host that runs a kubelet.
    KubeletHosts,
    /// Control planes only.
    ControlPlanes,
    /// Hosts that run a kubelet and are not control planes.
    Workers,
    /// Every host in the spec.
    AllHosts,
}

impl Component {
    /// Every component, in install order.
    pub const ALL: [Component; 15] = [
        Component::Etcd,
        Component::Containerd,
        Component::Runc,
        Component::CniPlugins,
        Component::Crictl,
        Component::Kubelet,
        Component::Kubectl,
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::KubeProxy,
        Component::Pause,
        Component::CoreDns,
        Component::Flannel,
        Component::FlannelCniPlugin,
    ];

    /// The directory name in the layout and the name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::Kubelet => "kubelet",
            Component::Kubectl => "kubectl",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::KubeProxy => "kube-proxy",
            Component::Pause => "pause",
            Component::CoreDns => "coredns",
            Component::Flannel => "flannel",
            Component::FlannelCniPlugin => "flannel-cni-plugin",
            Component::Containerd => "containerd",
            Component::Runc => "runc",
            Component::Crictl => "crictl",
            Component::CniPlugins => "cni-plugins",
        }
    }

    pub fn scope(self) -> HostScope {
        match self {
            Component::Etcd => HostScope::EtcdMembers,
            Component::KubeApiserver
            | Component::KubeControllerManager
            | Component::KubeScheduler
            | Component::Kubectl => HostScope::ControlPlanes,
            Component::Kubelet
            | Component::KubeProxy
            | Component::Pause
            | Component::CoreDns
            | Component::Flannel
            | Component::FlannelCniPlugin
            | Component::Containerd
            | Component::Runc
            | Component::Crictl
            | Component::CniPlugins => HostScope::KubeletHosts,
        }
    }

    /// A component shipped as a container image (static pods, the sandbox, the add-ons).
    pub fn is_image(self) -> bool {
        matches!(
            self,
            Component::KubeApiserver
                | Component::KubeControllerManager
                | Component::KubeScheduler
                | Component::KubeProxy
                | Component::Pause
                | Component::CoreDns
                | Component::Flannel
                | Component::FlannelCniPlugin
        )
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where an artifact's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An upstream release file, downloaded once into the operator's cache.
    Url(String),
    /// A file of the offline layout, as the spec wrote the directory (a relative directory is
    /// relative to the spec file's folder; the caller joins it).
    Path(PathBuf),
    /// An image containerd pulls on the node, e.g. `registry.k8s.io/kube-apiserver:v1.33.8`.
    Registry(String),
}

/// How the fetched file becomes layout files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packaging {
    /// The file is one layout file, stored under [`ArtifactRef::layout_files`]`[0]`
    /// (renamed when needed, e.g. `runc.amd64` → `runc`).
    Plain,
    /// A gzip tarball: each listed member (path inside the archive; a leading `./` in the
    /// archive is ignored) is extracted to its layout name.
    TarGz(Vec<TarMember>),
    /// An image archive (`docker save`/OCI tar), imported with `ctr -n k8s.io images import`.
    ImageArchive { image: String },
    /// Nothing to fetch on the operator's machine; containerd pulls the image.
    RegistryPull { image: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TarMember {
    pub member: String,
    pub layout_name: String,
}

/// One thing to fetch for one component version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactRef {
    pub component: Component,
    /// `vX.Y.Z`.
    pub version: String,
    pub arch: Arch,
    /// The fetched file's name: the release file (`etcd-v3.5.21-linux-amd64.tar.gz`) for
    /// upstream, the layout file (`etcd`) for a directory.
    pub file_name: String,
    pub location: Location,
    /// The expected sha256 (lower-case hex) of the fetched file. Always set for upstream
    /// files; `None` for directory files (the cli computes it locally and the node checks the
    /// pushed copy against that) and for registry pulls.
    pub sha256: Option<String>,
    pub packaging: Packaging,
}

impl ArtifactRef {
    /// The layout files this artifact provides under `<component>/<version>/`.
    pub fn layout_files(&self) -> Vec<String> {
        match &self.packaging {
            Packaging::Plain => vec![layout::plain_layout_name(self.component, &self.file_name)],
            Packaging::TarGz(members) => members.iter().map(|m| m.layout_name.clone()).collect(),
            Packaging::ImageArchive { .. } => vec![self.file_name.clone()],
            Packaging::RegistryPull { .. } => Vec::new(),
        }
    }
}

/// One component version that cannot be resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingArtifact {
    pub component: Component,
    pub version: String,
    pub arch: Arch,
    /// Versions the catalog has for this component and architecture.
    pub catalogued: Vec<String>,
}

impl fmt::Display for MissingArtifact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (linux/{}) is not in the built-in catalog (no known sha256)",
            self.component, self.version, self.arch
        )?;
        if self.catalogued.is_empty() {
            write!(f, "; the catalog has no {} for {}", self.component, self.arch)
        } else {
            write!(f, "; catalogued: {}", self.catalogued.join(", "))
        }
    }
}

/// Every component the cluster needs that the catalog lacks, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "artifacts.source: upstream cannot provide {}:\n{}\nPick a catalogued version in the spec, \
     or provide the files offline with `artifacts.source: dir:<path>` (layout \
     <dir>/<component>/<version>/<file>).",
    if .missing.len() == 1 { "1 component".to_string() } else { format!("{} components", .missing.len()) },
    .missing.iter().map(|m| format!("  - {m}")).collect::<Vec<_>>().join("\n")
)]
pub struct ResolveError {
    pub missing: Vec<MissingArtifact>,
}

/// The component versions a cluster runs, before any source is consulted.
pub fn wanted_versions(cluster: &Cluster) -> Vec<(Component, String)> {
    Component::ALL.iter().filter_map(|&c| Some((c, wanted_version(cluster, c)?))).collect()
}

/// The version of one component a cluster runs; `None` only for the pause and CoreDNS images of
/// a Kubernetes minor kubeforge does not support (validation rejects those).
pub fn wanted_version(cluster: &Cluster, c: Component) -> Option<String> {
    let k8s = cluster.kubernetes_version.to_string();
    let release = crate::versions::release(cluster.kubernetes_version);
    Some({
        match c {
            Component::Etcd => cluster.etcd.version.clone(),
            Component::Containerd => catalog::DEFAULT_CONTAINERD.to_string(),
            Component::Runc => catalog::DEFAULT_RUNC.to_string(),
            Component::CniPlugins => catalog::DEFAULT_CNI_PLUGINS.to_string(),
            Component::Crictl => catalog::crictl_version(cluster.kubernetes_version.minor),
            Component::Pause => release?.pause.to_string(),
            Component::CoreDns => release?.coredns.to_string(),
            Component::Flannel | Component::FlannelCniPlugin => pinned_tag(c)?,
            Component::Kubelet
            | Component::Kubectl
            | Component::KubeApiserver
            | Component::KubeControllerManager
            | Component::KubeScheduler
            | Component::KubeProxy => k8s,
        }
    })
}

/// The tag of an add-on image kubeforge pins (not tied to the Kubernetes release).
fn pinned_tag(c: Component) -> Option<String> {
    let (_, image) =
        crate::render::configs::addons::PINNED_IMAGES.iter().find(|(n, _)| *n == c.name())?;
    image.rsplit_once(':').map(|(_, tag)| tag.to_string())
}

/// Resolves every artifact the cluster needs for nodes of one architecture, in install order.
/// Upstream: catalog URLs and sha256s (an unknown version is an error naming it). `dir:`: the
/// layout paths under the directory, without checking they exist (pure; see
/// [`layout::missing_files`] for the check against a listing).
pub fn resolve(cluster: &Cluster, arch: Arch) -> Result<Vec<ArtifactRef>, ResolveError> {
    let wanted = wanted_versions(cluster);
    match &cluster.artifacts {
        ArtifactSource::Dir(dir) => {
            Ok(wanted.iter().flat_map(|(c, v)| layout::dir_refs(dir, *c, v, arch)).collect())
        }
        ArtifactSource::Upstream => {
            let mut refs = Vec::new();
            let mut missing = Vec::new();
            for (component, version) in wanted {
                match upstream_ref(catalog::ENTRIES, component, &version, arch) {
                    Some(r) => refs.push(r),
                    None => missing.push(MissingArtifact {
                        component,
                        catalogued: catalog::versions(component, arch)
                            .into_iter()
                            .map(str::to_string)
                            .collect(),
                        version,
                        arch,
                    }),
                }
            }
            if missing.is_empty() { Ok(refs) } else { Err(ResolveError { missing }) }
        }
    }
}

/// The upstream artifact for one component version, if `entries` (the built-in
/// [`catalog::ENTRIES`], or a test's own) knows it.
pub fn upstream_ref(
    entries: &[catalog::CatalogEntry],
    component: Component,
    version: &str,
    arch: Arch,
) -> Option<ArtifactRef> {
    if component.is_image() {
        let image = layout::image_reference(component, version);
        return Some(ArtifactRef {
            component,
            version: version.to_string(),
            arch,
            file_name: layout::image_archive_name(component),
            location: Location::Registry(image.clone()),
            sha256: None,
            packaging: Packaging::RegistryPull { image },
        });
    }
    let entry = catalog::find_in(entries, component, version, arch)?;
    let (file_name, url, packaging) = upstream_file(component, version, arch)?;
    Some(ArtifactRef {
        component,
        version: version.to_string(),
        arch,
        file_name,
        location: Location::Url(url),
        sha256: Some(entry.sha256.to_string()),
        packaging,
    })
}

fn members(prefix: &str, names: &[&str]) -> Packaging {
    Packaging::TarGz(
        names
            .iter()
            .map(|n| TarMember { member: format!("{prefix}{n}"), layout_name: n.to_string() })
            .collect(),
    )
}

/// Release file name, URL and packaging for a binary component; `None` for images.
fn upstream_file(
    component: Component,
    version: &str,
    arch: Arch,
) -> Option<(String, String, Packaging)> {
    let bare = version.trim_start_matches('v');
    let files = layout::files(component, version);
    Some(match component {
        Component::Etcd => {
            let dir = format!("etcd-{version}-linux-{arch}");
            let file = format!("{dir}.tar.gz");
            let url = format!("https://github.com/etcd-io/etcd/releases/download/{version}/{file}");
            (file, url, members(&format!("{dir}/"), files))
        }
        Component::Kubelet | Component::Kubectl => {
            let name = component.name().to_string();
            let url = format!("https://dl.k8s.io/release/{version}/bin/linux/{arch}/{name}");
            (name, url, Packaging::Plain)
        }
        Component::Crictl => {
            let file = format!("crictl-{version}-linux-{arch}.tar.gz");
            let url = format!(
                "https://github.com/kubernetes-sigs/cri-tools/releases/download/{version}/{file}"
            );
            (file, url, members("", files))
        }
        Component::Containerd => {
            let file = format!("containerd-static-{bare}-linux-{arch}.tar.gz");
            let url = format!(
                "https://github.com/containerd/containerd/releases/download/{version}/{file}"
            );
            (file, url, members("bin/", files))
        }
        Component::Runc => {
            let file = format!("runc.{arch}");
            let url = format!(
                "https://github.com/opencontainers/runc/releases/download/{version}/{file}"
            );
            (file, url, Packaging::Plain)
        }
        Component::CniPlugins => {
            let file = format!("cni-plugins-linux-{arch}-{version}.tgz");
            let url = format!(
                "https://github.com/containernetworking/plugins/releases/download/{version}/{file}"
            );
            (file, url, members("", files))
        }
        Component::KubeApiserver
        | Component::KubeControllerManager
        | Component::KubeScheduler
        | Component::KubeProxy
        | Component::Pause
        | Component::CoreDns
        | Component::Flannel
        | Component::FlannelCniPlugin => return None,
    })
}

/// Joins a spec-relative layout directory to the spec file's folder (absolute paths are kept).
pub fn dir_relative_to(spec_dir: &Path, dir: &Path) -> PathBuf {
    if dir.is_absolute() { dir.to_path_buf() } else { spec_dir.join(dir) }
}

#[cfg(test)]
mod tests;
