//! Host key checking against a real sshd: accept-new records the key in OpenSSH's format (the
//! real `ssh` client accepts our file), strict refuses unknown hosts, and a changed key is
//! refused with both fingerprints, the file and line, and the fix.

use kubeforge::transport::ssh::SshConnector;
use kubeforge::transport::{
    ConnectOptions, HostKeyPolicy, RemoteCommand, SshTarget, Transport, TransportError,
};
use kubeforge_tests::sshd::{KeyPair, Sshd, SshdOptions, keygen};

fn start(key: &KeyPair, port: Option<u16>) -> Sshd {
    Sshd::start(SshdOptions {
        authorized: vec![("root".into(), vec![key.public.clone()])],
        port,
        ..Default::default()
    })
}

fn target(
    sshd: &Sshd,
    key: &KeyPair,
    known_hosts: &std::path::Path,
    policy: HostKeyPolicy,
) -> SshTarget {
    SshTarget {
        host: "cp1".into(),
        address: "127.0.0.1".into(),
        port: sshd.port(),
        user: "root".into(),
        identity_file: Some(key.private.clone()),
        known_hosts_file: known_hosts.to_path_buf(),
        host_key_policy: policy,
        bastion: None,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn strict_refuses_unknown_and_accept_new_records_in_openssh_format() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let sshd = start(&key, None);
    let kh = dir.path().join("state/known_hosts");

    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&target(&sshd, &key, &kh, HostKeyPolicy::Strict))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::HostKeyUnknown { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&sshd.host_fingerprint()) && msg.contains("accept-new"), "{msg}");
    assert!(!kh.exists(), "strict never writes known_hosts");

    let t = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&target(&sshd, &key, &kh, HostKeyPolicy::AcceptNew))
        .await
        .unwrap();
    assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());
    let recorded = std::fs::read_to_string(&kh).unwrap();
    let port = sshd.port();
    // Bound to the spec's host name as well as the address.
    assert_eq!(recorded, format!("cp1,[127.0.0.1]:{port} {}\n", sshd.host_public_key()));

    // Now strict accepts it, and so does OpenSSH's own client with StrictHostKeyChecking=yes.
    SshConnector::new(ConnectOptions::default())
        .connect_ssh(&target(&sshd, &key, &kh, HostKeyPolicy::Strict))
        .await
        .unwrap();
    let ssh = std::process::Command::new("ssh")
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "IdentitiesOnly=yes",
        ])
        .arg("-o")
        .arg(format!("UserKnownHostsFile={}", kh.display()))
        .arg("-i")
        .arg(&key.private)
        .args(["-p", &sshd.port().to_string(), "root@127.0.0.1", "true"])
        .output()
        .unwrap();
    assert!(
        ssh.status.success(),
        "ssh rejected our known_hosts: {}",
        String::from_utf8_lossy(&ssh.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_host_key_is_refused_even_under_accept_new() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let kh = dir.path().join("known_hosts");
    std::fs::write(&kh, "# managed by kubeforge\n").unwrap();
    let mut first = start(&key, None);
    let port = first.port();
    let old_fp = first.host_fingerprint();
    SshConnector::new(ConnectOptions::default())
        .connect_ssh(&target(&first, &key, &kh, HostKeyPolicy::AcceptNew))
        .await
        .unwrap();
    first.kill();
    let before = std::fs::read_to_string(&kh).unwrap();

    // The "same machine", reinstalled: same address and port, new host key.
    let second = start(&key, Some(port));
    let new_fp = second.host_fingerprint();
    assert_ne!(old_fp, new_fp);
    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&target(&second, &key, &kh, HostKeyPolicy::AcceptNew))
        .await
        .unwrap_err();
    let TransportError::HostKeyChanged(change) = &err else {
        panic!("expected HostKeyChanged, got {err}")
    };
    assert_eq!(
        (change.expected.as_str(), change.offered.as_str(), change.line),
        (old_fp.as_str(), new_fp.as_str(), 2)
    );
    let msg = err.to_string();
    for needle in [
        &old_fp,
        &new_fp,
        &format!("{}:2", kh.display()),
        &format!("ssh-keygen -R '[127.0.0.1]:{port}'"),
    ] {
        assert!(msg.contains(needle.as_str()), "missing {needle:?} in: {msg}");
    }
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), before, "known_hosts untouched");
    assert!(!second.log().contains("Accepted publickey"), "we never authenticated to the impostor");
}

/// Two machines, each known under its spec name; a spec that swaps their addresses reaches each
/// address's own (known) key, and is refused on the name before anything runs.
#[tokio::test]
async fn a_spec_with_swapped_addresses_is_refused_by_the_name_binding() {
    let dir = tempfile::tempdir().unwrap();
    let key = keygen(&dir.path().join("id"), "ed25519");
    let (one, two) = (start(&key, None), start(&key, None));
    let kh = dir.path().join("known_hosts");
    let named = |name: &str, sshd: &Sshd| SshTarget {
        host: name.into(),
        ..target(sshd, &key, &kh, HostKeyPolicy::AcceptNew)
    };
    let connector = SshConnector::new(ConnectOptions::default());
    connector.connect_ssh(&named("cp1", &one)).await.unwrap();
    connector.connect_ssh(&named("cp2", &two)).await.unwrap();
    let before = std::fs::read_to_string(&kh).unwrap();
    let logins = |sshd: &Sshd| sshd.log().matches("Accepted publickey").count();
    let logins_before = logins(&two);

    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&named("cp1", &two))
        .await
        .unwrap_err();
    let TransportError::HostKeyChanged(change) = &err else {
        panic!("expected HostKeyChanged, got {err}")
    };
    assert_eq!((change.host.as_str(), change.known_hosts_name.as_str()), ("cp1", "cp1"));
    assert_eq!(
        (change.expected.as_str(), change.offered.as_str()),
        (one.host_fingerprint().as_str(), two.host_fingerprint().as_str())
    );
    assert!(err.to_string().contains("another machine's address"), "{err}");
    assert_eq!(std::fs::read_to_string(&kh).unwrap(), before, "known_hosts untouched");
    assert_eq!(logins(&two), logins_before, "never authenticated to it as cp1");
}
