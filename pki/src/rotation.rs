//! CA rotation, planned: the trust bundle that holds the old and the new CA while leaves move
//! over, and the phased procedure `certs rotate-ca` will run (trust both → reissue leaves →
//! rolling restarts → drop the old CA). Executing it belongs to a later operation.

use std::fmt;

use time::OffsetDateTime;

use crate::Store;
use crate::cas;
use crate::der::{pem_blocks, pem_encode};
use crate::error::PkiError;
use crate::inspect::signed_by;
use crate::paths::crt;
use crate::profile::CaId;
use crate::request::PkiRequest;

/// CA certificates clients trust at once: during a rotation, the current CA and its successor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustBundle {
    /// DER certificates in the order given (the signing CA first), without duplicates.
    certs: Vec<Vec<u8>>,
}

impl TrustBundle {
    /// Every certificate of the given PEM files, in order, each once.
    pub fn from_pems(pems: &[&[u8]]) -> Result<TrustBundle, String> {
        let mut certs: Vec<Vec<u8>> = Vec::new();
        for pem in pems {
            for (label, der) in pem_blocks(pem)? {
                if label == "CERTIFICATE" && !certs.contains(&der) {
                    certs.push(der);
                }
            }
        }
        if certs.is_empty() {
            return Err("no certificate in the bundle".into());
        }
        Ok(TrustBundle { certs })
    }

    pub fn len(&self) -> usize {
        self.certs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.certs.is_empty()
    }

    /// The bundle file: concatenated PEM blocks, as `ca.crt` carries it during a rotation.
    pub fn pem(&self) -> Vec<u8> {
        self.certs.iter().map(|d| pem_encode("CERTIFICATE", d)).collect::<String>().into_bytes()
    }

    /// Whether a certificate (PEM) was signed by any CA in the bundle.
    pub fn trusts(&self, cert_pem: &[u8]) -> bool {
        let Ok(blocks) = pem_blocks(cert_pem) else { return false };
        let Some((_, der)) = blocks.into_iter().find(|(l, _)| l == "CERTIFICATE") else {
            return false;
        };
        self.certs.iter().any(|ca| {
            crate::inspect::inspect_der(ca).is_ok_and(|facts| signed_by(&der, &facts.spki_der))
        })
    }
}

/// One phase of the rotation: a name, why, and its ordered steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPhase {
    pub name: &'static str,
    pub summary: &'static str,
    pub steps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationPlan {
    pub phases: Vec<RotationPhase>,
}

impl fmt::Display for RotationPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, phase) in self.phases.iter().enumerate() {
            writeln!(f, "Phase {}: {} — {}", i + 1, phase.name, phase.summary)?;
            for step in &phase.steps {
                writeln!(f, "  - {step}")?;
            }
        }
        Ok(())
    }
}

/// The procedure for replacing all three CAs of the cluster, host by host. Needs the current
/// CAs in the store (their keys too: leaves are re-signed by the new CAs kubeforge creates).
pub fn plan_ca_rotation(
    req: &PkiRequest,
    store: &Store,
    now: OffsetDateTime,
) -> Result<RotationPlan, PkiError> {
    for id in CaId::ALL {
        let ca = cas::load(store, id, now)?
            .ok_or_else(|| PkiError::NotGenerated { path: crt(id.base()) })?;
        if ca.issuer.is_none() {
            return Err(PkiError::ExternallyManaged {
                what: "CA rotation".into(),
                ca: id.base().into(),
            });
        }
    }
    let etcd: Vec<&str> = req.etcd_members.iter().map(|m| m.name.as_str()).collect();
    let cps: Vec<&str> = req.control_planes.iter().map(|c| c.name.as_str()).collect();
    let nodes: Vec<&str> = req.nodes.iter().map(|n| n.name.as_str()).collect();
    let cas = "ca, front-proxy-ca, etcd/ca";
    let mut phases = Vec::new();
    phases.push(RotationPhase {
        name: "prepare",
        summary: "create the new CAs beside the old ones in the state dir",
        steps: vec![
            format!("back up the state dir's pki/ folder"),
            format!("generate new {cas} (pki.keyAlgorithm, caValidity) under pki/rotation/"),
            "build trust bundles: old CA + new CA for each of the three".into(),
        ],
    });
    let mut trust = Vec::new();
    for h in &etcd {
        trust.push(format!(
            "{h}: install etcd/ca.crt bundle (old+new), restart etcd, wait for a healthy member"
        ));
    }
    for h in &cps {
        trust.push(format!(
            "{h}: install ca.crt and front-proxy-ca.crt bundles, update certificate-authority-data in admin.conf, controller-manager.conf, scheduler.conf; restart kube-apiserver, kube-controller-manager, kube-scheduler one by one; wait for /readyz"
        ));
    }
    for h in &nodes {
        trust.push(format!("{h}: install ca.crt bundle, update kubelet.conf certificate-authority-data, restart kubelet"));
    }
    trust.push("kube-controller-manager republishes kube-root-ca.crt with both CAs; wait until every namespace has it".into());
    phases.push(RotationPhase {
        name: "trust-both",
        summary: "every component trusts the old and the new CAs",
        steps: trust,
    });
    phases.push(RotationPhase {
        name: "reissue-leaves",
        summary: "sign every leaf and kubeconfig with the new CAs (same subjects and SANs, new keys)",
        steps: vec![
            format!("{} control-plane leaf sets, {} etcd member sets, {} kubelet client and serving certificates, super-admin.conf", cps.len(), etcd.len(), nodes.len()),
            "store them in the state dir; nothing is distributed yet".into(),
        ],
    });
    let mut restarts = Vec::new();
    for h in &etcd {
        restarts.push(format!("{h}: install new etcd/server, etcd/peer, etcd/healthcheck-client; restart etcd; wait for a healthy member"));
    }
    for h in &cps {
        restarts.push(format!("{h}: install new apiserver, apiserver-kubelet-client, front-proxy-client, apiserver-etcd-client and kubeconfigs; restart control-plane components one by one; wait for /readyz"));
    }
    for h in &nodes {
        restarts.push(format!("{h}: install new kubelet.conf and kubelet serving certificate; restart kubelet; wait for Ready"));
    }
    restarts.push(
        "restart Pods that use service-account tokens so they reload kube-root-ca.crt".into(),
    );
    phases.push(RotationPhase {
        name: "rolling-restart",
        summary: "one host at a time, each followed by a health gate",
        steps: restarts,
    });
    let mut drop_old = vec!["replace the bundles with the new CAs alone in the state dir".into()];
    for h in etcd.iter().chain(cps.iter()).chain(nodes.iter()) {
        drop_old.push(format!(
            "{h}: install the new-CA-only bundles, restart the components that read them"
        ));
    }
    drop_old.push("keep the old CAs in the state dir's backups for the record".into());
    phases.push(RotationPhase {
        name: "drop-old-ca",
        summary: "stop trusting the old CAs",
        steps: drop_old,
    });
    Ok(RotationPlan { phases })
}
