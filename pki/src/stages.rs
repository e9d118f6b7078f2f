//! CA rotation, executed: the state dir's PKI at each stage of replacing one CA
//! ([`RotationStage`]). It owns the file layout during a rotation and the rule that makes a
//! rotation safe to interrupt: every stage's store is a fixed point of [`crate::generate`], so an
//! `apply` in the middle renders the current stage and never folds a bundle back to one CA or
//! re-signs a leaf with the old CA. It computes stores only: distributing them, restarting
//! components and recording progress belong to the caller.
//!
//! Layout for a CA whose base is `B` (`etcd/ca`):
//! - before: `B.crt` = old, `B.key` = old.
//! - `trust-both`: `B.crt` = old + new (old first: it still signs), `B.key` = old,
//!   `B-next.crt`/`B-next.key` = new.
//! - `reissue-leaves`: `B.crt` = new + old (new first: it signs now), `B.key` = new,
//!   `B-prev.crt`/`B-prev.key` = old; every leaf of that CA signed by the new one (same subject,
//!   SANs and usages, new key); `B-next.*` leave the store.
//! - `drop-old`: `B.crt` = new, `B.key` = new; `B-prev.*` leave the store.
//!
//! Files that leave the store are listed in [`StageOutcome::retired`]; the caller moves them to
//! the state dir's replaced files, never deletes them. Each stage is idempotent: applied to a
//! store already at that stage (or half-way through its leaves) it finishes what is left.

use std::fmt;

use time::OffsetDateTime;

use crate::Store;
use crate::der::pem_blocks;
use crate::error::PkiError;
use crate::generate::{self, truncate};
use crate::inspect::{inspect_der, signed_by};
use crate::keys;
use crate::paths::{crt, key};
use crate::profile::{self, CaId, LeafKind};
use crate::renew::{RenewSelection, renew};
use crate::report::{Action, Reason, Report};
use crate::request::PkiRequest;
use crate::rotation::TrustBundle;
use crate::serial::SerialSource;
use crate::{issue, kubeconfig::Kubeconfig};

/// The stages of one CA's rotation, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RotationStage {
    /// A new CA beside the old; every reader of the CA file trusts both.
    TrustBoth,
    /// Every leaf of the CA signed by the new CA; both still trusted.
    ReissueLeaves,
    /// Only the new CA is trusted; the old one is kept as replaced files.
    DropOld,
}

impl RotationStage {
    pub const ALL: [RotationStage; 3] =
        [RotationStage::TrustBoth, RotationStage::ReissueLeaves, RotationStage::DropOld];

    pub fn as_str(self) -> &'static str {
        match self {
            RotationStage::TrustBoth => "trust-both",
            RotationStage::ReissueLeaves => "reissue-leaves",
            RotationStage::DropOld => "drop-old",
        }
    }

    pub fn parse(s: &str) -> Option<RotationStage> {
        RotationStage::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// What the stage does, for plans and `--status`.
    pub fn summary(self) -> &'static str {
        match self {
            RotationStage::TrustBoth => {
                "new CA beside the old; the CA file becomes a bundle (old + new); readers restart one host at a time"
            }
            RotationStage::ReissueLeaves => {
                "every leaf of the CA reissued by the new CA (same subjects and SANs, new keys); the bundle stays"
            }
            RotationStage::DropOld => {
                "the CA file holds the new CA alone; the old CA moves to the replaced files; readers restart one host at a time"
            }
        }
    }

    /// The stage after this one.
    pub fn next(self) -> Option<RotationStage> {
        match self {
            RotationStage::TrustBoth => Some(RotationStage::ReissueLeaves),
            RotationStage::ReissueLeaves => Some(RotationStage::DropOld),
            RotationStage::DropOld => None,
        }
    }
}

impl fmt::Display for RotationStage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Store base of the incoming CA during `trust-both` (`etcd/ca-next`).
pub fn next_ca_base(ca: CaId) -> String {
    format!("{}-next", ca.base())
}

/// Store base of the outgoing CA during `reissue-leaves` (`etcd/ca-prev`).
pub fn prev_ca_base(ca: CaId) -> String {
    format!("{}-prev", ca.base())
}

/// The store at the end of a stage.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub store: Store,
    /// What changed; `replaced_files()` names the files the caller may overwrite.
    pub report: Report,
    /// Files of the input store that are not in the output: to be moved to the replaced files.
    pub retired: Vec<String>,
}

fn certs_in(store: &Store, path: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let Some(pem) = store.get(path) else {
        return Err(PkiError::NotGenerated { path: path.to_string() });
    };
    let blocks = pem_blocks(pem)
        .map_err(|problem| PkiError::Unreadable { path: path.to_string(), problem })?;
    Ok(blocks.into_iter().filter(|(l, _)| l == "CERTIFICATE").map(|(_, d)| d).collect())
}

