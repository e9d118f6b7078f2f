//! Configs and manifests for each host, rendered from `kubeforge-templates`. Not built yet.

use super::{RenderInput, RenderTree};

#[derive(Debug, thiserror::Error)]
#[error("could not render {0}")]
pub struct ConfigRenderError(pub String);

pub fn add_files(_input: RenderInput<'_>, _tree: &mut RenderTree) -> Result<(), ConfigRenderError> {
    Ok(())
}
