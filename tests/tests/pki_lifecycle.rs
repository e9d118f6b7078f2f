//! The PKI over time: idempotent generate, reissue of exactly the leaves a spec change affects
//! (with reasons), reissue near expiry, key-algorithm changes, renew, check-expiration,
//! externally managed and bring-your-own CAs, and the two-CA trust bundle of a rotation.

mod pki_common;

use std::collections::BTreeSet;

use kubeforge_pki::{
    Action, ExpiryStatus, PkiError, RenewSelection, SeededSerials, Store, TrustBundle,
    check_expiration, inspect_pem, plan_ca_rotation, renew,
};
use kubeforge_playbooks::pki_inputs::pki_request;
use pki_common::*;
use time::Duration;

/// Paths whose action is not `reused`, with the action verb.
fn changes(report: &kubeforge_pki::Report) -> BTreeSet<(String, String)> {
    report
        .entries
        .iter()
        .filter(|e| e.action != Action::Reused)
        .map(|e| (e.path.clone(), e.action.verb().to_string()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn generating_twice_changes_nothing() {
    let c = cluster("stacked");
    let first = fresh(&c);
    let again = generate(&c, &first, now() + Duration::days(3), 99);
    assert_eq!(again.store, first, "second run must give byte-identical files");
    assert!(again.report.is_unchanged(), "{}", again.report);
}

#[test]
fn spec_changes_reissue_only_the_affected_leaves_and_say_why() {
    let base = example("stacked");
    let first = fresh(&cluster_from(&base));
    let changed = base
        .replace("extraSANs: [api.prod-eu1.example.com]", "extraSANs: [api.prod-eu1.example.com, 192.0.2.7]")
        .replace("address: 10.88.0.12", "address: 10.88.0.42")
        .replace(
            "      ssh: {user: admin, port: 2222}    # per-host overrides of spec.ssh\n",
            "      ssh: {user: admin, port: 2222}\n    - name: worker3\n      address: 10.88.0.23\n      roles: [worker]\n",
        );
    let out = generate(&cluster_from(&changed), &first, now() + Duration::hours(1), 2);
    let expected = set(&[
        ("nodes/cp1/apiserver.crt", "reissued"),
        ("nodes/cp2/apiserver.crt", "reissued"),
        ("nodes/cp3/apiserver.crt", "reissued"),
        ("nodes/cp2/etcd/server.crt", "reissued"),
        ("nodes/cp2/etcd/peer.crt", "reissued"),
        ("nodes/cp2/kubelet.crt", "reissued"),
        // Same certificate, new local server URL.
        ("nodes/cp2/controller-manager.conf", "rewritten"),
        ("nodes/cp2/scheduler.conf", "rewritten"),
        ("nodes/cp2/kubelet.conf", "rewritten"),
        ("nodes/worker3/kubelet.conf", "created"),
        ("nodes/worker3/kubelet.crt", "created"),
    ]);
    assert_eq!(changes(&out.report), expected, "{}", out.report);
    let text = out.report.to_string();
    assert!(text.contains("nodes/cp1/apiserver.crt: SANs changed (+IP:192.0.2.7)"), "{text}");
    assert!(
        text.contains(
            "nodes/cp2/apiserver.crt: SANs changed (+IP:10.88.0.42, +IP:192.0.2.7, -IP:10.88.0.12)"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "nodes/cp2/scheduler.conf: server https://10.88.0.12:6443 → https://10.88.0.42:6443"
        ),
        "{text}"
    );
    // Everything else is byte-identical, and the replaced files are exactly those reported.
    let differing: BTreeSet<String> = first
        .iter()
        .filter(|(p, b)| out.store.get(*p) != Some(*b))
        .map(|(p, _)| p.clone())
        .collect();
    assert_eq!(differing, out.report.replaced_files());
    let facts = inspect_pem(&out.store["nodes/cp2/etcd/peer.crt"]).unwrap();
    assert!(facts.ip_addresses.contains(&"10.88.0.42".parse().unwrap()));
}

#[test]
fn leaves_near_expiry_are_reissued_cas_and_sa_key_are_not() {
    let c = cluster("stacked");
    let first = fresh(&c);
    let later = now() + Duration::days(340);
    let out = generate(&c, &first, later, 3);
    for entry in &out.report.entries {
        let is_leaf = entry.path.starts_with("nodes/") || entry.path == "super-admin.conf";
        if is_leaf {
            assert!(
                matches!(&entry.action, Action::Reissued(r) if r.iter().any(|r| r.to_string().starts_with("expires 2027-01-15"))),
                "{entry:?}"
            );
        } else {
            assert_eq!(entry.action, Action::Reused, "{entry:?}");
        }
    }
    assert_eq!(out.store["ca.key"], first["ca.key"]);
    assert_eq!(out.store["sa.key"], first["sa.key"]);
    let renewed = inspect_pem(&out.store["nodes/cp1/apiserver.crt"]).unwrap();
    assert_eq!(renewed.not_after, later + Duration::days(365));
}

#[test]
fn a_key_algorithm_change_reissues_leaves_and_notes_the_cas() {
    let base = example("stacked");
    let first = fresh(&cluster_from(&base));
    let p384 = cluster_from(&base.replace("keyAlgorithm: ecdsa-p256", "keyAlgorithm: ecdsa-p384"));
    let out = generate(&p384, &first, now(), 4);
    let reissued =
        out.report.entries.iter().filter(|e| matches!(e.action, Action::Reissued(_))).count();
    assert_eq!(reissued, 3 * 10 + 5 * 2 + 1);
    assert!(out.report.to_string().contains("key algorithm ecdsa-p256 → ecdsa-p384"));
    assert!(
        out.report.notes.iter().any(|n| n.contains("ca.crt has a ecdsa-p256 key")),
        "{:?}",
        out.report.notes
    );
    assert_eq!(out.store["ca.crt"], first["ca.crt"]);
}

#[test]
fn renew_all_keeps_subjects_and_sans_and_changes_every_serial_and_key() {
    let c = cluster("stacked");
    let first = fresh(&c);
    let later = now() + Duration::days(100);
    let out =
        renew(&pki_request(&c), &first, later, &mut SeededSerials::new(5), &RenewSelection::All)
            .unwrap();
    let leaves = leaf_paths(&first);
    assert_eq!(leaves.len(), 3 * 10 + 5 * 2 + 1);
    for path in &leaves {
        let (old, new) = (
            inspect_pem(&cert_of(&first, path)).unwrap(),
            inspect_pem(&cert_of(&out.store, path)).unwrap(),
        );
        assert_eq!(
            (old.subject(), &old.dns_names, &old.ip_addresses, &old.ext_key_usages),
            (new.subject(), &new.dns_names, &new.ip_addresses, &new.ext_key_usages),
            "{path}"
        );
        assert_ne!(old.serial_hex, new.serial_hex, "{path}");
        assert_ne!(old.spki_der, new.spki_der, "{path}: renew must create a new key");
        assert_eq!(new.not_after, later + Duration::days(365), "{path}");
    }
    for untouched in ["ca.crt", "ca.key", "front-proxy-ca.crt", "etcd/ca.crt", "sa.key", "sa.pub"] {
        assert_eq!(out.store[untouched], first[untouched], "{untouched}");
    }
    // The renewed set is what a following generate accepts as is.
    assert!(generate(&c, &out.store, later, 6).report.is_unchanged());
}

#[test]
fn renew_by_name_touches_only_those_leaves() {
    let c = cluster("stacked");
    let first = fresh(&c);
    let req = pki_request(&c);
    let pick =
        |names: &[&str]| RenewSelection::Names(names.iter().map(|s| s.to_string()).collect());
    let out = renew(
        &req,
        &first,
        now(),
        &mut SeededSerials::new(7),
        &pick(&["cp2/apiserver", "admin.conf"]),
    )
    .unwrap();
    let renewed: BTreeSet<String> = out.report.entries.iter().map(|e| e.path.clone()).collect();
    let want: BTreeSet<String> = [
        "nodes/cp2/apiserver.crt",
        "nodes/cp1/admin.conf",
        "nodes/cp2/admin.conf",
        "nodes/cp3/admin.conf",
    ]
    .map(String::from)
    .into();
    assert_eq!(renewed, want);
    let err =
        renew(&req, &first, now(), &mut SeededSerials::new(7), &pick(&["apiserverr"])).unwrap_err();
    assert!(
        matches!(err, PkiError::UnknownName { .. })
            && err.to_string().contains("apiserver-kubelet-client"),
        "{err}"
    );
    let err = renew(&req, &Store::new(), now(), &mut SeededSerials::new(7), &RenewSelection::All)
        .unwrap_err();
    assert!(err.to_string().contains("run `kubeforge certs generate` first"), "{err}");
}

#[test]
fn check_expiration_lists_everything_and_flags_what_is_close() {
    let store = fresh(&cluster("stacked"));
    let fine = check_expiration(&store, now()).unwrap();
    assert_eq!(
        fine.len(),
        store.keys().filter(|p| p.ends_with(".crt") || p.ends_with(".conf")).count()
    );
    assert!(fine.iter().all(|e| e.status == ExpiryStatus::Ok));
    let apiserver = fine.iter().find(|e| e.path == "nodes/cp1/apiserver.crt").unwrap();
    assert_eq!(
        (apiserver.host.as_deref(), apiserver.name.as_str(), apiserver.signer.as_str()),
        (Some("cp1"), "apiserver", "kubernetes")
    );
    assert_eq!(apiserver.residual(), "365d");
    let soon = check_expiration(&store, now() + Duration::days(350)).unwrap();
    let kinds: BTreeSet<_> = soon.iter().map(|e| (e.is_ca, e.status)).collect();
    assert_eq!(kinds, [(true, ExpiryStatus::Ok), (false, ExpiryStatus::Warning)].into());
    let late = check_expiration(&store, now() + Duration::days(400)).unwrap();
    assert!(
        late.iter()
            .filter(|e| !e.is_ca)
            .all(|e| e.status == ExpiryStatus::Expired && e.residual() == "expired")
    );
}

#[test]
fn a_ca_without_its_key_is_used_for_checks_and_missing_leaves_are_listed() {
    let base = example("stacked");
    let mut store = fresh(&cluster_from(&base));
    store.remove("ca.key");
    // Nothing to sign: fine, and said.
    let out = generate(&cluster_from(&base), &store, now(), 8);
    assert!(out.report.is_unchanged());
    assert!(out.report.notes.iter().any(|n| n.contains("externally managed")));
    // A new worker needs leaves from the cluster CA: a clear error naming them, nothing saved.
    let more = base.replace(
        "      ssh: {user: admin, port: 2222}    # per-host overrides of spec.ssh\n",
        "      ssh: {user: admin, port: 2222}\n    - name: worker3\n      address: 10.88.0.23\n      roles: [worker]\n",
    );
    let req = pki_request(&cluster_from(&more));
    let err = kubeforge_pki::generate(&req, &store, now(), &mut SeededSerials::new(9)).unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("ca.crt is present without ca.key"), "{msg}");
    assert!(msg.contains("nodes/worker3/kubelet.conf, nodes/worker3/kubelet.crt"), "{msg}");
    assert!(!msg.contains("worker1"), "{msg}");
}

/// An operator's own root CA made with openssl, key in PKCS#1 as `openssl genrsa -traditional`.
fn openssl_ca(dir: &std::path::Path, cn: &str) -> (Vec<u8>, Vec<u8>) {
    let (crt, key) = (dir.join(format!("{cn}.crt")), dir.join(format!("{cn}.key")));
    let run = openssl(&["genrsa", "-traditional", "-out", key.to_str().unwrap(), "2048"]);
    assert!(run.ok, "{}", run.stderr);
    let run = openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        key.to_str().unwrap(),
        "-out",
        crt.to_str().unwrap(),
        "-days",
        "3650",
        "-subj",
        &format!("/CN={cn}"),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    assert!(run.ok, "{}", run.stderr);
    (std::fs::read(crt).unwrap(), std::fs::read(key).unwrap())
}

#[test]
fn a_bring_your_own_ca_signs_everything_it_covers() {
    let tmp = tempfile::tempdir().unwrap();
    let (crt, key) = openssl_ca(tmp.path(), "corp-root");
    assert!(key.starts_with(b"-----BEGIN RSA PRIVATE KEY-----"));
    let mut store = Store::new();
    store.insert("ca.crt".into(), crt.clone());
    store.insert("ca.key".into(), key.clone());
    let out = generate(&cluster("stacked"), &store, now(), 10);
    assert_eq!(
        (&out.store["ca.crt"], &out.store["ca.key"]),
        (&crt, &key),
        "a placed CA is never replaced"
    );
    assert!(
        out.report.notes.iter().any(|n| n.contains("ca.crt has a rsa-2048 key")),
        "{:?}",
        out.report.notes
    );
    let dir = tmp.path().join("pki");
    write_store(&dir, &out.store);
    let ca = dir.join("ca.crt");
    let mut checked = 0;
    for path in leaf_paths(&out.store) {
        let facts = inspect_pem(&cert_of(&out.store, &path)).unwrap();
        if facts.issuer_common_name != "corp-root" {
            continue;
        }
        let file = dir.join(format!("{path}.pem"));
        std::fs::write(&file, cert_of(&out.store, &path)).unwrap();
        let run = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), file.to_str().unwrap()]);
        assert!(run.ok, "{path}: {}", run.stderr);
        // Leaves keep the spec's key type; only the signature is RSA.
        assert_eq!(facts.key_algorithm, Some(kubeforge_pki::KeyAlgorithm::EcdsaP256));
        checked += 1;
    }
    // Per control plane: apiserver, kubelet client, 3 kubeconfigs; per node 2; super-admin.
    assert_eq!(checked, 3 * 5 + 5 * 2 + 1);
    // Kubeconfigs carry the placed CA.
    let admin =
        kubeforge_pki::kubeconfig::Kubeconfig::parse(&out.store["nodes/cp1/admin.conf"]).unwrap();
    assert_eq!(admin.ca_pem, crt);
}