fn bundle_of(ders: &[&[u8]]) -> Vec<u8> {
    let pems: Vec<Vec<u8>> =
        ders.iter().map(|d| crate::der::pem_encode("CERTIFICATE", d).into_bytes()).collect();
    let refs: Vec<&[u8]> = pems.iter().map(|p| p.as_slice()).collect();
    TrustBundle::from_pems(&refs).map(|b| b.pem()).unwrap_or_default()
}

fn single_pem(der: &[u8]) -> Vec<u8> {
    crate::der::pem_encode("CERTIFICATE", der).into_bytes()
}

fn out_of_order(ca: CaId, stage: RotationStage, problem: String) -> PkiError {
    PkiError::BadRequest {
        what: format!("rotation of {} ({stage})", crt(ca.base())),
        problem: format!(
            "{problem}; the state dir is not where this stage starts (see `kubeforge certs rotate-ca --status`, and the files under pki-replaced/)"
        ),
    }
}

/// The certificate (PEM) of each leaf of `ca` as found in the store, with its report path.
fn leaves_of(req: &PkiRequest, store: &Store, ca: CaId) -> Vec<(profile::LeafProfile, Vec<u8>)> {
    profile::leaves(req)
        .into_iter()
        .filter(|l| l.signer == ca)
        .filter_map(|l| {
            let pem = match &l.kind {
                LeafKind::Pair => store.get(&crt(&l.base)).cloned(),
                LeafKind::Kubeconfig { .. } => store
                    .get(&l.base)
                    .and_then(|b| Kubeconfig::parse(b).ok())
                    .map(|k| k.client_cert_pem),
            }?;
            Some((l, pem))
        })
        .collect()
}

fn leaf_signed_by(pem: &[u8], ca_der: &[u8]) -> bool {
    let Ok(ca) = inspect_der(ca_der) else { return false };
    let Ok(blocks) = pem_blocks(pem) else { return false };
    blocks.iter().any(|(l, d)| l == "CERTIFICATE" && signed_by(d, &ca.spki_der))
}

