//! What each phase needs from the artifact source, on which hosts, and under which name the cli
//! hands each file to the planner. Pure: the cli resolves these needs into an
//! `ArtifactInventory` (name → local file and sha256), preflight names what is missing, and the
//! phases push what they find.
//!
//! # Inventory keys (stable: the phases read them from `PlanInput::artifacts`)
//!
//! | key | file | component | phase | hosts |
//! |---|---|---|---|---|
//! | `containerd`, `containerd-shim-runc-v2`, `ctr` | `/usr/local/bin/<key>` | containerd | runtime | all (unless installed) |
//! | `runc` | `/usr/local/bin/runc` | runc | runtime | all (unless installed) |
//! | `etcd`, `etcdctl`, `etcdutl` (etcd ≥ 3.5) | `/usr/local/bin/<key>` | etcd | etcd | etcd members |
//! | `kubelet`, `crictl` | `/usr/local/bin/<key>` | kubelet, crictl | control-plane, workers | control planes, workers |
//! | `kubectl` | `/usr/local/bin/kubectl` | kubectl | control-plane | control planes |
//! | `cni:bridge`, `cni:host-local`, `cni:loopback`, `cni:portmap` | `/opt/cni/bin/<name>` | cni-plugins | control-plane, workers | control planes, workers |
//! | `image:kube-apiserver`, `image:kube-controller-manager`, `image:kube-scheduler` | image archive | static pods | control-plane | control planes |
//! | `image:pause` | image archive | sandbox image | control-plane, workers | control planes, workers |
//! | `image:kube-proxy`, `image:coredns`, `image:flannel`, `image:flannel-cni-plugin` | image archive | add-ons | addons | every kubelet host |
//!
//! Binaries are keyed by their file name, CNI plugins by `cni:<plugin>`, image archives by
//! `image:<component>`; [`layout::node_path`] says where a binary goes and
//! [`layout::image_reference`] names the image an archive holds (import it with
//! `ctr -n k8s.io images import`). Image keys exist only for `dir:` sources: with `upstream`,
//! containerd pulls the images from the registry by tag, so no `image:` key is ever present.

use std::fmt::Write as _;

use super::{Arch, Component, HostScope, Location, catalog, layout, upstream_ref, wanted_version};
use crate::model::{ArtifactSource, Cluster, Host};
use crate::plan::{Phase, PhaseSelection};

/// One file a phase needs from the artifact source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// The `ArtifactInventory` key (see the module documentation).
    pub key: String,
    pub component: Component,
    /// `vX.Y.Z` (the pause image: its bare tag, e.g. `3.10`).
    pub version: String,
    /// The layout file name under `<component>/<version>/`.
    pub file: &'static str,
    pub phase: Phase,
    pub hosts: HostScope,
    /// A binary already installed on the host satisfies the need (the runtime's binaries may
    /// come from the distribution's packages).
    pub host_may_provide: bool,
}

impl Need {
    /// `<component>/<version>/<file>`, relative to the layout root.
    pub fn relative_path(&self) -> std::path::PathBuf {
        layout::relative_path(self.component, &self.version, self.file)
    }
}

/// The inventory key of a layout file.
pub fn key(component: Component, file: &str) -> String {
    if component.is_image() {
        format!("image:{}", component.name())
    } else if component == Component::CniPlugins {
        format!("cni:{file}")
    } else {
        file.to_string()
    }
}

/// The components a phase installs, on which hosts, and whether installed binaries count.
fn phase_components(phase: Phase) -> (&'static [Component], HostScope, bool) {
    use Component::*;
    match phase {
        Phase::Runtime => (&[Containerd, Runc], HostScope::AllHosts, true),
        Phase::Etcd => (&[Etcd], HostScope::EtcdMembers, false),
        Phase::ControlPlane => (
            &[
                Kubelet,
                Kubectl,
                Crictl,
                CniPlugins,
                Pause,
                KubeApiserver,
                KubeControllerManager,
                KubeScheduler,
            ],
            HostScope::ControlPlanes,
            false,
        ),
        Phase::Workers => (&[Kubelet, Crictl, CniPlugins, Pause], HostScope::Workers, false),
        Phase::Addons => {
            (&[KubeProxy, CoreDns, Flannel, FlannelCniPlugin], HostScope::KubeletHosts, false)
        }
        Phase::Preflight | Phase::Os | Phase::Pki | Phase::LoadBalancer => {
            (&[], HostScope::AllHosts, false)
        }
    }
}

/// Every file `phase` needs from the cluster's artifact source, in install order.
pub fn needs(cluster: &Cluster, phase: Phase) -> Vec<Need> {
    let (components, hosts, host_may_provide) = phase_components(phase);
    let upstream = matches!(cluster.artifacts, ArtifactSource::Upstream);
    let mut out = Vec::new();
    for &component in components {
        if upstream && component.is_image() {
            continue; // pulled by containerd from the registry
        }
        let Some(version) = wanted_version(cluster, component) else { continue };
        for &file in layout::files(component, &version) {
            out.push(Need {
                key: key(component, file),
                component,
                version: version.clone(),
                file,
                phase,
                hosts,
                host_may_provide,
            });
        }
    }
    out
}

