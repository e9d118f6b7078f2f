//! The PKI crate's errors. Each names the store path or certificate it is about and says what to
//! do next; none carries key material.

/// Why the PKI could not be generated, renewed or inspected.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "{ca}.crt is present without {ca}.key, so kubeforge cannot sign with it; these \
         certificates are missing or no longer match the spec and must be provided, signed by \
         {ca}: {}. Place them in the state dir's pki/ folder, or add {ca}.key",
        leaves.join(", ")
    )]
    CaKeyMissing { ca: String, leaves: Vec<String> },
    #[error("{path}: {problem}; fix or remove it (kubeforge never replaces a CA on its own)")]
    BadCa { path: String, problem: String },
    #[error("{path} exists without {missing}; restore {missing} or remove {path}")]
    HalfPair { path: String, missing: String },
    #[error("{path} could not be read: {problem}")]
    Unreadable { path: String, problem: String },
    #[error("{path} is missing; run `kubeforge certs generate` first")]
    NotGenerated { path: String },
    #[error("unknown certificate name {name:?}; known names: {}", known.join(", "))]
    UnknownName { name: String, known: Vec<String> },
    #[error("{what} cannot be renewed: {ca}.key is not in the state dir (externally managed CA)")]
    ExternallyManaged { what: String, ca: String },
    #[error("{what}: invalid request: {problem}")]
    BadRequest { what: String, problem: String },
    #[error("could not create {what}: {problem}")]
    Crypto { what: String, problem: String },
}

pub(crate) fn crypto(what: impl Into<String>, e: impl std::fmt::Display) -> PkiError {
    PkiError::Crypto { what: what.into(), problem: e.to_string() }
}
