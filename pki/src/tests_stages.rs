use super::*;
use crate::SeededSerials;
use crate::inspect::inspect_pem;
use crate::request::{ApiServerNames, ControlPlane, EtcdMember, Node};

fn request() -> PkiRequest {
    let hosts = [("cp1", "10.0.0.1"), ("cp2", "10.0.0.2"), ("cp3", "10.0.0.3")];
    PkiRequest {
        cluster_name: "t".into(),
        key_algorithm: crate::KeyAlgorithm::EcdsaP256,
        certificate_validity: std::time::Duration::from_secs(86_400 * 365),
        ca_validity: std::time::Duration::from_secs(86_400 * 3650),
        api_server: ApiServerNames {
            service_ip: "10.96.0.1".parse().unwrap(),
            cluster_domain: "cluster.local".into(),
            endpoint_host: None,
            vip: Some("10.0.0.100".parse().unwrap()),
            extra_sans: vec![],
        },
        cluster_server: "https://10.0.0.100:6443".into(),
        control_planes: hosts
            .iter()
            .map(|(n, a)| ControlPlane {
                name: n.to_string(),
                address: a.parse().unwrap(),
                local_server: format!("https://{a}:6443"),
            })
            .collect(),
        etcd_members: hosts
            .iter()
            .map(|(n, a)| EtcdMember { name: n.to_string(), address: a.parse().unwrap() })
            .collect(),
        nodes: hosts
            .iter()
            .map(|(n, a)| Node {
                name: n.to_string(),
                address: a.parse().unwrap(),
                kubelet_server: format!("https://{a}:6443"),
            })
            .collect(),
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
}

fn fresh() -> Store {
    crate::generate(&request(), &Store::new(), now(), &mut SeededSerials::new(1)).unwrap().store
}

fn stage(store: &Store, st: RotationStage, seed: u64) -> StageOutcome {
    rotation_stage(&request(), store, CaId::Etcd, st, now(), &mut SeededSerials::new(seed))
        .unwrap_or_else(|e| panic!("{st}: {e}"))
}

/// Every etcd-CA leaf file of the stacked request.
fn etcd_leaves() -> Vec<String> {
    let mut out = Vec::new();
    for h in ["cp1", "cp2", "cp3"] {
        for rel in ["etcd/server", "etcd/peer", "etcd/healthcheck-client", "apiserver-etcd-client"]
        {
            out.push(format!("nodes/{h}/{rel}"));
        }
    }
    out
}

fn certs(store: &Store, path: &str) -> Vec<Vec<u8>> {
    certs_in(store, path).unwrap()
}

fn all_stages(store: &Store) -> [StageOutcome; 3] {
    let a = stage(store, RotationStage::TrustBoth, 2);
    let b = stage(&a.store, RotationStage::ReissueLeaves, 3);
    let c = stage(&b.store, RotationStage::DropOld, 4);
    [a, b, c]
}

#[test]
fn stages_move_trust_then_leaves_then_drop_the_old_ca() {
    let before = fresh();
    let old = certs(&before, "etcd/ca.crt");
    assert_eq!(old.len(), 1);
    let [a, b, c] = all_stages(&before);

    // trust-both: bundle old + new, old still signs, leaves untouched.
    let new = certs(&a.store, "etcd/ca-next.crt");
    assert_eq!(certs(&a.store, "etcd/ca.crt"), vec![old[0].clone(), new[0].clone()]);
    assert_ne!(old[0], new[0]);
    assert_eq!(a.store["etcd/ca.key"], before["etcd/ca.key"]);
    for leaf in etcd_leaves() {
        for ext in ["crt", "key"] {
            assert_eq!(a.store[&format!("{leaf}.{ext}")], before[&format!("{leaf}.{ext}")]);
        }
    }
    assert!(a.retired.is_empty());
    assert!(a.report.replaced_files().contains("etcd/ca.crt"));
    assert_eq!(stage_of(&a.store, CaId::Etcd), Some(RotationStage::TrustBoth));

    // reissue-leaves: new CA signs (first in the bundle, its key is etcd/ca.key), every leaf
    // re-signed with a new key and the same names; the old CA kept as etcd/ca-prev.*.
    assert_eq!(certs(&b.store, "etcd/ca.crt"), vec![new[0].clone(), old[0].clone()]);
    assert_eq!(b.store["etcd/ca.key"], a.store["etcd/ca-next.key"]);
    assert_eq!(b.store["etcd/ca-prev.key"], before["etcd/ca.key"]);
    assert_eq!(certs(&b.store, "etcd/ca-prev.crt"), old);
    assert_eq!(b.retired, vec!["etcd/ca-next.crt".to_string(), "etcd/ca-next.key".to_string()]);
    let new_ca = inspect_der(&new[0]).unwrap();
    let old_ca = inspect_der(&old[0]).unwrap();
    for leaf in etcd_leaves() {
        let (was, now_) = (&before[&format!("{leaf}.crt")], &b.store[&format!("{leaf}.crt")]);
        let (was, is) = (inspect_pem(was).unwrap(), inspect_pem(now_).unwrap());
        assert!(signed_by(&is.der, &new_ca.spki_der), "{leaf} not signed by the new CA");
        assert!(!signed_by(&is.der, &old_ca.spki_der));
        assert_eq!(
            (was.subject(), &was.dns_names, &was.ip_addresses, &was.ext_key_usages),
            (is.subject(), &is.dns_names, &is.ip_addresses, &is.ext_key_usages),
            "{leaf}"
        );
        assert_ne!(was.spki_der, is.spki_der, "{leaf} kept its key");
        assert!(b.report.replaced_files().contains(&format!("{leaf}.key")));
    }
    // Other CAs' leaves are not touched.
    assert_eq!(b.store["nodes/cp1/apiserver.crt"], before["nodes/cp1/apiserver.crt"]);
    assert_eq!(b.store["ca.crt"], before["ca.crt"]);
    assert_eq!(stage_of(&b.store, CaId::Etcd), Some(RotationStage::ReissueLeaves));

    // drop-old: the new CA alone; the old CA's files retired.
    assert_eq!(certs(&c.store, "etcd/ca.crt"), vec![new[0].clone()]);
    assert_eq!(c.store["etcd/ca.key"], b.store["etcd/ca.key"]);
    assert_eq!(c.retired, vec!["etcd/ca-prev.crt".to_string(), "etcd/ca-prev.key".to_string()]);
    for leaf in etcd_leaves() {
        assert_eq!(c.store[&format!("{leaf}.crt")], b.store[&format!("{leaf}.crt")]);
    }
    assert_eq!(stage_of(&c.store, CaId::Etcd), None);
}

/// What `apply` does in the middle of a rotation: `generate` keeps each stage's store as it is
/// (no bundle folded back to one CA, no leaf re-signed by the old CA).
#[test]
fn generate_keeps_every_stage_as_it_is() {
    let before = fresh();
    for (i, out) in all_stages(&before).into_iter().enumerate() {
        let again =
            crate::generate(&request(), &out.store, now(), &mut SeededSerials::new(9)).unwrap();
        assert!(again.report.is_unchanged(), "stage {i}: generate changed\n{}", again.report);
        assert_eq!(again.store, out.store, "stage {i}");
    }
}

#[test]
fn each_stage_is_idempotent_and_finishes_a_half_done_leaf_roll_out() {
    let before = fresh();
    let [a, b, c] = all_stages(&before);
    let a2 = stage(&a.store, RotationStage::TrustBoth, 5);
    assert_eq!(a2.store, a.store);
    assert!(a2.report.replaced_files().is_empty());
    let b2 = stage(&b.store, RotationStage::ReissueLeaves, 6);
    assert_eq!(b2.store, b.store, "leaves already signed by the new CA are kept");
    let c2 = stage(&c.store, RotationStage::DropOld, 7);
    assert_eq!(c2.store, c.store);

    // Interrupted after the CA switch with one leaf still from the old CA: the rerun reissues
    // exactly that one.
    let mut half = b.store.clone();
    for ext in ["crt", "key"] {
        let p = format!("nodes/cp2/etcd/peer.{ext}");
        half.insert(p.clone(), before[&p].clone());
    }
    let done = stage(&half, RotationStage::ReissueLeaves, 8);
    let changed: Vec<String> = done.report.replaced_files().into_iter().collect();
    assert_eq!(changed, vec!["nodes/cp2/etcd/peer.crt", "nodes/cp2/etcd/peer.key"]);
}

#[test]
fn stages_out_of_order_are_refused_without_changes() {
    let before = fresh();
    let [a, _, _] = all_stages(&before);
    let mut serials = SeededSerials::new(1);
    let req = request();
    for (store, st) in [(&before, RotationStage::ReissueLeaves), (&a.store, RotationStage::DropOld)]
    {
        let err = rotation_stage(&req, store, CaId::Etcd, st, now(), &mut serials).unwrap_err();
        assert!(err.to_string().contains("rotate-ca --status"), "{st}: {err}");
    }
    // drop-old with a leaf still from the old CA.
    let b = stage(&a.store, RotationStage::ReissueLeaves, 3);
    let mut half = b.store.clone();
    half.insert("nodes/cp1/etcd/server.crt".into(), before["nodes/cp1/etcd/server.crt"].clone());
    half.insert("nodes/cp1/etcd/server.key".into(), before["nodes/cp1/etcd/server.key"].clone());
    let err = rotation_stage(&req, &half, CaId::Etcd, RotationStage::DropOld, now(), &mut serials)
        .unwrap_err();
    assert!(err.to_string().contains("nodes/cp1/etcd/server.crt"), "{err}");
    // An externally managed CA cannot be rotated.
    let mut external = before.clone();
    external.remove("etcd/ca.key");
    let err =
        rotation_stage(&req, &external, CaId::Etcd, RotationStage::TrustBoth, now(), &mut serials)
            .unwrap_err();
    assert!(matches!(err, PkiError::ExternallyManaged { .. }), "{err}");
}
