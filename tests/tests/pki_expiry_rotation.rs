//! `certs check-expiration` during and after a CA rotation: which CA signs each certificate is
//! found by signature, so the old and the new CA (same name) are told apart — leaves of the old
//! CA show `…-prev` once the new one signs, the incoming CA shows as `…-next` — and the CA
//! files of a rotation (`-next`, `-prev`) are judged by their own keys, never "externally
//! managed" because another CA's key is missing.

mod pki_common;

use std::collections::BTreeMap;

use kubeforge_pki::{
    CaId, ExpiryEntry, Rotated, RotationStage, SeededSerials, Store, rotate_stage,
};
use kubeforge_playbooks::pki_inputs::pki_request;
use pki_common::*;

fn entries(store: &Store) -> BTreeMap<String, ExpiryEntry> {
    kubeforge_pki::check_expiration(store, now())
        .unwrap()
        .into_iter()
        .map(|e| (e.path.clone(), e))
        .collect()
}

fn signed(e: &BTreeMap<String, ExpiryEntry>, path: &str) -> (String, String) {
    let x = e.get(path).unwrap_or_else(|| panic!("{path}"));
    (x.signed_by.clone().unwrap_or_default(), x.signer_key_id.clone().unwrap_or_default())
}

#[test]
fn every_stage_names_the_ca_that_signed_each_certificate() {
    let cluster = cluster("stacked");
    let req = pki_request(&cluster);
    let what = Rotated::AllCas;
    let st = |s: &Store, stage| {
        rotate_stage(&req, s, what, stage, now(), &mut SeededSerials::new(4)).unwrap().store
    };
    let before = fresh(&cluster);
    let a = st(&before, RotationStage::TrustBoth);
    let b = st(&a, RotationStage::ReissueLeaves);
    let c = st(&b, RotationStage::DropOld);
    let (e0, ea, eb, ec) = (entries(&before), entries(&a), entries(&b), entries(&c));
    for (base, leaf) in [
        ("etcd/ca", "nodes/cp1/etcd/server.crt"),
        ("ca", "nodes/cp1/apiserver.crt"),
        ("ca", "nodes/cp1/admin.conf"),
        ("front-proxy-ca", "nodes/cp1/front-proxy-client.crt"),
    ] {
        let (next, prev) = (format!("{base}-next"), format!("{base}-prev"));
        let old_id = signed(&e0, &format!("{base}.crt")).1;
        let new_id = signed(&ea, &format!("{next}.crt")).1;
        assert_ne!(old_id, new_id, "{base}");
        assert_eq!(signed(&e0, leaf), (base.to_string(), old_id.clone()), "before {leaf}");
        // trust-both: the incoming CA is its own, the leaves still the old CA's.
        assert_eq!(signed(&ea, &format!("{next}.crt")), (next.clone(), new_id.clone()));
        assert_eq!(signed(&ea, leaf), (base.to_string(), old_id.clone()), "trust-both {leaf}");
        // reissue-leaves: the new CA signs (first in the bundle); the old one is `-prev`.
        assert_eq!(signed(&eb, leaf), (base.to_string(), new_id.clone()), "reissue {leaf}");
        assert_eq!(signed(&eb, &format!("{prev}.crt")), (prev.clone(), old_id.clone()));
        // An old leaf left on a host at that point shows the outgoing CA.
        let mut half = b.clone();
        half.insert(leaf.to_string(), before[leaf].clone());
        assert_eq!(signed(&entries(&half), leaf), (prev.clone(), old_id.clone()), "{leaf}");
        // drop-old: the new CA alone.
        assert_eq!(signed(&ec, leaf), (base.to_string(), new_id.clone()), "drop-old {leaf}");
        assert!(!ec.contains_key(&format!("{prev}.crt")));
    }
    for e in [&ea, &eb, &ec] {
        for (path, x) in e {
            assert!(!x.externally_managed, "{path} shows as externally managed");
        }
    }
}

#[test]
fn rotation_files_are_judged_by_their_own_keys() {
    // The Kubernetes CA externally managed (no ca.key), the etcd CA rotated by kubeforge: the
    // incoming etcd CA and the etcd leaves are kubeforge's, the Kubernetes CA's leaves are not.
    let cluster = cluster("stacked");
    let req = pki_request(&cluster);
    let before = fresh(&cluster);
    let what = Rotated::Ca(CaId::Etcd);
    let mut a = rotate_stage(
        &req,
        &before,
        what,
        RotationStage::TrustBoth,
        now(),
        &mut SeededSerials::new(2),
    )
    .unwrap()
    .store;
    a.remove("ca.key");
    let e = entries(&a);
    assert!(!e["etcd/ca-next.crt"].externally_managed);
    assert!(!e["etcd/ca.crt"].externally_managed);
    assert!(!e["nodes/cp1/etcd/peer.crt"].externally_managed);
    assert!(e["ca.crt"].externally_managed);
    assert!(e["nodes/cp1/apiserver.crt"].externally_managed);
}
