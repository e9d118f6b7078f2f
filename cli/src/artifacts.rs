//! The artifact inventory for a run: which binaries the operator's machine can push, resolved
//! from the spec's artifact source (`dir:<path>` now; `upstream` downloads into a local cache)
//! and hashed locally. The planner only sees the resulting `ArtifactInventory`.

use std::path::Path;

use kubeforge_playbooks::artifacts::{self, Component};
use kubeforge_playbooks::model::{ArtifactSource, Cluster};
use kubeforge_playbooks::plan::{
    ARTIFACT_BINARIES, ArtifactInventory, LocalArtifact, PhaseSelection,
};
use miette::{IntoDiagnostic as _, WrapErr as _};

/// The binaries available for the selected phases.
pub fn inventory(
    cluster: &Cluster,
    spec_dir: &Path,
    selection: &PhaseSelection,
) -> miette::Result<ArtifactInventory> {
    let _ = selection;
    local_artifacts(cluster, spec_dir)
}

/// The runtime binaries found in an artifact directory (`dir:` source), hashed locally.
fn local_artifacts(cluster: &Cluster, spec_dir: &Path) -> miette::Result<ArtifactInventory> {
    let mut inventory = ArtifactInventory::new();
    let ArtifactSource::Dir(dir) = &cluster.artifacts else {
        return Ok(inventory);
    };
    let root = artifacts::dir_relative_to(spec_dir, dir);
    for name in ARTIFACT_BINARIES {
        let (component, version) = match name {
            "runc" => (Component::Runc, artifacts::catalog::DEFAULT_RUNC),
            _ => (Component::Containerd, artifacts::catalog::DEFAULT_CONTAINERD),
        };
        let path = root.join(artifacts::layout::relative_path(component, version, name));
        if path.is_file() {
            let sha256 = crate::transport::FileContents::LocalFile(path.clone())
                .sha256()
                .into_diagnostic()
                .wrap_err_with(|| format!("cannot read artifact {}", path.display()))?;
            inventory.insert(
                name.to_string(),
                LocalArtifact { path: path.display().to_string(), sha256 },
            );
        }
    }
    Ok(inventory)
}
