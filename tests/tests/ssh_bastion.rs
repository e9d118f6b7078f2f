//! Reaching a host through a bastion (ProxyJump over `direct-tcpip`) with real sshds: both
//! hops' host keys are recorded (the bastion under its address, as `ssh -J` does; the hosts
//! under spec name and address), the bastion connection is shared, later runs find the bastion's
//! key again instead of recording it anew, a replaced bastion key is refused, and a bastion that
//! forbids forwarding makes the connection fail with an error naming the bastion.

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
    assert_eq!(lines(&recorded), expected_lines(&bastion, &[("a", &node_a), ("b", &node_b)]));
}

/// The known_hosts lines, sorted (a and b connect in parallel with each other's runs).
fn lines(text: &str) -> Vec<String> {
    let mut l: Vec<String> = text.lines().map(str::to_string).collect();
    l.sort();
    l
}

/// Exactly one line for the bastion, under its address only; one per host, under its spec
/// name and address.
fn expected_lines(bastion: &Sshd, hosts: &[(&str, &Sshd)]) -> Vec<String> {
    let mut l = vec![format!("[127.0.0.1]:{} {}", bastion.port(), bastion.host_public_key())];
    for (name, sshd) in hosts {
        l.push(format!("{name},[127.0.0.1]:{} {}", sshd.port(), sshd.host_public_key()));
    }
    l.sort();
    l
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bastion_key_is_pinned_across_runs_and_a_replaced_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let kh = dir.path().join("known_hosts");
    let bastion = start(&key, &[]);
    let node = start(&key, &[]);
    // Three runs, each a fresh connector as a new `kubeforge` process would be.
    for run in 1..=3 {
        let t = SshConnector::new(ConnectOptions::default())
            .connect_ssh(&via("w1", &node, &bastion, &key, &kh))
            .await
            .unwrap_or_else(|e| panic!("run {run}: {e}"));
        assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());
        let recorded = std::fs::read_to_string(&kh).unwrap();
        assert_eq!(lines(&recorded), expected_lines(&bastion, &[("w1", &node)]), "run {run}");
    }
    // strict now finds the bastion (and the host) in the file.
    let mut strict = via("w1", &node, &bastion, &key, &kh);
    strict.host_key_policy = HostKeyPolicy::Strict;
    SshConnector::new(ConnectOptions::default()).connect_ssh(&strict).await.unwrap();

    // The bastion is reinstalled (or impersonated): same address and port, another host key.
    let before = std::fs::read_to_string(&kh).unwrap();
    let old_fingerprint = bastion.host_fingerprint();
    let port = bastion.port();
    drop(bastion);
    let impostor = Sshd::start(SshdOptions {
        authorized: vec![("root".into(), vec![key.public.clone()])],
        port: Some(port),
        ..Default::default()
    });
    let node_log_before = node.log().matches("Accepted publickey").count();
    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&via("w1", &node, &impostor, &key, &kh))
        .await
        .unwrap_err();
    let TransportError::HostKeyChanged(change) = &err else { panic!("{err}") };
    assert_eq!(change.host, format!("bastion 127.0.0.1:{port} (for w1)"));
    assert_eq!(change.known_hosts_name, format!("[127.0.0.1]:{port}"));
    let bastion_line = before
        .lines()
        .position(|l| l.starts_with(&format!("[127.0.0.1]:{port} ")))
        .expect("bastion line")
        + 1;
    assert_eq!(change.line, bastion_line);
    assert_eq!(
        (change.expected.as_str(), change.offered.as_str()),
        (old_fingerprint.as_str(), impostor.host_fingerprint().as_str())
    );
    assert!(err.is_host_key_refusal());
    let msg = err.to_string();
    assert!(
        msg.contains("bastion") && msg.contains(&format!("{}:{bastion_line} ", kh.display())),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), before, "nothing recorded or replaced");
    assert!(!impostor.log().contains("Accepted publickey"), "no credentials sent to the impostor");
    assert_eq!(node.log().matches("Accepted publickey").count(), node_log_before);
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
