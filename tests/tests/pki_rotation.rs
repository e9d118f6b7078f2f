//! The CA rotation's stages checked with the real `openssl verify`, as the components meet them:
//! for every CA (etcd, kubernetes, front-proxy, and all three together) the CA file on the nodes
//! trusts the old and the new leaves (kubeconfigs' client certificates included) while both
//! must work, every leaf chains to the new CA after `reissue-leaves`, and after `drop-old` only
//! the new ones verify. The service-account key: published beside the old, signing switched,
//! the old removed, checked with `openssl dgst` signatures. Also: every stage's store is kept as
//! it is by `generate` (what `apply` runs in the middle of a rotation).

mod pki_common;

use std::path::Path;

use kubeforge_pki::{
    CaId, Rotated, RotationStage, SeededSerials, Store, rotate_stage, rotation_stage,
};
use kubeforge_playbooks::model::Cluster;
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
    for (name, what) in [("stacked", None), ("external", None)]
        .into_iter()
        .chain(Rotated::ALL.map(|r| ("stacked", Some(r))))
    {
        let cluster = cluster(name);
        let mut store = fresh(&cluster);
        for st in RotationStage::ALL {
            store = match what {
                None => stage(&cluster, &store, st),
                Some(w) => rotated_stage(&cluster, &store, w, st),
            };
            let again = generate(&cluster, &store, now(), 99);
            assert!(again.report.is_unchanged(), "{name} {st}: generate changed\n{}", again.report);
            assert_eq!(again.store, store, "{name} {st}");
        }
    }
}

/// `openssl verify -CAfile <ca> <cert>` on files written to `dir` (`name`.pem).
fn verify_pem(dir: &Path, name: &str, ca: &[u8], cert: &[u8]) -> (bool, String) {
    let (ca_file, cert_file) =
        (dir.join(format!("{name}.ca.pem")), dir.join(format!("{name}.pem")));
    std::fs::write(&ca_file, ca).unwrap();
    std::fs::write(&cert_file, cert).unwrap();
    let run =
        openssl(&["verify", "-CAfile", ca_file.to_str().unwrap(), cert_file.to_str().unwrap()]);
    (run.ok, format!("{}{}", run.stdout, run.stderr))
}

fn rotated_stage(cluster: &Cluster, store: &Store, what: Rotated, st: RotationStage) -> Store {
    rotate_stage(
        &pki_request(cluster),
        store,
        what,
        st,
        now(),
        &mut SeededSerials::new(30 + st as u64),
    )
    .unwrap_or_else(|e| panic!("{what} {st}: {e}"))
    .store
}

