//! Reaching a host through a bastion (ProxyJump over `direct-tcpip`) with two real sshds: both
//! hops' host keys are recorded, the bastion connection is shared, and a bastion that forbids
//! forwarding makes the connection fail with an error naming the bastion.

use kubeforge::transport::ssh::SshConnector;
use kubeforge::transport::{
    BastionTarget, ConnectOptions, HostKeyPolicy, RemoteCommand, SshTarget, Transport,
    TransportError,
};
use kubeforge_tests::sshd::{KeyPair, Sshd, SshdOptions, keygen};

fn start(key: &KeyPair, extra: &[&str]) -> Sshd {
    Sshd::start(SshdOptions {
        authorized: vec![("root".into(), vec![key.public.clone()])],
        extra_config: extra.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    })
}

fn via(
    name: &str,
    target: &Sshd,
    bastion: &Sshd,
    key: &KeyPair,
    kh: &std::path::Path,
) -> SshTarget {
    SshTarget {
        host: name.into(),
        address: "127.0.0.1".into(),
        port: target.port(),
        user: "root".into(),
        identity_file: Some(key.private.clone()),
        known_hosts_file: kh.to_path_buf(),
        host_key_policy: HostKeyPolicy::AcceptNew,
        bastion: Some(BastionTarget {
            address: "127.0.0.1".into(),
            port: bastion.port(),
            user: "root".into(),
            identity_file: Some(key.private.clone()),
        }),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_behind_a_bastion_are_reached_through_one_shared_bastion_connection() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let kh = dir.path().join("known_hosts");
    let bastion = start(&key, &[]);
    let node_a = start(&key, &[]);
    let node_b = start(&key, &[]);
    let connector = SshConnector::new(ConnectOptions::default());
    let a = connector.connect_ssh(&via("a", &node_a, &bastion, &key, &kh)).await.unwrap();
    let b = connector.connect_ssh(&via("b", &node_b, &bastion, &key, &kh)).await.unwrap();
    for t in [&a, &b] {
        let out = t.run(&RemoteCommand::shell("echo $SSH_CONNECTION")).await.unwrap();
        assert!(out.success());
    }
    // The nodes' sshds saw connections coming out of the bastion's forwarding, and the
    // bastion authenticated us once for both.
    assert_eq!(bastion.log().matches("Accepted publickey").count(), 1, "{}", bastion.log());
    assert_eq!(node_a.log().matches("Accepted publickey").count(), 1);
    assert_eq!(node_b.log().matches("Accepted publickey").count(), 1);
    let recorded = std::fs::read_to_string(&kh).unwrap();
    for sshd in [&bastion, &node_a, &node_b] {
        assert!(
            recorded.contains(&format!("[127.0.0.1]:{} {}", sshd.port(), sshd.host_public_key())),
            "{recorded}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bastion_that_refuses_forwarding_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let kh = dir.path().join("known_hosts");
    let bastion = start(&key, &["DisableForwarding yes"]);
    let node = start(&key, &[]);
    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&via("w1", &node, &bastion, &key, &kh))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Ssh { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("w1") && msg.contains("bastion"), "{msg}");
    assert!(!node.log().contains("Accepted publickey"), "the node was never reached directly");
}
