//! `artifacts.source: dir:<path>`: the needed files of the offline layout
//! (`<dir>/<component>/<version>/<file>`), each verified and hashed locally.
//!
//! Verification, per file: the catalog's sha256 when the catalog lists that very file (kubelet,
//! kubectl and runc of a catalogued version: the release publishes them unpacked; either
//! architecture is accepted, one directory serves one), else the directory's `SHA256SUMS` line
//! when there is one. A mismatch is an error naming the file and both hashes. A file neither
//! vouches for (etcd, containerd, crictl, the CNI plugins and image archives are published
//! only inside archives, so they need a `SHA256SUMS` line) would be pushed to the nodes as root
//! unchecked: it is refused, every such file named at once, unless the operator allows
//! unverified artifacts, in which case it is taken and marked `unverified` for the plan.
//! Absent files are left out for preflight to name.

use std::collections::BTreeMap;
use std::path::Path;

use kubeforge_playbooks::artifacts::catalog::CatalogEntry;
use kubeforge_playbooks::artifacts::needs::Need;
use kubeforge_playbooks::artifacts::{Arch, Packaging, layout, upstream_ref};
use kubeforge_playbooks::plan::{ArtifactInventory, LocalArtifact};

use super::error::ArtifactError;
use super::hash::file_sha256;

const SUMS_FILE: &str = "SHA256SUMS";

pub fn inventory(
    root: &Path,
    needed: &[Need],
    entries: &[CatalogEntry],
    allow_unverified: bool,
) -> Result<ArtifactInventory, ArtifactError> {
    let sums = read_sums(root)?;
    let mut inventory = ArtifactInventory::new();
    let mut unverified = Vec::new();
    for need in needed {
        if inventory.contains_key(&need.key) {
            continue;
        }
        let rel = need.relative_path();
        let path = root.join(&rel);
        if !path.is_file() {
            continue;
        }
        let found = file_sha256(&path)
            .map_err(|source| ArtifactError::Read { path: path.clone(), source })?;
        let rel_text = rel.to_string_lossy().into_owned();
        let vouched = expected_sha256(need, entries, &sums, &rel_text);
        let is_unverified = vouched.is_none();
        if is_unverified {
            unverified.push(rel_text.clone());
        }
        if let Some((expected, against)) = vouched
            && !expected.contains(&found)
        {
            return Err(ArtifactError::Checksum {
                file: path.display().to_string(),
                expected: expected.join(" or "),
                found,
                against,
                remedy: format!(
                    "replace {} with the genuine {} {} file (linux/amd64 or linux/arm64), or \
                     fix its line in {}",
                    path.display(),
                    need.component,
                    need.version,
                    root.join(SUMS_FILE).display()
                ),
            });
        }
        inventory.insert(
            need.key.clone(),
            LocalArtifact {
                path: path.display().to_string(),
                sha256: found,
                unverified: is_unverified,
            },
        );
    }
    if !unverified.is_empty() && !allow_unverified {
        return Err(ArtifactError::Unverified {
            dir: root.to_path_buf(),
            files: unverified,
            sums: root.join(SUMS_FILE),
        });
    }
    Ok(inventory)
}

/// The directory's `SHA256SUMS` (path relative to the directory → hex), empty without one.
fn read_sums(root: &Path) -> Result<BTreeMap<String, String>, ArtifactError> {
    let path = root.join(SUMS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => return Err(ArtifactError::Read { path, source }),
    };
    layout::parse_sha256sums(&text).map_err(|detail| ArtifactError::Sums { path, detail })
}

/// The accepted hashes for a file and where they come from; `None` when nothing vouches for it.
fn expected_sha256(
    need: &Need,
    entries: &[CatalogEntry],
    sums: &BTreeMap<String, String>,
    rel: &str,
) -> Option<(Vec<String>, &'static str)> {
    let catalogued: Vec<String> = [Arch::Amd64, Arch::Arm64]
        .into_iter()
        .filter_map(|arch| upstream_ref(entries, need.component, &need.version, arch))
        .filter(|r| r.packaging == Packaging::Plain)
        .filter_map(|r| r.sha256)
        .collect();
    if !catalogued.is_empty() {
        return Some((catalogued, "the built-in catalog"));
    }
    sums.get(rel).map(|hex| (vec![hex.clone()], "SHA256SUMS in the artifact directory"))
}