#[test]
fn a_placed_certificate_that_is_not_a_ca_is_refused() {
    let store = fresh(&cluster("stacked"));
    let mut bad = Store::new();
    bad.insert("ca.crt".into(), store["nodes/cp1/apiserver.crt"].clone());
    bad.insert("ca.key".into(), store["nodes/cp1/apiserver.key"].clone());
    let err = kubeforge_pki::generate(
        &pki_request(&cluster("stacked")),
        &bad,
        now(),
        &mut SeededSerials::new(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ca.crt: is not a CA certificate"), "{err}");
    let mut mismatched = store.clone();
    mismatched.insert("ca.key".into(), store["etcd/ca.key"].clone());
    let err = kubeforge_pki::generate(
        &pki_request(&cluster("stacked")),
        &mismatched,
        now(),
        &mut SeededSerials::new(1),
    )
    .unwrap_err();
    assert!(err.to_string().contains("ca.key: does not belong to ca.crt"), "{err}");
}

#[test]
fn a_rotation_bundle_trusts_leaves_of_both_cas() {
    let c = cluster("stacked");
    let old = fresh(&c);
    let new = generate(&c, &Store::new(), now(), 11).store;
    let bundle = TrustBundle::from_pems(&[&old["ca.crt"], &new["ca.crt"]]).unwrap();
    assert_eq!(bundle.len(), 2);
    let leaf_old = &old["nodes/cp1/apiserver.crt"];
    let leaf_new = &new["nodes/cp1/apiserver.crt"];
    assert!(bundle.trusts(leaf_old) && bundle.trusts(leaf_new));
    let only_new = TrustBundle::from_pems(&[&new["ca.crt"]]).unwrap();
    assert!(!only_new.trusts(leaf_old));
    let dir = tempfile::tempdir().unwrap();
    let bundle_file = dir.path().join("bundle.crt");
    std::fs::write(&bundle_file, bundle.pem()).unwrap();
    for (name, leaf) in [("old.crt", leaf_old), ("new.crt", leaf_new)] {
        let file = dir.path().join(name);
        std::fs::write(&file, leaf).unwrap();
        let run =
            openssl(&["verify", "-CAfile", bundle_file.to_str().unwrap(), file.to_str().unwrap()]);
        assert!(run.ok, "{name}: {}", run.stderr);
    }
    let plan = plan_ca_rotation(&pki_request(&c), &old, now()).unwrap();
    let names: Vec<&str> = plan.phases.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        ["prepare", "trust-both", "reissue-leaves", "rolling-restart", "drop-old-ca"]
    );
    let text = plan.to_string();
    let first_cp = text.find("  - cp1: install ca.crt").unwrap();
    let first_worker = text.find("  - worker1: install ca.crt bundle").unwrap();
    assert!(first_cp < first_worker, "{text}");
}

#[test]
fn an_intermediate_ca_with_its_chain_signs_leaves_that_verify_to_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n).to_str().unwrap().to_string();
    let (root_crt, _) = openssl_ca(tmp.path(), "corp-root");
    let ext = tmp.path().join("ext.cnf");
    std::fs::write(
        &ext,
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,digitalSignature\n",
    )
    .unwrap();
    for args in [
        vec!["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &d("int.key")],
        vec![
            "req",
            "-new",
            "-key",
            &d("int.key"),
            "-subj",
            "/CN=corp-k8s-intermediate",
            "-out",
            &d("int.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &d("int.csr"),
            "-CA",
            &d("corp-root.crt"),
            "-CAkey",
            &d("corp-root.key"),
            "-CAcreateserial",
            "-days",
            "1825",
            "-extfile",
            ext.to_str().unwrap(),
            "-out",
            &d("int.crt"),
        ],
    ] {
        let run = openssl(&args);
        assert!(run.ok, "{args:?}: {}", run.stderr);
    }
    let int_key = std::fs::read(d("int.key")).unwrap();
    assert!(int_key.starts_with(b"-----BEGIN EC PRIVATE KEY-----"), "SEC1 key expected");
    let mut chain = std::fs::read(d("int.crt")).unwrap();
    chain.extend_from_slice(&root_crt);
    let mut store = Store::new();
    store.insert("ca.crt".into(), chain.clone());
    store.insert("ca.key".into(), int_key);
    let out = generate(&cluster("stacked"), &store, now(), 12);
    assert_eq!(out.store["ca.crt"], chain);
    let leaf = tmp.path().join("apiserver.crt");
    std::fs::write(&leaf, &out.store["nodes/cp1/apiserver.crt"]).unwrap();
    let run = openssl(&[
        "verify",
        "-CAfile",
        &d("corp-root.crt"),
        "-untrusted",
        &d("int.crt"),
        leaf.to_str().unwrap(),
    ]);
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        inspect_pem(&out.store["nodes/cp1/apiserver.crt"]).unwrap().issuer_common_name,
        "corp-k8s-intermediate"
    );
    // Running again reuses everything: the chain file is understood on reload.
    assert!(generate(&cluster("stacked"), &out.store, now(), 13).report.is_unchanged());
}
