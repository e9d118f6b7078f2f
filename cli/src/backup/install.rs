//! The kubeforge binary that scheduled backups run on nodes: this very executable
//! (`std::env::current_exe`), or `KUBEFORGE_NODE_BINARY` when the operator runs another
//! platform, hashed and added to the artifact inventory under
//! [`kubeforge_playbooks::plan::backup::ARTIFACT`], so the planner pushes it like any other
//! binary (and the executor checks its sha256 on every node). Only when the spec schedules
//! backups and the etcd phase is selected.

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::backup::{ARTIFACT, needs_binary};
use kubeforge_playbooks::plan::{ArtifactInventory, LocalArtifact, Phase, PhaseSelection};
use miette::miette;

/// Overrides the kubeforge binary pushed to nodes (a Linux build for the nodes' architecture).
pub const NODE_BINARY_ENV: &str = "KUBEFORGE_NODE_BINARY";

pub fn add_self(
    cluster: &Cluster,
    selection: &PhaseSelection,
    inventory: &mut ArtifactInventory,
) -> miette::Result<()> {
    if !selection.contains(Phase::Etcd) || !needs_binary(cluster) {
        return Ok(());
    }
    let path = match std::env::var_os(NODE_BINARY_ENV).filter(|v| !v.is_empty()) {
        Some(p) => std::path::PathBuf::from(p),
        None => std::env::current_exe().map_err(|e| {
            miette!(
                help = format!("set {NODE_BINARY_ENV} to the kubeforge binary for the nodes"),
                "cannot find the kubeforge executable to install for scheduled backups: {e}"
            )
        })?,
    };
    let sha256 = file_sha256(&path).map_err(|e| {
        miette!(
            help = format!("set {NODE_BINARY_ENV} to a readable kubeforge binary for the nodes"),
            "cannot read {} to install it for scheduled backups: {e}",
            path.display()
        )
    })?;
    inventory.insert(
        ARTIFACT.to_string(),
        LocalArtifact { path: path.display().to_string(), sha256, unverified: false },
    );
    Ok(())
}

fn file_sha256(path: &std::path::Path) -> std::io::Result<String> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(super::hex(&hasher.finalize()))
}