/// For one CA (store base `base`) rotated as `what`: every leaf it signs (kubeconfigs' client
/// certificates included) checked with openssl against the CA file of each stage.
fn check_trust(cluster: &Cluster, what: Rotated, base: &str, kubeconfigs: usize) {
    let before = fresh(cluster);
    let a = rotated_stage(cluster, &before, what, RotationStage::TrustBoth);
    let b = rotated_stage(cluster, &a, what, RotationStage::ReissueLeaves);
    let c = rotated_stage(cluster, &b, what, RotationStage::DropOld);
    let ca_file = format!("{base}.crt");
    let (old_ca, new_ca) = (before[&ca_file].clone(), a[&format!("{base}-next.crt")].clone());
    let tmp = tempfile::tempdir().unwrap();
    // The leaves of this CA: those the old CA alone verifies before the rotation.
    let leaves: Vec<String> = leaf_paths(&before)
        .into_iter()
        .filter(|p| verify_pem(tmp.path(), "probe", &old_ca, &cert_of(&before, p)).0)
        .collect();
    let confs = leaves.iter().filter(|p| p.ends_with(".conf")).count();
    assert_eq!(confs, kubeconfigs, "{what}: {leaves:?}");
    assert!(!leaves.is_empty());
    for (i, leaf) in leaves.iter().enumerate() {
        let n = format!("l{i}");
        let (old, new) = (cert_of(&before, leaf), cert_of(&b, leaf));
        assert_ne!(old, new, "{what}: {leaf} was not reissued");
        // trust-both: the bundle trusts old leaves (still in use) and the next stage's new ones.
        let (ok, out) = verify_pem(tmp.path(), &n, &a[&ca_file], &old);
        assert!(ok, "{what} trust-both: old {leaf}: {out}");
        let (ok, out) = verify_pem(tmp.path(), &n, &a[&ca_file], &new);
        assert!(ok, "{what} trust-both: new {leaf}: {out}");
        // reissue-leaves: every leaf chains to the new CA alone, none to the old alone.
        let (ok, out) = verify_pem(tmp.path(), &n, &new_ca, &new);
        assert!(ok, "{what} reissue-leaves: {leaf} not chained to the new CA: {out}");
        let (ok, _) = verify_pem(tmp.path(), &n, &old_ca, &new);
        assert!(!ok, "{what} reissue-leaves: {leaf} verifies against the old CA");
        let (ok, out) = verify_pem(tmp.path(), &n, &b[&ca_file], &old);
        assert!(ok, "{what} reissue-leaves: old {leaf} rejected while still trusted: {out}");
        // drop-old: new leaves verify, old-CA leaves fail.
        let (ok, out) = verify_pem(tmp.path(), &n, &c[&ca_file], &cert_of(&c, leaf));
        assert!(ok, "{what} drop-old: {leaf}: {out}");
        let (ok, out) = verify_pem(tmp.path(), &n, &c[&ca_file], &old);
        assert!(!ok, "{what} drop-old: old {leaf} still verifies: {out}");
        // A kubeconfig trusts what the CA file trusts at each stage.
        if leaf.ends_with(".conf") && base == "ca" {
            for (st, s) in [("trust-both", &a), ("reissue-leaves", &b), ("drop-old", &c)] {
                let k = kubeforge_pki::kubeconfig::Kubeconfig::parse(&s[leaf]).unwrap();
                assert_eq!(k.ca_pem, s[&ca_file], "{st}: {leaf} certificate-authority-data");
            }
        }
    }
    assert_eq!(c[&ca_file], new_ca, "{what}: drop-old leaves the new CA alone");
}

#[test]
fn kubernetes_and_front_proxy_stages_trust_what_must_work_and_drop_old_rejects_old_leaves() {
    let cluster = cluster("stacked");
    let (cps, nodes) = (
        cluster.control_planes().count(),
        cluster.hosts.iter().filter(|h| h.runs_kubelet()).count(),
    );
    // admin, controller-manager, scheduler per control plane, kubelet.conf per node, super-admin.
    check_trust(&cluster, Rotated::Ca(CaId::Kubernetes), "ca", 3 * cps + nodes + 1);
    check_trust(&cluster, Rotated::Ca(CaId::FrontProxy), "front-proxy-ca", 0);
}

#[test]
fn all_rotates_the_three_cas_together_stage_by_stage() {
    let cluster = cluster("stacked");
    check_trust(&cluster, Rotated::AllCas, "ca", 3 * 3 + 5 + 1);
    check_trust(&cluster, Rotated::AllCas, "front-proxy-ca", 0);
    check_trust(&cluster, Rotated::AllCas, "etcd/ca", 0);
    let before = fresh(&cluster);
    let a = rotated_stage(&cluster, &before, Rotated::AllCas, RotationStage::TrustBoth);
    assert_eq!(
        kubeforge_pki::stage_of_rotated(&a, Rotated::AllCas),
        Some(RotationStage::TrustBoth)
    );
    for ca in CaId::ALL {
        assert_eq!(kubeforge_pki::stage_of(&a, ca), Some(RotationStage::TrustBoth), "{ca:?}");
    }
}

