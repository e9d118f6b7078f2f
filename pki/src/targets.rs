//! What `certs rotate-ca --ca …` rotates ([`Rotated`]): one CA, the three CAs together
//! (`all`: one roll-out per stage for all of them), or the service-account signing key (`sa`).
//! It owns the service-account key's stages, whose layout mirrors a CA's:
//! - before: `sa.key` = old, `sa.pub` = old public key.
//! - `trust-both` (publish): `sa-next.key` = new; `sa.pub` = old + new public keys (the
//!   signing key's first), so kube-apiserver accepts tokens of either while the old still signs.
//! - `reissue-leaves` (switch signing): `sa.key` = new, `sa.pub` = new + old, `sa-prev.key` =
//!   old: new tokens are signed by the new key, old tokens still verify.
//! - `drop-old`: `sa.pub` = new alone; `sa-prev.key` leaves the store.
//!
//! Like [`crate::rotation_stage`] it only computes stores; every stage's store is a fixed point
//! of [`crate::generate`] (which checks only the first public key of `sa.pub` against `sa.key`).
//! `sa-next.key` and `sa-prev.key` never leave the state dir: the render tree places `sa.key`
//! and `sa.pub` alone, and only on control planes.

use std::fmt;

use time::OffsetDateTime;

use crate::Store;
use crate::der::{pem_blocks, pem_encode};
use crate::error::PkiError;
use crate::generate::truncate;
use crate::keys;
use crate::paths::{SA_KEY, SA_PUB};
use crate::profile::CaId;
use crate::report::{Action, Reason, Report};
use crate::request::PkiRequest;
use crate::serial::SerialSource;
use crate::stages::{RotationStage, StageOutcome, rotation_stage, stage_of};

/// The incoming service-account key during `trust-both`.
pub const SA_NEXT_KEY: &str = "sa-next.key";
/// The outgoing service-account key during `reissue-leaves`.
pub const SA_PREV_KEY: &str = "sa-prev.key";

/// What one rotation replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Rotated {
    Ca(CaId),
    /// The three CAs, each stage for all of them before the roll-out.
    AllCas,
    /// The service-account signing key.
    ServiceAccount,
}

impl Rotated {
    /// Every `--ca` value, in the order the help lists them.
    pub const ALL: [Rotated; 5] = [
        Rotated::Ca(CaId::Etcd),
        Rotated::Ca(CaId::Kubernetes),
        Rotated::Ca(CaId::FrontProxy),
        Rotated::AllCas,
        Rotated::ServiceAccount,
    ];

    /// The `--ca` spelling (also the record's).
    pub fn as_str(self) -> &'static str {
        match self {
            Rotated::Ca(CaId::Etcd) => "etcd",
            Rotated::Ca(CaId::Kubernetes) => "kubernetes",
            Rotated::Ca(CaId::FrontProxy) => "front-proxy",
            Rotated::AllCas => "all",
            Rotated::ServiceAccount => "sa",
        }
    }

    pub fn parse(s: &str) -> Option<Rotated> {
        Rotated::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The CAs it replaces (none for `sa`).
    pub fn cas(self) -> Vec<CaId> {
        match self {
            Rotated::Ca(ca) => vec![ca],
            Rotated::AllCas => vec![CaId::Etcd, CaId::Kubernetes, CaId::FrontProxy],
            Rotated::ServiceAccount => vec![],
        }
    }

    /// What each stage means for this target, for plans and `--status`.
    pub fn stage_summary(self, stage: RotationStage) -> &'static str {
        match (self, stage) {
            (Rotated::ServiceAccount, RotationStage::TrustBoth) => {
                "new service-account key published beside the old in sa.pub; kube-apiservers restart one at a time and accept tokens of both"
            }
            (Rotated::ServiceAccount, RotationStage::ReissueLeaves) => {
                "signing switched to the new key (sa.key); sa.pub keeps both, so tokens signed by the old key still verify"
            }
            (Rotated::ServiceAccount, RotationStage::DropOld) => {
                "sa.pub holds the new key alone: tokens signed by the old key are rejected; the old key moves to the replaced files"
            }
            (_, st) => st.summary(),
        }
    }
}

impl fmt::Display for Rotated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The store at the end of `stage` of rotating `what` (see [`rotation_stage`] for one CA).
/// For `all`, each CA's stage in turn on the same store; the report lists every change once.
pub fn rotate_stage(
    req: &PkiRequest,
    store: &Store,
    what: Rotated,
    stage: RotationStage,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
) -> Result<StageOutcome, PkiError> {
    if what == Rotated::ServiceAccount {
        return sa_stage(req, store, stage, now, serials);
    }
    let mut current = store.clone();
    let mut report = Report::default();
    for ca in what.cas() {
        let out = rotation_stage(req, &current, ca, stage, now, serials)?;
        for e in out.report.entries {
            report.entries.retain(|r| r.path != e.path);
            report.entries.push(e);
        }
        report.notes.extend(out.report.notes);
        current = out.store;
    }
    let retired = store.keys().filter(|p| !current.contains_key(*p)).cloned().collect();
    Ok(StageOutcome { store: current, report, retired })
}

/// The stage a store is at for `what`: `None` when no rotation of it is under way. For `all`,
/// the earliest stage any of the CAs is at (they move together; a run stopped half-way through
/// a stage leaves some at the stage before).
pub fn stage_of_rotated(store: &Store, what: Rotated) -> Option<RotationStage> {
    match what {
        Rotated::ServiceAccount => {
            if store.contains_key(SA_NEXT_KEY) {
                Some(RotationStage::TrustBoth)
            } else if store.contains_key(SA_PREV_KEY) {
                Some(RotationStage::ReissueLeaves)
            } else {
                None
            }
        }
        _ => what.cas().into_iter().filter_map(|ca| stage_of(store, ca)).min(),
    }
}

