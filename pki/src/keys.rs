//! Private keys: generation through aws-lc-rs (via rcgen), kubeadm's on-disk formats (SEC1
//! `EC PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY`) and loading any of SEC1, PKCS#1 or PKCS#8.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_ASN1_SIGNING, ECDSA_P384_SHA384_ASN1_SIGNING, EcdsaKeyPair,
};
use rcgen::{
    KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_RSA_SHA256, PublicKeyData,
    RsaKeySize,
};

use crate::KeyAlgorithm;
use crate::der::{pem_encode, pkcs8_inner_key};
use crate::error::{PkiError, crypto};

/// Generates a key of `alg`; `what` names the key in errors.
pub(crate) fn generate(alg: KeyAlgorithm, what: &str) -> Result<KeyPair, PkiError> {
    let result = match alg {
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Rsa2048 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyAlgorithm::Rsa3072 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyAlgorithm::Rsa4096 => KeyPair::generate_rsa_for(&PKCS_RSA_SHA256, RsaKeySize::_4096),
    };
    result.map_err(|e| crypto(what, e))
}

/// `count` keys of `alg`, generated on all cores (RSA generation is slow), in a stable order.
pub(crate) fn generate_many(alg: KeyAlgorithm, count: usize) -> Result<Vec<KeyPair>, PkiError> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, count);
    let per_worker = count.div_ceil(workers);
    let batches: Vec<Result<Vec<KeyPair>, PkiError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let n = per_worker.min(count.saturating_sub(w * per_worker));
                scope.spawn(move || (0..n).map(|_| generate(alg, "leaf key")).collect())
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(crypto("leaf key", "key generation thread panicked")))
            })
            .collect()
    });
    let mut keys = Vec::with_capacity(count);
    for batch in batches {
        keys.extend(batch?);
    }
    Ok(keys)
}

/// The key as kubeadm writes it: SEC1 for EC, PKCS#1 for RSA.
pub(crate) fn to_pem(key: &KeyPair, what: &str) -> Result<String, PkiError> {
    let pkcs8 = key.serialized_der();
    if key.algorithm() == &PKCS_ECDSA_P256_SHA256 || key.algorithm() == &PKCS_ECDSA_P384_SHA384 {
        let signing = if key.algorithm() == &PKCS_ECDSA_P256_SHA256 {
            &ECDSA_P256_SHA256_ASN1_SIGNING
        } else {
            &ECDSA_P384_SHA384_ASN1_SIGNING
        };
        let pair = EcdsaKeyPair::from_pkcs8(signing, pkcs8).map_err(|e| crypto(what, e))?;
        let sec1 = pair.private_key().as_der().map_err(|e| crypto(what, e))?;
        Ok(pem_encode("EC PRIVATE KEY", sec1.as_ref()))
    } else if key.algorithm() == &PKCS_RSA_SHA256 {
        let pkcs1 = pkcs8_inner_key(pkcs8)
            .ok_or_else(|| crypto(what, "RSA key is not a PKCS#8 structure"))?;
        Ok(pem_encode("RSA PRIVATE KEY", pkcs1))
    } else {
        Ok(key.serialize_pem())
    }
}

/// Loads a PEM private key (SEC1, PKCS#1 or PKCS#8).
pub(crate) fn load(pem: &[u8], path: &str) -> Result<KeyPair, PkiError> {
    let text = std::str::from_utf8(pem)
        .map_err(|_| PkiError::Unreadable { path: path.into(), problem: "not PEM text".into() })?;
    KeyPair::from_pem(text).map_err(|e| PkiError::Unreadable {
        path: path.into(),
        problem: format!("not a usable private key ({e})"),
    })
}

/// The public half as a PKIX `PUBLIC KEY` PEM block (kubeadm's `sa.pub`).
pub(crate) fn public_pem(key: &KeyPair) -> String {
    pem_encode("PUBLIC KEY", &key.subject_public_key_info())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_in_kubeadm_formats() {
        for alg in [KeyAlgorithm::EcdsaP256, KeyAlgorithm::EcdsaP384, KeyAlgorithm::Rsa2048] {
            let key = generate(alg, "test").unwrap();
            let pem = to_pem(&key, "test").unwrap();
            let label = if alg == KeyAlgorithm::Rsa2048 { "RSA" } else { "EC" };
            assert!(pem.starts_with(&format!("-----BEGIN {label} PRIVATE KEY-----\n")), "{pem}");
            let back = load(pem.as_bytes(), "k").unwrap();
            assert_eq!(back.subject_public_key_info(), key.subject_public_key_info());
        }
        assert!(load(b"garbage", "x.key").is_err());
    }
}
