//! PKI files for each host: certificates, keys and kubeconfigs at their kubeadm node paths, and
//! only what that host needs. Not built yet.

use super::{RenderInput, RenderTree};

#[derive(Debug, thiserror::Error)]
#[error("PKI material missing from the state dir: {0}")]
pub struct PkiRenderError(pub String);

pub fn add_files(_input: RenderInput<'_>, _tree: &mut RenderTree) -> Result<(), PkiRenderError> {
    Ok(())
}