/// The `PUBLIC KEY` blocks of `sa.pub`, in order.
fn public_keys(store: &Store) -> Result<Vec<Vec<u8>>, PkiError> {
    let pem = store.get(SA_PUB).ok_or_else(|| PkiError::NotGenerated { path: SA_PUB.into() })?;
    let blocks =
        pem_blocks(pem).map_err(|problem| PkiError::Unreadable { path: SA_PUB.into(), problem })?;
    Ok(blocks.into_iter().filter(|(l, _)| l == "PUBLIC KEY").map(|(_, d)| d).collect())
}

fn public_of(store: &Store, path: &str) -> Result<Vec<u8>, PkiError> {
    let pem = store.get(path).ok_or_else(|| PkiError::NotGenerated { path: path.into() })?;
    let pair = keys::load(pem, path)?;
    let pem = keys::public_pem(&pair);
    let blocks = pem_blocks(pem.as_bytes())
        .map_err(|problem| PkiError::Unreadable { path: path.into(), problem })?;
    Ok(blocks.into_iter().next().map(|(_, d)| d).unwrap_or_default())
}

fn pub_file(keys: &[&[u8]]) -> Vec<u8> {
    keys.iter().map(|d| pem_encode("PUBLIC KEY", d)).collect::<String>().into_bytes()
}

fn sa_out_of_order(stage: RotationStage, problem: String) -> PkiError {
    PkiError::BadRequest {
        what: format!("rotation of {SA_KEY} ({stage})"),
        problem: format!(
            "{problem}; the state dir is not where this stage starts (see `kubeforge certs rotate-ca --status`, and the files under pki-replaced/)"
        ),
    }
}

fn sa_stage(
    req: &PkiRequest,
    store: &Store,
    stage: RotationStage,
    now: OffsetDateTime,
    serials: &mut dyn SerialSource,
) -> Result<StageOutcome, PkiError> {
    let now = truncate(now);
    let signing = public_of(store, SA_KEY)?;
    let published = public_keys(store)?;
    let mut out = store.clone();
    let mut report = Report::default();
    let why = |s: RotationStage| Action::Reissued(vec![Reason::CaRotation(s.as_str().into())]);
    match stage {
        RotationStage::TrustBoth => {
            if store.contains_key(SA_PREV_KEY) {
                return Err(sa_out_of_order(
                    stage,
                    format!(
                        "{SA_PREV_KEY} exists: an earlier rotation has not dropped its old key"
                    ),
                ));
            }
            let next = if store.contains_key(SA_NEXT_KEY) {
                public_of(store, SA_NEXT_KEY)?
            } else {
                if published.len() != 1 {
                    return Err(sa_out_of_order(
                        stage,
                        format!("{SA_PUB} holds {} keys, expected one", published.len()),
                    ));
                }
                let pair = keys::generate(req.key_algorithm, SA_NEXT_KEY)?;
                out.insert(SA_NEXT_KEY.into(), keys::to_pem(&pair, SA_NEXT_KEY)?.into_bytes());
                report.push(SA_NEXT_KEY.into(), vec![SA_NEXT_KEY.into()], None, Action::Created);
                public_of(&out, SA_NEXT_KEY)?
            };
            let want = pub_file(&[&signing, &next]);
            if store.get(SA_PUB) != Some(&want) {
                out.insert(SA_PUB.into(), want);
                report.push(SA_PUB.into(), vec![SA_PUB.into()], None, why(stage));
            }
        }
        RotationStage::ReissueLeaves => {
            if store.contains_key(SA_NEXT_KEY) {
                let next = public_of(store, SA_NEXT_KEY)?;
                if published != [signing.clone(), next.clone()] {
                    return Err(sa_out_of_order(
                        stage,
                        format!(
                            "{SA_PUB} does not publish the current and the next key (run trust-both first)"
                        ),
                    ));
                }
                out.insert(SA_PREV_KEY.into(), store[SA_KEY].clone());
                report.push(SA_PREV_KEY.into(), vec![SA_PREV_KEY.into()], None, Action::Created);
                out.insert(SA_KEY.into(), store[SA_NEXT_KEY].clone());
                out.insert(SA_PUB.into(), pub_file(&[&next, &signing]));
                report.push(SA_KEY.into(), vec![SA_KEY.into(), SA_PUB.into()], None, why(stage));
                out.remove(SA_NEXT_KEY);
            } else if !store.contains_key(SA_PREV_KEY) || published.len() != 2 {
                return Err(sa_out_of_order(
                    stage,
                    format!(
                        "neither {SA_NEXT_KEY} nor {SA_PREV_KEY} with two keys in {SA_PUB} is in the store (run trust-both first)"
                    ),
                ));
            }
        }
        RotationStage::DropOld => {
            if store.contains_key(SA_NEXT_KEY) {
                return Err(sa_out_of_order(
                    stage,
                    format!("{SA_NEXT_KEY} exists (run reissue-leaves first)"),
                ));
            }
            let want = pub_file(&[&signing]);
            if store.get(SA_PUB) != Some(&want) {
                out.insert(SA_PUB.into(), want);
                report.push(SA_PUB.into(), vec![SA_PUB.into()], None, why(stage));
            }
            out.remove(SA_PREV_KEY);
        }
    }
    crate::stages::settle(req, store, &out, report, now, serials)
}
