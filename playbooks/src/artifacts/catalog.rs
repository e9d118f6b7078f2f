//! The built-in catalog: for each supported component version and architecture, the upstream
//! release file and its sha256. Pure data, read by [`super::resolve`].
//!
//! Provenance: every sha256 below was copied from kubespray's
//! `roles/kubespray_defaults/vars/main/checksums.yml` (kubernetes-sigs/kubespray, commits
//! `005bdce7f1867958838a2d0bb4f7e67893d98f64` and `118b2dce02d3e5730461c8ba8c91cd9dd5dc0b10`;
//! the etcd values agree in both). They are the sha256 of the exact file the URL names (kubespray
//! verifies the same URLs). A version without a published checksum is not listed, on purpose:
//! that is why etcd v3.6.x and Kubernetes v1.31.x are missing (no public checksum source was
//! available when the catalog was written) and why the control-plane images carry no digest.
//! Add a version only with a checksum from such a source; never compute one from a download.

use super::{Arch, Component};

/// One downloadable release file for one architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogEntry {
    pub component: Component,
    /// `vX.Y.Z`, as in the layout directory name.
    pub version: &'static str,
    pub arch: Arch,
    /// Lower-case hex sha256 of the file at [`CatalogEntry::url`].
    pub sha256: &'static str,
}

use Arch::{Amd64, Arm64};
use Component::*;

macro_rules! entries {
    ($($component:ident $version:literal $arch:ident $sha:literal;)*) => {
        &[$(CatalogEntry { component: $component, version: $version, arch: $arch, sha256: $sha },)*]
    };
}