/// The needs of every selected phase, in phase order (a key may appear for several phases).
pub fn selected(cluster: &Cluster, selection: &PhaseSelection) -> Vec<Need> {
    selection.phases().iter().flat_map(|&p| needs(cluster, p)).collect()
}

/// Whether `host` is one of the hosts `scope` names.
pub fn in_scope(cluster: &Cluster, host: &Host, scope: HostScope) -> bool {
    match scope {
        HostScope::AllHosts => true,
        HostScope::EtcdMembers => cluster.etcd_members().any(|m| m.name == host.name),
        HostScope::KubeletHosts => host.runs_kubelet(),
        HostScope::ControlPlanes => host.is_control_plane(),
        HostScope::Workers => host.runs_kubelet() && !host.is_control_plane(),
    }
}

/// Why missing files of one component version are missing, and how to provide them: the
/// message and remedy preflight shows. `files` are layout file names of that component version;
/// `arch` is the host's, when known (upstream URLs depend on it).
pub fn describe_missing(
    cluster: &Cluster,
    component: Component,
    version: &str,
    files: &[&str],
    arch: Option<Arch>,
) -> (String, String) {
    let listed = files.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    let what = format!("{component} {version}");
    match &cluster.artifacts {
        ArtifactSource::Dir(dir) => {
            let paths: Vec<String> = files
                .iter()
                .map(|f| {
                    dir.join(layout::relative_path(component, version, f)).display().to_string()
                })
                .collect();
            let relative =
                if dir.is_relative() { " (relative to the spec file's folder)" } else { "" };
            let message = format!(
                "{what}: {listed} not found in the artifact directory; looked for {}{relative}",
                paths.join(", ")
            );
            let mut remedy = format!(
                "put the linux/{} file(s) at {} (layout <dir>/<component>/<version>/<file>",
                arch.map_or("<arch>", Arch::as_str),
                paths.join(", ")
            );
            if component.is_image() {
                let _ = write!(
                    remedy,
                    "; an image archive as written by `ctr -n k8s.io images export` or \
                     `docker save` for {}",
                    layout::image_reference(component, version)
                );
            }
            remedy.push(')');
            remedy.push_str(&version_hint(component));
            (message, remedy)
        }
        ArtifactSource::Upstream => {
            let offline = format!(
                "or provide it offline with `artifacts.source: dir:<dir>` and the file(s) at {}",
                files
                    .iter()
                    .map(|f| format!(
                        "<dir>/{}",
                        layout::relative_path(component, version, f).display()
                    ))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let arch_known = arch.unwrap_or(Arch::Amd64);
            match upstream_ref(catalog::ENTRIES, component, version, arch_known) {
                Some(r) => {
                    let from = match &r.location {
                        Location::Url(url) => url.clone(),
                        other => format!("{other:?}"),
                    };
                    (
                        format!(
                            "{what}: {listed} for linux/{arch_known} is not in the local \
                             download cache (upstream file {from})"
                        ),
                        format!(
                            "run again with network access to {from} (or name a mirror with \
                             spec.artifacts.mirror or KUBEFORGE_ARTIFACT_MIRROR), {offline}"
                        ),
                    )
                }
                None => {
                    let catalogued = catalog::versions(component, arch_known);
                    let known = if catalogued.is_empty() {
                        format!("the catalog has no {component} for linux/{arch_known}")
                    } else {
                        format!("catalogued: {}", catalogued.join(", "))
                    };
                    (
                        format!(
                            "{what} (linux/{arch_known}) is not in the built-in catalog, so \
                             `artifacts.source: upstream` cannot provide {listed} ({known})"
                        ),
                        format!("pick a catalogued version in the spec, {offline}"),
                    )
                }
            }
        }
    }
}

/// Where the version of a component comes from in the spec, for remedies.
fn version_hint(component: Component) -> String {
    match component {
        Component::Etcd => "; or set spec.etcd.version to a version the directory has".into(),
        Component::Containerd | Component::Runc => {
            "; or install it on the host from the distribution's packages".into()
        }
        Component::CniPlugins => "; the version is kubeforge's default CNI plugins release".into(),
        Component::Pause | Component::CoreDns => {
            "; the version is the one kubeadm pairs with spec.kubernetesVersion".into()
        }
        Component::Flannel | Component::FlannelCniPlugin => {
            "; the version is the one kubeforge's flannel manifest pins".into()
        }
        Component::Crictl => "; crictl follows the Kubernetes minor (v1.<minor>.0)".into(),
        Component::Kubelet
        | Component::Kubectl
        | Component::KubeApiserver
        | Component::KubeControllerManager
        | Component::KubeScheduler
        | Component::KubeProxy => {
            "; or set spec.kubernetesVersion to a version the directory has".into()
        }
    }
}

/// The architecture of a file in the `upstream` download cache, read from its place in the
/// cache layout `<cache>/<arch>/<component>/<version>/<file>` (the cli's `artifacts::upstream`
/// writes exactly that). `None` for any other path.
pub fn cached_arch(path: &str) -> Option<Arch> {
    let arch = std::path::Path::new(path).ancestors().nth(3)?.file_name()?.to_str()?;
    match arch {
        "amd64" => Some(Arch::Amd64),
        "arm64" => Some(Arch::Arm64),
        _ => None,
    }
}
