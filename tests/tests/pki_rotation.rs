//! The etcd CA rotation's stages checked with the real `openssl verify`, as etcd and its clients
//! meet them: the CA file on the nodes (`etcd/ca.crt`) trusts the old and the new leaves while
//! both must work, and after `drop-old` only the new ones. Also: every stage's store is kept as
//! it is by `generate` (what `apply` runs in the middle of a rotation).

mod pki_common;

use std::path::Path;

use kubeforge_pki::{CaId, RotationStage, SeededSerials, Store, rotation_stage};
use kubeforge_playbooks::pki_inputs::pki_request;
use pki_common::*;

const LEAVES: [&str; 4] =
    ["etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"];

fn stage(cluster: &kubeforge_playbooks::model::Cluster, store: &Store, st: RotationStage) -> Store {
    let seed = 10 + st as u64;
    rotation_stage(
        &pki_request(cluster),
        store,
        CaId::Etcd,
        st,
        now(),
        &mut SeededSerials::new(seed),
    )
    .unwrap_or_else(|e| panic!("{st}: {e}"))
    .store
}

/// Writes `store` under `dir/<name>/` and returns that folder.
fn written(dir: &Path, name: &str, store: &Store) -> std::path::PathBuf {
    let at = dir.join(name);
    write_store(&at, store);
    at
}

/// `openssl verify -CAfile <ca_dir>/etcd/ca.crt <leaf_dir>/nodes/<host>/<leaf>.crt`.
fn verifies(ca_dir: &Path, leaf_dir: &Path, host: &str, leaf: &str) -> (bool, String) {
    let ca = ca_dir.join("etcd/ca.crt");
    let cert = leaf_dir.join(format!("nodes/{host}/{leaf}.crt"));
    let run = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), cert.to_str().unwrap()]);
    (run.ok, format!("{}{}", run.stdout, run.stderr))
}

fn members(cluster: &kubeforge_playbooks::model::Cluster) -> Vec<String> {
    cluster.etcd_members().map(|h| h.name.clone()).collect()
}

/// Each host's etcd leaves that exist in the store (apiserver-etcd-client only on control
/// planes, which in the stacked example are the members).
fn each_leaf(store: &Store, hosts: &[String], mut f: impl FnMut(&str, &str)) -> usize {
    let mut n = 0;
    for h in hosts {
        for leaf in LEAVES {
            if store.contains_key(&format!("nodes/{h}/{leaf}.crt")) {
                f(h, leaf);
                n += 1;
            }
        }
    }
    n
}

#[test]
fn each_stage_trusts_what_must_work_and_drop_old_rejects_old_leaves() {
    let cluster = cluster("stacked");
    let hosts = members(&cluster);
    let before = fresh(&cluster);
    let a = stage(&cluster, &before, RotationStage::TrustBoth);
    let b = stage(&cluster, &a, RotationStage::ReissueLeaves);
    let c = stage(&cluster, &b, RotationStage::DropOld);
    let tmp = tempfile::tempdir().unwrap();
    let (d0, da, db, dc) = (
        written(tmp.path(), "before", &before),
        written(tmp.path(), "a", &a),
        written(tmp.path(), "b", &b),
        written(tmp.path(), "c", &c),
    );

    // The CA files: before and after, one certificate; during, two.
    let count = |d: &Path| {
        std::fs::read_to_string(d.join("etcd/ca.crt")).unwrap().matches("BEGIN CERTIFICATE").count()
    };
    assert_eq!((count(&d0), count(&da), count(&db), count(&dc)), (1, 2, 2, 1));

    let checked = each_leaf(&before, &hosts, |h, leaf| {
        // trust-both: old leaves (still served) and the new leaves of the next stage both
        // verify against the bundle every member loads at its restart.
        let (ok, out) = verifies(&da, &d0, h, leaf);
        assert!(ok, "trust-both: old {h}/{leaf} rejected: {out}");
        let (ok, out) = verifies(&da, &db, h, leaf);
        assert!(ok, "trust-both: new {h}/{leaf} rejected: {out}");
        // A new leaf against the old CA alone fails: why the bundle must come first.
        let (ok, _) = verifies(&d0, &db, h, leaf);
        assert!(!ok, "new {h}/{leaf} verified against the old CA alone");
        // reissue-leaves: the bundle still trusts both (members not yet reloaded).
        let (ok, out) = verifies(&db, &d0, h, leaf);
        assert!(ok, "reissue-leaves: old {h}/{leaf} rejected: {out}");
        let (ok, out) = verifies(&db, &db, h, leaf);
        assert!(ok, "reissue-leaves: new {h}/{leaf} rejected: {out}");
        // drop-old: new leaves verify, old leaves fail.
        let (ok, out) = verifies(&dc, &dc, h, leaf);
        assert!(ok, "drop-old: new {h}/{leaf} rejected: {out}");
        let (ok, out) = verifies(&dc, &d0, h, leaf);
        assert!(!ok, "drop-old: old {h}/{leaf} still verifies: {out}");
        assert!(out.contains("unable to get local issuer certificate"), "{out}");
    });
    assert_eq!(checked, hosts.len() * LEAVES.len());

    // The outgoing CA is what the old leaves chain to; the new CA file is the incoming one.
    let prev = db.join("etcd/ca-prev.crt");
    let old_leaf = d0.join(format!("nodes/{}/etcd/server.crt", hosts[0]));
    let run = openssl(&["verify", "-CAfile", prev.to_str().unwrap(), old_leaf.to_str().unwrap()]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        std::fs::read(da.join("etcd/ca-next.crt")).unwrap(),
        std::fs::read(dc.join("etcd/ca.crt")).unwrap()
    );
    // Other CAs are untouched throughout.
    for f in ["ca.crt", "front-proxy-ca.crt", "ca.key"] {
        assert_eq!(before[f], c[f], "{f}");
    }
}

#[test]
fn generate_keeps_every_stage_so_apply_mid_rotation_renders_that_stage() {
    for name in ["stacked", "external"] {
        let cluster = cluster(name);
        let mut store = fresh(&cluster);
        for st in RotationStage::ALL {
            store = stage(&cluster, &store, st);
            let again = generate(&cluster, &store, now(), 99);
            assert!(again.report.is_unchanged(), "{name} {st}: generate changed\n{}", again.report);
            assert_eq!(again.store, store, "{name} {st}");
        }
    }
}