/// The store at the end of `stage` of rotating `ca`, from the store at the end of the stage
/// before (or the stage itself, to finish it). Fails without changing anything when the store
/// is at another point of the rotation, or the CA's key is not in the store.
pub fn rotation_stage(
    req: &PkiRequest,
    store: &Store,
    ca: CaId,
    stage: RotationStage,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
) -> Result<StageOutcome, PkiError> {
    let now = truncate(now);
    let (cur_crt, cur_key) = (crt(ca.base()), key(ca.base()));
    let (next_base, prev_base) = (next_ca_base(ca), prev_ca_base(ca));
    let (next_crt, next_key) = (crt(&next_base), key(&next_base));
    let (prev_crt, prev_key) = (crt(&prev_base), key(&prev_base));
    if !store.contains_key(&cur_key) {
        return Err(PkiError::ExternallyManaged {
            what: "CA rotation".into(),
            ca: ca.base().into(),
        });
    }
    let current = certs_in(store, &cur_crt)?;
    if current.is_empty() {
        return Err(PkiError::BadCa {
            path: cur_crt,
            problem: "holds no CERTIFICATE block".into(),
        });
    }
    let mut out = store.clone();
    let mut report = Report::default();
    let why = |s: RotationStage| Action::Reissued(vec![Reason::CaRotation(s.as_str().into())]);
    match stage {
        RotationStage::TrustBoth => {
            if store.contains_key(&prev_crt) {
                return Err(out_of_order(
                    ca,
                    stage,
                    format!("{prev_crt} exists: an earlier rotation has not dropped its old CA"),
                ));
            }
            if store.contains_key(&next_crt) {
                // Finishing: the bundle must be old + next.
                let next = certs_in(store, &next_crt)?;
                let want = bundle_of(&[&current[0], &next[0]]);
                if store.get(&cur_crt) != Some(&want) {
                    out.insert(cur_crt.clone(), want);
                    report.push(cur_crt.clone(), vec![cur_crt.clone()], None, why(stage));
                }
            } else {
                if current.len() != 1 {
                    return Err(out_of_order(
                        ca,
                        stage,
                        format!("{cur_crt} holds {} certificates, expected one", current.len()),
                    ));
                }
                let pair = keys::generate(req.key_algorithm, &next_crt)?;
                let cert =
                    issue::self_signed_ca(ca.common_name(), &pair, now, req.ca_validity, serials)?;
                let next = certs_in(
                    &Store::from([(next_crt.clone(), cert.clone().into_bytes())]),
                    &next_crt,
                )?;
                out.insert(next_crt.clone(), cert.into_bytes());
                out.insert(next_key.clone(), keys::to_pem(&pair, &next_crt)?.into_bytes());
                report.push(
                    next_crt.clone(),
                    vec![next_crt.clone(), next_key.clone()],
                    None,
                    Action::Created,
                );
                out.insert(cur_crt.clone(), bundle_of(&[&current[0], &next[0]]));
                report.push(cur_crt.clone(), vec![cur_crt.clone()], None, why(stage));
            }
        }
        RotationStage::ReissueLeaves => {
            if store.contains_key(&next_crt) {
                // Switch signing to the new CA: it leads the bundle and its key becomes B.key.
                let next = certs_in(store, &next_crt)?;
                let next_key_pem = store.get(&next_key).ok_or_else(|| PkiError::HalfPair {
                    path: next_crt.clone(),
                    missing: next_key.clone(),
                })?;
                if current.len() != 2 || current[1] != next[0] {
                    return Err(out_of_order(
                        ca,
                        stage,
                        format!(
                            "{cur_crt} is not the bundle of the current CA and {next_crt} (run trust-both first)"
                        ),
                    ));
                }
                out.insert(prev_crt.clone(), single_pem(&current[0]));
                out.insert(prev_key.clone(), store[&cur_key].clone());
                report.push(
                    prev_crt.clone(),
                    vec![prev_crt.clone(), prev_key.clone()],
                    None,
                    Action::Created,
                );
                out.insert(cur_crt.clone(), bundle_of(&[&next[0], &current[0]]));
                out.insert(cur_key.clone(), next_key_pem.clone());
                report.push(
                    cur_crt.clone(),
                    vec![cur_crt.clone(), cur_key.clone()],
                    None,
                    why(stage),
                );
                out.remove(&next_crt);
                out.remove(&next_key);
            } else if !store.contains_key(&prev_crt) || current.len() != 2 {
                return Err(out_of_order(
                    ca,
                    stage,
                    format!(
                        "neither {next_crt} nor {prev_crt} with a two-CA {cur_crt} is in the store (run trust-both first)"
                    ),
                ));
            }
            // Every leaf not yet signed by the (new) signing CA: new key, same names.
            let signing = certs_in(&out, &cur_crt)?;
            let names: Vec<String> = leaves_of(req, &out, ca)
                .into_iter()
                .filter(|(_, pem)| !leaf_signed_by(pem, &signing[0]))
                .map(|(l, _)| match &l.host {
                    Some(h) => format!("{h}/{}", l.name),
                    None => l.name.to_string(),
                })
                .collect();
            if !names.is_empty() {
                let renewed = renew(req, &out, now, serials, &RenewSelection::Names(names))?;
                out = renewed.store;
                for e in renewed.report.entries {
                    report.push(e.path, e.files, e.host, why(stage));
                }
            }
        }
        RotationStage::DropOld => {
            if store.contains_key(&next_crt) {
                return Err(out_of_order(
                    ca,
                    stage,
                    format!("{next_crt} exists (run reissue-leaves first)"),
                ));
            }
            let signing = &current[0];
            let old: Vec<String> = leaves_of(req, store, ca)
                .into_iter()
                .filter(|(_, pem)| !leaf_signed_by(pem, signing))
                .map(|(l, _)| l.display_path())
                .collect();
            if !old.is_empty() {
                return Err(out_of_order(
                    ca,
                    stage,
                    format!(
                        "not signed by the new CA yet: {} (run reissue-leaves first)",
                        old.join(", ")
                    ),
                ));
            }
            if current.len() > 1 {
                out.insert(cur_crt.clone(), single_pem(signing));
                report.push(cur_crt.clone(), vec![cur_crt.clone()], None, why(stage));
            }
            out.remove(&prev_crt);
            out.remove(&prev_key);
        }
    }
    settle(req, store, &out, report, now, serials)
}

/// The end of a stage: whatever else it changes for the spec (a kubeconfig's CA data follows
/// the bundle) is what `generate` makes of `out`, so every stage's store is a fixed point of
/// `generate`; the files of `before` that are gone are `retired`.
pub(crate) fn settle(
    req: &PkiRequest,
    before: &Store,
    out: &Store,
    mut report: Report,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
) -> Result<StageOutcome, PkiError> {
    let settled = generate::generate(req, out, now, serials)?;
    for e in settled.report.entries {
        if e.action != Action::Reused && !report.entries.iter().any(|r| r.path == e.path) {
            report.entries.push(e);
        }
    }
    report.notes.extend(settled.report.notes);
    let retired = before.keys().filter(|p| !settled.store.contains_key(*p)).cloned().collect();
    Ok(StageOutcome { store: settled.store, report, retired })
}

/// The stage a store is at for `ca`: `None` when no rotation is under way (one CA in the file,
/// no `-next`/`-prev` files). Read from the files, so it survives a lost `rotation.json`.
pub fn stage_of(store: &Store, ca: CaId) -> Option<RotationStage> {
    if store.contains_key(&crt(&next_ca_base(ca))) {
        Some(RotationStage::TrustBoth)
    } else if store.contains_key(&crt(&prev_ca_base(ca))) {
        Some(RotationStage::ReissueLeaves)
    } else {
        None
    }
}

#[cfg(test)]
#[path = "tests_stages.rs"]
mod tests;
