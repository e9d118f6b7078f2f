//! Reading certificates back: the facts kubeforge compares against the spec (subject, SANs,
//! usages, validity, key type, issuer) and a signature check against a CA's public key.

use std::collections::BTreeSet;
use std::net::IpAddr;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

use crate::KeyAlgorithm;
use crate::der::pem_blocks;

/// Extended key usages kubeadm's profiles use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ExtKeyUsage {
    ServerAuth,
    ClientAuth,
}

impl ExtKeyUsage {
    pub fn as_str(self) -> &'static str {
        match self {
            ExtKeyUsage::ServerAuth => "ServerAuth",
            ExtKeyUsage::ClientAuth => "ClientAuth",
        }
    }
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertFacts {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub issuer_common_name: String,
    pub dns_names: BTreeSet<String>,
    pub ip_addresses: BTreeSet<IpAddr>,
    pub ext_key_usages: BTreeSet<ExtKeyUsage>,
    /// Any EKU other than server/client auth, as dotted OIDs.
    pub other_ext_key_usages: Vec<String>,
    pub is_ca: bool,
    /// keyUsage absent or including keyCertSign.
    pub may_sign_certs: bool,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// Lower-case hex, no separators.
    pub serial_hex: String,
    /// `None` for key types kubeforge does not generate.
    pub key_algorithm: Option<KeyAlgorithm>,
    pub spki_der: Vec<u8>,
    /// The DER of the certificate.
    pub der: Vec<u8>,
}

impl CertFacts {
    /// `O=a, CN=b`, in the order Go writes the fields.
    pub fn subject(&self) -> String {
        let mut parts: Vec<String> = self.organizations.iter().map(|o| format!("O={o}")).collect();
        parts.push(format!("CN={}", self.common_name));
        parts.join(", ")
    }
}

/// Parses the first certificate of a PEM file.
pub fn inspect_pem(pem: &[u8]) -> Result<CertFacts, String> {
    let blocks = pem_blocks(pem)?;
    let der = blocks
        .into_iter()
        .find(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| der)
        .ok_or("no CERTIFICATE block")?;
    inspect_der(&der)
}

pub(crate) fn inspect_der(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("not X.509: {e}"))?;
    let tbs = &cert.tbs_certificate;
    let names = |name: &x509_parser::x509::X509Name<'_>, cn: bool| -> Vec<String> {
        let iter: Box<dyn Iterator<Item = _>> =
            if cn { Box::new(name.iter_common_name()) } else { Box::new(name.iter_organization()) };
        iter.filter_map(|a| a.as_str().ok().map(str::to_string)).collect()
    };
    let mut dns_names = BTreeSet::new();
    let mut ip_addresses = BTreeSet::new();
    if let Ok(Some(san)) = tbs.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => {
                    dns_names.insert(d.to_string());
                }
                GeneralName::IPAddress(bytes) => {
                    if let Some(ip) = ip_from_bytes(bytes) {
                        ip_addresses.insert(ip);
                    }
                }
                _ => {}
            }
        }
    }
    let mut ext_key_usages = BTreeSet::new();
    let mut other_ext_key_usages = Vec::new();
    if let Ok(Some(eku)) = tbs.extended_key_usage() {
        if eku.value.server_auth {
            ext_key_usages.insert(ExtKeyUsage::ServerAuth);
        }
        if eku.value.client_auth {
            ext_key_usages.insert(ExtKeyUsage::ClientAuth);
        }
        other_ext_key_usages = eku.value.other.iter().map(|o| o.to_id_string()).collect();
    }
    let time = |t: &x509_parser::time::ASN1Time| {
        OffsetDateTime::from_unix_timestamp(t.timestamp()).map_err(|e| e.to_string())
    };
    Ok(CertFacts {
        common_name: names(tbs.subject(), true).join(","),
        organizations: names(tbs.subject(), false),
        issuer_common_name: names(tbs.issuer(), true).join(","),
        dns_names,
        ip_addresses,
        ext_key_usages,
        other_ext_key_usages,
        is_ca: tbs.is_ca(),
        may_sign_certs: match tbs.key_usage() {
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            Ok(None) => true,
            Err(_) => false,
        },
        not_before: time(&tbs.validity().not_before)?,
        not_after: time(&tbs.validity().not_after)?,
        serial_hex: tbs.raw_serial().iter().map(|b| format!("{b:02x}")).collect(),
        key_algorithm: key_algorithm(tbs.public_key()),
        spki_der: tbs.public_key().raw.to_vec(),
        der: der.to_vec(),
    })
}

fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

fn key_algorithm(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Option<KeyAlgorithm> {
    match spki.parsed().ok()? {
        // Uncompressed points: 0x04 || X || Y.
        PublicKey::EC(point) => match point.data().len() {
            65 => Some(KeyAlgorithm::EcdsaP256),
            97 => Some(KeyAlgorithm::EcdsaP384),
            _ => None,
        },
        PublicKey::RSA(rsa) => {
            let modulus = rsa.modulus.iter().skip_while(|b| **b == 0).count() * 8;
            match modulus {
                2048 => Some(KeyAlgorithm::Rsa2048),
                3072 => Some(KeyAlgorithm::Rsa3072),
                4096 => Some(KeyAlgorithm::Rsa4096),
                _ => None,
            }
        }
        _ => None,
    }
}

/// Whether `cert_der` carries a valid signature by the key in `issuer_spki_der`.
pub(crate) fn signed_by(cert_der: &[u8], issuer_spki_der: &[u8]) -> bool {
    let Ok((_, cert)) = X509Certificate::from_der(cert_der) else { return false };
    let Ok((_, issuer)) = x509_parser::x509::SubjectPublicKeyInfo::from_der(issuer_spki_der) else {
        return false;
    };
    let issuer_alg = key_algorithm(&issuer);
    let sig_oid = cert.signature_algorithm.algorithm.to_id_string();
    let alg: &dyn VerificationAlgorithm = match (sig_oid.as_str(), issuer_alg) {
        ("1.2.840.10045.4.3.2", Some(KeyAlgorithm::EcdsaP256)) => {
            &signature::ECDSA_P256_SHA256_ASN1
        }
        ("1.2.840.10045.4.3.2", Some(KeyAlgorithm::EcdsaP384)) => {
            &signature::ECDSA_P384_SHA256_ASN1
        }
        ("1.2.840.10045.4.3.3", Some(KeyAlgorithm::EcdsaP256)) => {
            &signature::ECDSA_P256_SHA384_ASN1
        }
        ("1.2.840.10045.4.3.3", Some(KeyAlgorithm::EcdsaP384)) => {
            &signature::ECDSA_P384_SHA384_ASN1
        }
        ("1.2.840.113549.1.1.11", _) => &signature::RSA_PKCS1_2048_8192_SHA256,
        ("1.2.840.113549.1.1.12", _) => &signature::RSA_PKCS1_2048_8192_SHA384,
        ("1.2.840.113549.1.1.13", _) => &signature::RSA_PKCS1_2048_8192_SHA512,
        _ => return false,
    };
    let key = signature::UnparsedPublicKey::new(alg, &issuer.subject_public_key.data);
    key.verify(cert.tbs_certificate.as_ref(), &cert.signature_value.data).is_ok()
}
