//! kubeforge-pki owns the cluster's identity: CAs, leaf certificates, the service-account key
//! pair and kubeconfigs, with kubeadm's names, subjects, SANs and usages. It computes only: it
//! takes and returns bytes and never touches the file system, the network or the clock (the
//! caller injects "now" and the serial-number randomness; key bytes come from aws-lc-rs).
//!
//! Entry points: [`generate`] (create what is missing, reuse what is valid, reissue what the
//! spec no longer matches), [`renew`] (new keys and serials for leaves, never CAs),
//! [`check_expiration`], [`plan_ca_rotation`] and [`rotation_stage`] (one stage of a CA
//! rotation, executed). Each takes the state dir's `pki/` folder as a
//! [`Store`] and returns a new one plus a [`Report`] saying what changed and why.

use std::fmt;

mod cas;
mod der;
mod error;
mod expiry;
mod generate;
mod inspect;
mod issue;
mod keys;
pub mod kubeconfig;
pub mod paths;
mod profile;
mod renew;
mod report;
mod request;
mod rotation;
mod serial;
mod stages;
mod targets;

pub use der::{pem_blocks, pem_encode};
pub use error::PkiError;
pub use expiry::{ExpiryEntry, ExpiryStatus, WARN_BEFORE, check_expiration};
pub use generate::{Outcome, generate};
pub use inspect::{CertFacts, ExtKeyUsage, inspect_pem};
pub use profile::{CaId, RENEWABLE_NAMES};
pub use renew::{RenewSelection, renew};
pub use report::{Action, Reason, Report, ReportEntry};
pub use request::{ApiServerNames, ControlPlane, EtcdMember, Node, PkiRequest};
pub use rotation::{RotationPhase, RotationPlan, TrustBundle, plan_ca_rotation};
pub use serial::{SeededSerials, SerialSource};
pub use stages::{
    RotationStage, StageOutcome, next_ca_base, prev_ca_base, rotation_stage, stage_of,
};
pub use targets::{Rotated, SA_NEXT_KEY, SA_PREV_KEY, rotate_stage, stage_of_rotated};

/// The key type of every key kubeforge generates (`spec.pki.keyAlgorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum KeyAlgorithm {
    #[default]
    EcdsaP256,
    EcdsaP384,
    Rsa2048,
    Rsa3072,
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 5] = [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
        KeyAlgorithm::Rsa4096,
    ];
    /// The spec spelling, e.g. `ecdsa-p256`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::EcdsaP384 => "ecdsa-p384",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state dir's `pki/` folder in memory: relative path with kubeadm names and `/`
/// separators (`ca.crt`, `etcd/ca.key`, `nodes/cp1/apiserver.crt`) → file bytes.
pub type Store = std::collections::BTreeMap<String, Vec<u8>>;