/// Every catalogued file, grouped by component, newest version last.
pub const ENTRIES: &[CatalogEntry] = entries! {
    Etcd "v3.5.15" Amd64 "3f6b48d8c2844699f2b19c1880508ecf63e1489769ed37ebb97495d5cd848a89";
    Etcd "v3.5.15" Arm64 "5aa28b435edb1f22bf6455f754e16a13e3e4eb1ad8fc7c22ad47aa8e722febf2";
    Etcd "v3.5.16" Amd64 "b414b27a5ad05f7cb01395c447c85d3227e3fb1c176e51757a283b817f645ccc";
    Etcd "v3.5.16" Arm64 "8e68c55e6d72b791a9e98591c755af36f6f55aa9eca63767822cd8a3817fdb23";
    Etcd "v3.5.21" Amd64 "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c";
    Etcd "v3.5.21" Arm64 "95bf6918623a097c0385b96f139d90248614485e781ec9bee4768dbb6c79c53f";

    Kubelet "v1.32.10" Amd64 "bfff8f244992162c0491f8f42d807165ed5c685aecfb3e8000412535ad18a873";
    Kubelet "v1.32.10" Arm64 "21cc3d98550d3a23052d649e77956f2557e7f6119ff1e27dc82b852d006136cd";
    Kubelet "v1.33.8" Amd64 "1caa69c5328cfa774218f75f0621a6f10a1b97e095af85015f468aeb8fdf956a";
    Kubelet "v1.33.8" Arm64 "e835f15be6d8b7b27b963a46c4a054f7663c26741f17e003bfcb8271350cf882";
    Kubelet "v1.34.4" Amd64 "03b8fea715a7ef82eeaf518dee34c72670c57cc7bc40dc1320c04fbf4f15172f";
    Kubelet "v1.34.4" Arm64 "c78845473c434ee85a2444eeab87f8b20f524e3ab6854a078f79468f44aad8f5";

    Kubectl "v1.32.10" Amd64 "6e14ef4e509e9f3d1dfc2815643f832f853d2d9f6622d4a0f83f77c7e4014b57";
    Kubectl "v1.32.10" Arm64 "1f4229526e16bf9f5b854fbf3bdb9c7040404a29c1d1e4193258b8a73de06e92";
    Kubectl "v1.33.8" Amd64 "7f9c3faab7c9f9cc3f318d49eb88efc60eb3b3a7ce9eee5feb39b1280e108a29";
    Kubectl "v1.33.8" Arm64 "76e284669f1f6343bd9fe2a011757809c8c01cf51da9f85ee6ef4eb93c8393a8";
    Kubectl "v1.34.4" Amd64 "d50c359d95e0841eaad08ddc27c7be37cba8fdccfba5c8e2ded65e121ff112db";
    Kubectl "v1.34.4" Arm64 "5b982c0644ab1e27780246b9085a5886651b4a7ed86243acbb2bacc1bea01dda";

    Crictl "v1.32.0" Amd64 "f050b71d3a73a91a4e0990b90143ed04dcd100cc66f953736fcb6a2730e283c4";
    Crictl "v1.32.0" Arm64 "f2f4e20658b72d00897f41e4b57093c8080e2d800ee894a5f4351f31d1833e30";
    Crictl "v1.33.0" Amd64 "8307399e714626e69d1213a4cd18c8dec3d0201ecdac009b1802115df8973f0f";
    Crictl "v1.33.0" Arm64 "e1f34918d77d5b4be85d48f5d713ca617698a371b049ea1486000a5e86ab1ff3";
    Crictl "v1.34.0" Amd64 "a8ff2a3edb37a98daf3aba7c3b284fe0aa5bff24166d896ab9ef64c8913c9f51";
    Crictl "v1.34.0" Arm64 "c31d252e203df5f4cf37f314bd3092eb79087e791631c1e607087c74b6d0423f";

    Containerd "v1.7.30" Amd64 "290eea517a7aa919aa319563f8270d284ab5197736362285da09b198b76a34b5";
    Containerd "v1.7.30" Arm64 "1458b3c4a20eb1305bb1d4680c660d0726fa7709acdd95ec7c0fd6bdd632c36a";
    Containerd "v2.1.6" Amd64 "577900a5a8684c27e344aeeb1fc64e355745f58cba7f83c53649235ba25abbbf";
    Containerd "v2.1.6" Arm64 "9da292010d36d80afa3bb48cbd15f65d3bf38177217060272a1c3fd65351cfa4";

    Runc "v1.3.4" Amd64 "5966ca40b6187b30e33bfc299c5f1fe72e8c1aa01cf3fefdadf391668f47f103";
    Runc "v1.3.4" Arm64 "d6dcab36d1b6af1b72c7f0662e5fcf446a291271ba6006532b95c4144e19d428";

    CniPlugins "v1.8.0" Amd64 "ab3bda535f9d90766cccc90d3dddb5482003dd744d7f22bcf98186bf8eea8be6";
    CniPlugins "v1.8.0" Arm64 "57ce466fc3b79db1f19b8f4c63e07a1112306efa53c94fe810a2150dd9e07ddb";
};

/// The versions kubeforge installs for the node components that do not follow the Kubernetes
/// version. containerd 2.1 with runc 1.3 is the pairing containerd 2.1 was released against.
pub const DEFAULT_CONTAINERD: &str = "v2.1.6";
pub const DEFAULT_RUNC: &str = "v1.3.4";
pub const DEFAULT_CNI_PLUGINS: &str = "v1.8.0";

/// crictl follows the Kubernetes minor: crictl `v1.<minor>.0` (cri-tools' own versioning).
pub fn crictl_version(kubernetes_minor: u32) -> String {
    format!("v1.{kubernetes_minor}.0")
}

/// The catalog entry for one component version and architecture.
pub fn find(component: Component, version: &str, arch: Arch) -> Option<&'static CatalogEntry> {
    find_in(ENTRIES, component, version, arch)
}

/// [`find`] in another list of entries (a test catalog serving fake files).
pub fn find_in<'a>(
    entries: &'a [CatalogEntry],
    component: Component,
    version: &str,
    arch: Arch,
) -> Option<&'a CatalogEntry> {
    entries.iter().find(|e| e.component == component && e.version == version && e.arch == arch)
}

/// Catalogued versions of a component for an architecture, in catalog order.
pub fn versions(component: Component, arch: Arch) -> Vec<&'static str> {
    ENTRIES
        .iter()
        .filter(|e| e.component == component && e.arch == arch)
        .map(|e| e.version)
        .collect()
}
