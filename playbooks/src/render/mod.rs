//! The render tree: for every host, every file kubeforge puts on it, with its bytes, node mode
//! and whether it holds a secret. `kubeforge render` writes this tree to disk; the planner diffs
//! it against the hosts. Each submodule contributes one family of files; this module only
//! assembles them and never decides content itself.

use std::collections::BTreeMap;

/// One file as it must exist on a node (owner root:root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFile {
    pub contents: Vec<u8>,
    /// Unix permission bits, e.g. `0o600`.
    pub mode: u32,
    /// Holds key material, tokens or credentials: never printed, diffs redacted.
    pub secret: bool,
}

/// Absolute node path (e.g. `/etc/kubernetes/pki/ca.crt`) → file.
pub type HostFiles = BTreeMap<String, NodeFile>;

/// Host name → the files that host receives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderTree {
    pub hosts: BTreeMap<String, HostFiles>,
}

impl RenderTree {
    /// Adds a file to a host, refusing to silently replace one another family already wrote.
    pub fn insert(&mut self, host: &str, path: &str, file: NodeFile) -> Result<(), DuplicateFile> {
        let files = self.hosts.entry(host.to_string()).or_default();
        if files.contains_key(path) {
            return Err(DuplicateFile { host: host.to_string(), path: path.to_string() });
        }
        files.insert(path.to_string(), file);
        Ok(())
    }
}

/// Two renderers produced the same node path: a bug in kubeforge, not in the spec.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("internal error: two renderers produced {path} for host {host}")]
pub struct DuplicateFile {
    pub host: String,
    pub path: String,
}

pub mod configs;
pub mod pki;
pub mod served;

use crate::model::Cluster;
use crate::secrets::ClusterSecrets;

/// Everything rendering reads: the validated spec, the state dir's PKI and generated secrets.
#[derive(Debug, Clone, Copy)]
pub struct RenderInput<'a> {
    pub cluster: &'a Cluster,
    pub pki: &'a kubeforge_pki::Store,
    pub secrets: &'a ClusterSecrets,
}

/// Why the render tree could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Duplicate(#[from] DuplicateFile),
    #[error(transparent)]
    Pki(#[from] pki::PkiRenderError),
    #[error(transparent)]
    Configs(#[from] configs::ConfigRenderError),
}

/// Builds every host's files: PKI material first, then configs and manifests.
pub fn render(input: RenderInput<'_>) -> Result<RenderTree, RenderError> {
    let mut tree = RenderTree::default();
    pki::add_files(input, &mut tree)?;
    configs::add_files(input, &mut tree)?;
    Ok(tree)
}
