//! `inspect_hosts` against fake hosts holding real certificates: matching, renewed-but-not-
//! applied (differs), missing, garbage and unreachable files, each reported per host and path.

use std::collections::BTreeMap;
use std::sync::Arc;

use kubeforge_pki::{ExpiryStatus, SeededSerials, Store};
use kubeforge_playbooks::pki_inputs::pki_request;
use kubeforge_playbooks::render::{RenderInput, RenderTree};
use kubeforge_playbooks::secrets::ClusterSecrets;
use time::OffsetDateTime;

use super::{OnHost, inspect_hosts, is_certificate_path};
use crate::transport::Transport;
use crate::transport::fake::{FakeFile, FakeHost};

const SPEC: &str = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata: {name: remote}
spec:
  kubernetesVersion: v1.33.1
  hosts:
    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
    - {name: w1, address: 10.0.0.21, roles: [worker]}
";

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap()
}

fn pki_tree(store: &Store) -> RenderTree {
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "remote.yaml").unwrap();
    let secrets = ClusterSecrets::generate(|b: &mut [u8]| -> Result<(), ()> {
        b.fill(3);
        Ok(())
    })
    .unwrap();
    let mut tree = RenderTree::default();
    let input = RenderInput { cluster: &cluster, pki: store, secrets: &secrets };
    kubeforge_playbooks::render::pki::add_files(input, &mut tree).unwrap();
    tree
}

/// The spec's PKI as issued with serials from `seed`: another seed gives another issue of the
/// same certificates (as a renewal would).
fn issued(seed: u64) -> Store {
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "remote.yaml").unwrap();
    let req = pki_request(&cluster);
    kubeforge_pki::generate(&req, &Store::new(), now(), &mut SeededSerials::new(seed))
        .unwrap()
        .store
}

#[test]
fn every_certificate_on_every_host_is_read_and_compared_with_the_state() {
    let (state, older) = (issued(1), issued(2));
    let tree = pki_tree(&state);
    let old_tree = pki_tree(&older);

    // cp1 holds the state's files except an older apiserver certificate and no admin.conf;
    // w1 is unreachable.
    let mut cp1_files = tree.hosts["cp1"].clone();
    cp1_files.remove("/etc/kubernetes/admin.conf");
    let old_apiserver = &old_tree.hosts["cp1"]["/etc/kubernetes/pki/apiserver.crt"].contents;
    let cp1 = cp1_files.into_iter().fold(FakeHost::new("cp1"), |host, (path, file)| {
        let bytes =
            if path.ends_with("/apiserver.crt") { old_apiserver.clone() } else { file.contents };
        host.with_file(path, FakeFile::new(bytes, file.mode))
    });
    let transports: BTreeMap<String, Arc<dyn Transport>> =
        [("cp1".to_string(), Arc::new(cp1) as Arc<dyn Transport>)].into();
    let unreachable = [("w1".to_string(), "w1: cannot connect".to_string())].into();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let certs = rt.block_on(inspect_hosts(&tree, &transports, &unreachable, &state, now()));
    let find = |host: &str, path: &str| {
        certs.iter().find(|c| c.host == host && c.path == path).unwrap_or_else(|| panic!("{path}"))
    };
    let apiserver = find("cp1", "/etc/kubernetes/pki/apiserver.crt");
    assert_eq!(apiserver.on_host, OnHost::Differs);
    let entry = apiserver.expiry.as_ref().expect("parsed");
    assert_eq!(entry.name, "apiserver");
    assert_eq!(entry.host.as_deref(), Some("cp1"));
    assert_eq!(entry.status, ExpiryStatus::Ok);
    assert_eq!(find("cp1", "/etc/kubernetes/pki/ca.crt").on_host, OnHost::Matches);
    let kubelet = find("cp1", "/etc/kubernetes/kubelet.conf");
    assert_eq!(kubelet.on_host, OnHost::Matches);
    assert!(kubelet.expiry.as_ref().unwrap().subject.contains("system:node:cp1"));
    assert_eq!(find("cp1", "/etc/kubernetes/admin.conf").on_host, OnHost::Missing);
    let w1 = find("w1", "/var/lib/kubelet/pki/kubelet.crt");
    assert!(matches!(&w1.on_host, OnHost::Unreadable(r) if r.contains("cannot connect")));
    // Keys are never read: only certificate paths are listed.
    assert!(certs.iter().all(|c| is_certificate_path(&c.path) && !c.path.ends_with(".key")));
    let cp1_listed = certs.iter().filter(|c| c.host == "cp1").count();
    let cp1_wanted = tree.hosts["cp1"].keys().filter(|p| is_certificate_path(p)).count();
    assert_eq!(cp1_listed, cp1_wanted);
}

#[test]
fn a_file_that_is_not_a_certificate_is_named_not_fatal() {
    let state = issued(5);
    let tree = pki_tree(&state);
    let w1 = FakeHost::new("w1")
        .with_file("/var/lib/kubelet/pki/kubelet.crt", FakeFile::new("garbage", 0o644));
    let transports: BTreeMap<String, Arc<dyn Transport>> =
        [("w1".to_string(), Arc::new(w1) as Arc<dyn Transport>)].into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let certs = rt.block_on(inspect_hosts(&tree, &transports, &BTreeMap::new(), &state, now()));
    let bad = certs
        .iter()
        .find(|c| c.host == "w1" && c.path == "/var/lib/kubelet/pki/kubelet.crt")
        .unwrap();
    assert!(matches!(&bad.on_host, OnHost::Unreadable(r) if r.contains("not a certificate")));
}

