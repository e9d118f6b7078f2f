//! Loading the three CAs from the store and checking that they can sign: a CA certificate,
//! its key (optional: without it the CA is "externally managed" and kubeforge only verifies
//! leaves against it) and the bundle file clients trust.

use rcgen::{Issuer, KeyPair, PublicKeyData};
use time::OffsetDateTime;

use crate::Store;
use crate::der::pem_blocks;
use crate::error::PkiError;
use crate::inspect::{CertFacts, inspect_der};
use crate::keys;
use crate::paths::{crt, key};
use crate::profile::CaId;

/// One CA as found in the store.
pub(crate) struct LoadedCa {
    pub id: CaId,
    /// The first certificate of `<ca>.crt`: the one that signs.
    pub facts: CertFacts,
    /// The whole `<ca>.crt` file, distributed as the trust bundle.
    pub bundle: Vec<u8>,
    /// `None`: the key is not in the store (externally managed CA).
    pub issuer: Option<Issuer<'static, KeyPair>>,
}

impl LoadedCa {
    pub fn path(&self) -> String {
        crt(self.id.base())
    }
}

/// Loads `ca` from the store: `Ok(None)` when neither file exists.
pub(crate) fn load(
    store: &Store,
    ca: CaId,
    now: OffsetDateTime,
) -> Result<Option<LoadedCa>, PkiError> {
    let (crt_path, key_path) = (crt(ca.base()), key(ca.base()));
    let bad = |problem: String| PkiError::BadCa { path: crt_path.clone(), problem };
    let (cert_pem, key_pem) = match (store.get(&crt_path), store.get(&key_path)) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(PkiError::HalfPair { path: key_path.clone(), missing: crt_path.clone() });
        }
        (Some(c), k) => (c, k),
    };
    let blocks = pem_blocks(cert_pem).map_err(|e| bad(format!("not PEM ({e})")))?;
    let der = blocks
        .into_iter()
        .find(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| der)
        .ok_or_else(|| bad("holds no CERTIFICATE block".into()))?;
    let facts = inspect_der(&der).map_err(&bad)?;
    if !facts.is_ca {
        return Err(bad("is not a CA certificate (basicConstraints CA:TRUE is missing)".into()));
    }
    if !facts.may_sign_certs {
        return Err(bad("its key usage does not allow signing certificates (keyCertSign)".into()));
    }
    if facts.not_after <= now {
        return Err(bad(format!(
            "expired on {}; plan a CA rotation (`kubeforge certs rotate-ca --dry-run`)",
            crate::expiry::fmt_time(facts.not_after)
        )));
    }
    let issuer = match key_pem {
        None => None,
        Some(pem) => {
            let pair = keys::load(pem, &key_path)?;
            if pair.subject_public_key_info() != facts.spki_der {
                return Err(PkiError::BadCa {
                    path: key_path.clone(),
                    problem: format!("does not belong to {crt_path}"),
                });
            }
            let issuer = Issuer::from_ca_cert_der(&der.clone().into(), pair)
                .map_err(|e| bad(format!("cannot sign with it ({e})")))?;
            Some(issuer)
        }
    };
    Ok(Some(LoadedCa { id: ca, facts, bundle: cert_pem.clone(), issuer }))
}
