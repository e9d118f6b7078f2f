//! Key sources against a real sshd and a real ssh-agent: agent keys, the agent's copy of an
//! encrypted identity file, default `~/.ssh/id_*` files, and the error for an encrypted key the
//! agent does not hold.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kubeforge::transport::ssh::SshConnector;
use kubeforge::transport::{
    ConnectOptions, HostKeyPolicy, RemoteCommand, SshTarget, Transport, TransportError,
};
use kubeforge_tests::sshd::{Sshd, SshdOptions, keygen};

/// An ssh-agent we started, on its own socket; killed on drop.
struct Agent {
    child: Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "ssh-agent did not create its socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, socket }
    }

    /// `ssh-add FILE`, answering a passphrase prompt through SSH_ASKPASS.
    fn add(&self, key: &Path, passphrase: &str, dir: &Path) {
        let askpass = dir.join("askpass.sh");
        std::fs::write(&askpass, format!("#!/bin/sh\necho '{passphrase}'\n")).unwrap();
        std::fs::set_permissions(&askpass, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .env("SSH_ASKPASS", &askpass)
            .env("SSH_ASKPASS_REQUIRE", "force")
            .env("DISPLAY", ":0")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "ssh-add: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn target(sshd: &Sshd, identity: Option<PathBuf>, dir: &Path) -> SshTarget {
    SshTarget {
        host: "w1".into(),
        address: "127.0.0.1".into(),
        port: sshd.port(),
        user: "root".into(),
        identity_file: identity,
        known_hosts_file: dir.join("known_hosts"),
        host_key_policy: HostKeyPolicy::AcceptNew,
        bastion: None,
    }
}

fn options(agent: Option<&Agent>, key_dir: &Path) -> ConnectOptions {
    ConnectOptions {
        agent_socket: agent.map(|a| a.socket.clone()),
        default_key_dir: Some(key_dir.to_path_buf()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_keys_encrypted_keys_and_default_key_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let empty = d.join("empty-ssh-dir");
    std::fs::create_dir_all(&empty).unwrap();
    let agent_key = keygen(&d.join("agent_key"), "ecdsa");
    let default_dir = d.join("home-ssh");
    std::fs::create_dir_all(&default_dir).unwrap();
    let default_key = keygen(&default_dir.join("id_ed25519"), "ed25519");
    let locked = d.join("locked");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "s3cret", "-C", "locked", "-f"])
        .arg(&locked)
        .status()
        .unwrap();
    assert!(st.success());
    let locked_pub = std::fs::read_to_string(d.join("locked.pub")).unwrap().trim().to_string();
    let sshd = Sshd::start(SshdOptions {
        authorized: vec![(
            "root".into(),
            vec![agent_key.public.clone(), default_key.public.clone(), locked_pub],
        )],
        ..Default::default()
    });
    let agent = Agent::start(d);
    agent.add(&agent_key.private, "", d);

    // 1. No identity file: the agent's ECDSA key.
    let t = SshConnector::new(options(Some(&agent), &empty))
        .connect_ssh(&target(&sshd, None, d))
        .await
        .unwrap();
    assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());
    assert!(sshd.log().contains("ECDSA SHA256:"), "{}", sshd.log());

    // 2. No agent, no identity file: ~/.ssh/id_ed25519.
    let t = SshConnector::new(options(None, &default_dir))
        .connect_ssh(&target(&sshd, None, d))
        .await
        .unwrap();
    assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());

    // 3. An encrypted identity file without the agent: a clear error, no prompt.
    let err = SshConnector::new(options(None, &empty))
        .connect_ssh(&target(&sshd, Some(locked.clone()), d))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Key { .. }), "{err}");
    assert!(err.to_string().contains("ssh-add"), "{err}");

    // 4. The same file once the agent holds it: the agent signs for it.
    agent.add(&locked, "s3cret", d);
    let t = SshConnector::new(options(Some(&agent), &empty))
        .connect_ssh(&target(&sshd, Some(locked.clone()), d))
        .await
        .unwrap();
    assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());

    // 5. Nothing at all: the error says what was (not) tried.
    let err = SshConnector::new(options(None, &empty))
        .connect_ssh(&target(&sshd, None, d))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("no keys"), "{err}");
}