#[test]
fn served_certificates_are_read_through_forwards_and_compared_with_the_state() {
    use kubeforge_playbooks::render::served::served_endpoints;

    use super::served::inspect_served;
    use crate::tls_peek::tests::serve_tls;

    let (state, older) = (issued(1), issued(2));
    let tree = pki_tree(&state);
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "remote.yaml").unwrap();
    // cp1's etcd serves the state's certificate on its client port but still an older one on
    // its peer port (renewed, applied, not yet restarted); its apiserver is not running.
    let client = serve_tls(
        &state["nodes/cp1/etcd/server.crt"],
        &state["nodes/cp1/etcd/server.key"],
        Some(&state["etcd/ca.crt"]),
    );
    let peer =
        serve_tls(&older["nodes/cp1/etcd/peer.crt"], &older["nodes/cp1/etcd/peer.key"], None);
    let cp1 = FakeHost::new("cp1");
    cp1.expose("10.0.0.11:2379".parse().unwrap(), client);
    cp1.expose("10.0.0.11:2380".parse().unwrap(), peer);
    let transports: BTreeMap<String, Arc<dyn Transport>> =
        [("cp1".to_string(), Arc::new(cp1) as Arc<dyn Transport>)].into();
    let unreachable = [("w1".to_string(), "w1: cannot connect".to_string())].into();
    let endpoints = served_endpoints(&cluster);

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let served =
        rt.block_on(inspect_served(&endpoints, &tree, &transports, &unreachable, &state, now()));
    let listed: Vec<(&str, &str, Option<&str>, &OnHost)> = served
        .iter()
        .map(|c| (c.host.as_str(), c.path.as_str(), c.served_by, &c.on_host))
        .collect();
    let unreadable = OnHost::Unreadable("w1: cannot connect".into());
    assert_eq!(
        listed,
        [
            ("cp1", "https://10.0.0.11:2379", Some("etcd client"), &OnHost::Matches),
            ("cp1", "https://10.0.0.11:2380", Some("etcd peer"), &OnHost::Differs),
            ("cp1", "https://10.0.0.11:6443", Some("kube-apiserver"), &OnHost::NotServing),
            ("cp1", "https://10.0.0.11:10250", Some("kubelet"), &OnHost::NotServing),
            ("w1", "https://10.0.0.21:10250", Some("kubelet"), &unreadable),
        ]
    );
    let client = served[0].expiry.as_ref().expect("the served certificate is parsed");
    assert_eq!(client.name, "etcd/server");
    assert!(client.subject.contains("cp1"), "{}", client.subject);
    let peer = served[1].expiry.as_ref().expect("parsed");
    let state_peer = kubeforge_pki::check_expiration(&state, now())
        .unwrap()
        .into_iter()
        .find(|e| e.path == "nodes/cp1/etcd/peer.crt")
        .unwrap();
    assert_eq!(peer.subject, state_peer.subject, "same profile, another issue");
}

/// Mid-rotation (the state at `reissue-leaves` of the Kubernetes CA), a host still holding the
/// leaves of the old CA shows them signed by `ca-prev`, the reissued ones by `ca` (the new CA),
/// with the two CAs' key fingerprints apart; none is "externally managed".
#[test]
fn during_a_rotation_each_host_certificate_names_the_ca_that_signed_it() {
    use kubeforge_pki::{CaId, Rotated, RotationStage};
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "remote.yaml").unwrap();
    let req = pki_request(&cluster);
    let before = issued(1);
    let stage = |s: &Store, st| {
        let what = Rotated::Ca(CaId::Kubernetes);
        kubeforge_pki::rotate_stage(&req, s, what, st, now(), &mut SeededSerials::new(5))
            .unwrap()
            .store
    };
    let state = stage(&stage(&before, RotationStage::TrustBoth), RotationStage::ReissueLeaves);
    let tree = pki_tree(&state);
    let old_tree = pki_tree(&before);
    // cp1: the new files except the apiserver certificate, still the old CA's.
    let cp1 = tree.hosts["cp1"].iter().fold(FakeHost::new("cp1"), |host, (path, file)| {
        let bytes = if path.ends_with("/apiserver.crt") {
            old_tree.hosts["cp1"][path].contents.clone()
        } else {
            file.contents.clone()
        };
        host.with_file(path.clone(), FakeFile::new(bytes, file.mode))
    });
    let transports: BTreeMap<String, Arc<dyn Transport>> =
        [("cp1".to_string(), Arc::new(cp1) as Arc<dyn Transport>)].into();
    let unreachable = [("w1".to_string(), "w1: cannot connect".to_string())].into();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let certs = rt.block_on(inspect_hosts(&tree, &transports, &unreachable, &state, now()));
    let entry = |path: &str| {
        let c = certs.iter().find(|c| c.host == "cp1" && c.path == path).unwrap();
        c.expiry.clone().unwrap_or_else(|| panic!("{path}: {:?}", c.on_host))
    };
    let old = entry("/etc/kubernetes/pki/apiserver.crt");
    let new = entry("/etc/kubernetes/pki/apiserver-kubelet-client.crt");
    let conf = entry("/etc/kubernetes/admin.conf");
    let ca = entry("/etc/kubernetes/pki/ca.crt");
    assert_eq!(old.signed_by.as_deref(), Some("ca-prev"));
    assert_eq!(new.signed_by.as_deref(), Some("ca"));
    assert_eq!(conf.signed_by.as_deref(), Some("ca"));
    assert_eq!(ca.signed_by.as_deref(), Some("ca"), "the bundle's first CA signs now");
    assert_ne!(old.signer_key_id, new.signer_key_id);
    assert_eq!(new.signer_key_id, ca.signer_key_id);
    for e in [&old, &new, &conf, &ca] {
        assert!(!e.externally_managed, "{}", e.path);
    }
    // Key files are never read.
    assert!(certs.iter().all(|c| !c.path.ends_with(".key")));
}
