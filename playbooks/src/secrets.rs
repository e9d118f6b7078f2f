//! Cluster secrets that are not PKI: generated once by the caller from its RNG, kept in the state
//! dir, and fed back into rendering. Not built yet.

/// Secret material rendered into node files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterSecrets {}
