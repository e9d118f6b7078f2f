//! Signing: self-signed CAs and CA-signed leaves with kubeadm's extensions (CA: critical
//! basicConstraints CA:TRUE, keyUsage digitalSignature|keyEncipherment|keyCertSign, SKI, SAN
//! DNS = CN; leaf: critical CA:FALSE, digitalSignature|keyEncipherment, per-profile EKU, AKI, no
//! SKI, as Go's x509 writes them). Validity runs
//! from five minutes before `now` to `now + validity`; serials come from the injected source.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;

use crate::error::{PkiError, crypto};
use crate::inspect::ExtKeyUsage;
use crate::serial::{SerialSource, next_serial};

/// kubeadm's `CertificateBackdate`.
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(5);

/// What a new certificate says.
pub(crate) struct Subject<'a> {
    pub common_name: &'a str,
    pub organizations: &'a [String],
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
    pub ext_key_usages: &'a [ExtKeyUsage],
}

fn validity(
    now: OffsetDateTime,
    length: std::time::Duration,
    what: &str,
) -> Result<(OffsetDateTime, OffsetDateTime), PkiError> {
    let length = time::Duration::try_from(length).map_err(|e| crypto(what, e))?;
    let not_after = now.checked_add(length).ok_or_else(|| crypto(what, "validity overflows"))?;
    Ok((now - BACKDATE, not_after))
}

fn base_params(
    subject: &Subject<'_>,
    now: OffsetDateTime,
    length: std::time::Duration,
    serials: &mut dyn SerialSource,
    what: &str,
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    (params.not_before, params.not_after) = validity(now, length, what)?;
    params.serial_number = Some(SerialNumber::from_slice(&next_serial(serials)));
    let mut dn = DistinguishedName::new();
    // Go writes O before CN.
    for org in subject.organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, subject.common_name);
    params.distinguished_name = dn;
    for name in subject.dns_names {
        let ia5 = name.as_str().try_into().map_err(|e| PkiError::BadRequest {
            what: what.into(),
            problem: format!("SAN {name:?} is not a valid DNS name ({e})"),
        })?;
        params.subject_alt_names.push(SanType::DnsName(ia5));
    }
    params.subject_alt_names.extend(subject.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.extended_key_usages = subject
        .ext_key_usages
        .iter()
        .map(|u| match u {
            ExtKeyUsage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            ExtKeyUsage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    Ok(params)
}

/// A self-signed CA certificate (PEM) for `key`.
pub(crate) fn self_signed_ca(
    common_name: &str,
    key: &KeyPair,
    now: OffsetDateTime,
    length: std::time::Duration,
    serials: &mut dyn SerialSource,
) -> Result<String, PkiError> {
    let dns = [common_name.to_string()];
    let subject = Subject {
        common_name,
        organizations: &[],
        dns_names: &dns,
        ip_addresses: &[],
        ext_key_usages: &[],
    };
    let mut params = base_params(&subject, now, length, serials, common_name)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::KeyCertSign,
    ];
    let cert = params.self_signed(key).map_err(|e| crypto(common_name, e))?;
    Ok(cert.pem())
}

/// A leaf certificate (PEM) for `key`, signed by `issuer`.
pub(crate) fn signed_leaf(
    subject: &Subject<'_>,
    key: &KeyPair,
    issuer: &Issuer<'_, KeyPair>,
    now: OffsetDateTime,
    length: std::time::Duration,
    serials: &mut dyn SerialSource,
    what: &str,
) -> Result<String, PkiError> {
    let mut params = base_params(subject, now, length, serials, what)?;
    // Go (hence kubeadm) writes a critical basicConstraints CA:FALSE (an empty SEQUENCE) and no
    // subjectKeyIdentifier on leaves; rcgen's `ExplicitNoCa` would add an SKI.
    params.is_ca = IsCa::NoCa;
    let mut ca_false = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    ca_false.set_criticality(true);
    params.custom_extensions.push(ca_false);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(key, issuer).map_err(|e| crypto(what, e))?;
    Ok(cert.pem())
}