/// The service-account key: published beside the old, then signing switched, then the old
/// removed. A token is modelled by `openssl dgst -sign` with the signing key and verified with
/// each public key `sa.pub` publishes, as kube-apiserver tries each.
#[test]
fn sa_key_is_published_then_switched_then_the_old_removed() {
    let cluster = cluster("stacked");
    let before = fresh(&cluster);
    let a = rotated_stage(&cluster, &before, Rotated::ServiceAccount, RotationStage::TrustBoth);
    let b = rotated_stage(&cluster, &a, Rotated::ServiceAccount, RotationStage::ReissueLeaves);
    let c = rotated_stage(&cluster, &b, Rotated::ServiceAccount, RotationStage::DropOld);
    let keys = |s: &Store| {
        String::from_utf8(s["sa.pub"].clone()).unwrap().matches("BEGIN PUBLIC KEY").count()
    };
    assert_eq!((keys(&before), keys(&a), keys(&b), keys(&c)), (1, 2, 2, 1));
    // publish: the old key still signs; the new one is only published.
    assert_eq!(a["sa.key"], before["sa.key"]);
    assert!(a.contains_key("sa-next.key"));
    // switch: the new key signs, the old is kept as sa-prev.key until drop-old.
    assert_eq!(b["sa.key"], a["sa-next.key"]);
    assert_eq!(b["sa-prev.key"], before["sa.key"]);
    assert!(!b.contains_key("sa-next.key"));
    // drop: the new key alone.
    assert_eq!(c["sa.key"], b["sa.key"]);
    assert!(!c.contains_key("sa-prev.key"));
    // Nothing else changes: no CA, no leaf.
    for (p, bytes) in &before {
        if !p.starts_with("sa") {
            assert_eq!(c.get(p), Some(bytes), "{p} changed");
        }
    }
    assert_eq!(
        kubeforge_pki::stage_of_rotated(&a, Rotated::ServiceAccount),
        Some(RotationStage::TrustBoth)
    );
    assert_eq!(
        kubeforge_pki::stage_of_rotated(&b, Rotated::ServiceAccount),
        Some(RotationStage::ReissueLeaves)
    );
    assert_eq!(kubeforge_pki::stage_of_rotated(&c, Rotated::ServiceAccount), None);

    let tmp = tempfile::tempdir().unwrap();
    let sign = |name: &str, key: &[u8]| -> std::path::PathBuf {
        let (k, sig, data) = (
            tmp.path().join(format!("{name}.key")),
            tmp.path().join(format!("{name}.sig")),
            tmp.path().join("token"),
        );
        std::fs::write(&data, b"a token").unwrap();
        std::fs::write(&k, key).unwrap();
        let run = openssl(&[
            "dgst",
            "-sha256",
            "-sign",
            k.to_str().unwrap(),
            "-out",
            sig.to_str().unwrap(),
            data.to_str().unwrap(),
        ]);
        assert!(run.ok, "{}", run.stderr);
        sig
    };
    // Whether any key of `sa.pub` verifies the signature (kube-apiserver tries each).
    let accepted = |published: &[u8], sig: &std::path::Path| -> bool {
        let text = String::from_utf8(published.to_vec()).unwrap();
        text.split_inclusive("-----END PUBLIC KEY-----\n").enumerate().any(|(i, one)| {
            let p = tmp.path().join(format!("pub{i}.pem"));
            std::fs::write(&p, one).unwrap();
            openssl(&[
                "dgst",
                "-sha256",
                "-verify",
                p.to_str().unwrap(),
                "-signature",
                sig.to_str().unwrap(),
                tmp.path().join("token").to_str().unwrap(),
            ])
            .ok
        })
    };
    let old_token = sign("old", &before["sa.key"]);
    let new_token = sign("new", &b["sa.key"]);
    assert!(accepted(&before["sa.pub"], &old_token));
    assert!(!accepted(&before["sa.pub"], &new_token), "the new key is new");
    // publish: both accepted, so switching signing on one apiserver breaks none of the others.
    assert!(accepted(&a["sa.pub"], &old_token) && accepted(&a["sa.pub"], &new_token));
    // switch: both still accepted (tokens issued before stay valid until drop-old).
    assert!(accepted(&b["sa.pub"], &old_token) && accepted(&b["sa.pub"], &new_token));
    // drop: old tokens rejected.
    assert!(accepted(&c["sa.pub"], &new_token));
    assert!(!accepted(&c["sa.pub"], &old_token));
    // generate keeps every stage (what apply runs mid-rotation).
    for (st, s) in [("a", &a), ("b", &b), ("c", &c)] {
        let again = generate(&cluster, s, now(), 5);
        assert!(again.report.is_unchanged(), "{st}: {}", again.report);
    }
}
