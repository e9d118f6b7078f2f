//! Golden certificate profiles (subject, issuer, serial, validity, key type, extensions, SANs,
//! kubeconfig fields) for the stacked and external examples, generated with a fixed clock and
//! seeded serials, read back with x509-parser. The profiles follow kubeadm's (kubeadm.md §1–2).

mod pki_common;

use kubeforge_pki::Store;
use kubeforge_pki::kubeconfig::Kubeconfig;
use pki_common::*;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::*;

fn describe(path: &str, pem: &[u8], out: &mut String) {
    let (_, pem) = parse_x509_pem(pem).unwrap();
    let cert = pem.parse_x509().unwrap();
    let tbs = &cert.tbs_certificate;
    out.push_str(&format!("subject: {}\n", tbs.subject()));
    out.push_str(&format!("issuer: {}\n", tbs.issuer()));
    out.push_str(&format!("serial: {}\n", tbs.raw_serial_as_string()));
    out.push_str(&format!(
        "validity: {} .. {}\n",
        tbs.validity().not_before.to_datetime(),
        tbs.validity().not_after.to_datetime()
    ));
    let key = match tbs.public_key().parsed().unwrap() {
        x509_parser::public_key::PublicKey::EC(p) => format!("EC {} bits", p.key_size()),
        x509_parser::public_key::PublicKey::RSA(r) => format!("RSA {} bits", r.key_size()),
        _ => "other".into(),
    };
    out.push_str(&format!("key: {key}\n"));
    out.push_str(&format!("signature: {}\n", cert.signature_algorithm.algorithm.to_id_string()));
    for ext in tbs.extensions() {
        let crit = if ext.critical { "critical " } else { "" };
        let line = match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => {
                format!("basicConstraints: {crit}CA:{}", bc.ca)
            }
            ParsedExtension::KeyUsage(ku) => format!("keyUsage: {crit}{ku}"),
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut u = Vec::new();
                if eku.server_auth {
                    u.push("serverAuth");
                }
                if eku.client_auth {
                    u.push("clientAuth");
                }
                format!("extKeyUsage: {crit}{}", u.join(", "))
            }
            ParsedExtension::SubjectAlternativeName(san) => {
                let names: Vec<String> = san
                    .general_names
                    .iter()
                    .map(|n| match n {
                        GeneralName::DNSName(d) => format!("DNS:{d}"),
                        GeneralName::IPAddress(b) if b.len() == 4 => {
                            format!(
                                "IP:{}",
                                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*b).unwrap())
                            )
                        }
                        GeneralName::IPAddress(b) => {
                            format!(
                                "IP:{}",
                                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*b).unwrap())
                            )
                        }
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("subjectAltName: {crit}{}", names.join(", "))
            }
            ParsedExtension::SubjectKeyIdentifier(_) => {
                format!("subjectKeyIdentifier: {crit}present")
            }
            ParsedExtension::AuthorityKeyIdentifier(_) => {
                format!("authorityKeyIdentifier: {crit}present")
            }
            other => format!("other: {other:?}"),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let _ = path;
}

fn profiles(store: &Store) -> String {
    let mut out = String::new();
    for (path, bytes) in store {
        out.push_str(&format!("== {path}\n"));
        if path.ends_with(".crt") {
            describe(path, bytes, &mut out);
        } else if path.ends_with(".conf") {
            let k = Kubeconfig::parse(bytes).unwrap();
            out.push_str(&format!(
                "cluster: {}\nserver: {}\nuser: {}\ncontext: {}\n",
                k.cluster_name,
                k.server,
                k.user,
                k.context_name()
            ));
            let ca_is_cluster_ca = k.ca_pem == store["ca.crt"];
            out.push_str(&format!(
                "certificate-authority-data: ca.crt {}\n",
                if ca_is_cluster_ca { "(same bytes)" } else { "(DIFFERENT)" }
            ));
            let key_label = String::from_utf8_lossy(&k.client_key_pem)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            out.push_str(&format!("client-key: {key_label}\n"));
            describe(path, &k.client_cert_pem, &mut out);
        } else {
            let first =
                String::from_utf8_lossy(bytes).lines().next().unwrap_or_default().to_string();
            out.push_str(&format!("pem: {first}\n"));
        }
    }
    out
}

#[test]
fn stacked_profiles_match_golden() {
    golden("pki/stacked.txt", &profiles(&fresh(&cluster("stacked"))));
}

#[test]
fn external_profiles_match_golden() {
    golden("pki/external.txt", &profiles(&fresh(&cluster("external"))));
}
