//! The SSH transport against a real OpenSSH sshd started on a free loopback port: key auth
//! (ed25519, RSA), exit codes and separate stderr, stdin, atomic put_file with mode/owner and
//! sha256 skip, sudo for non-root users, bounded channels, timeouts, a dropped connection and
//! port forwarding. Host keys and bastions are in ssh_hostkeys.rs and ssh_bastion.rs.
//! Needs root, openssh-server, openssh-client and sudo (tests/setup.sh).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use kubeforge::transport::ssh::SshConnector;
use kubeforge::transport::{
    ConnectOptions, FileContents, HostKeyPolicy, PutFile, PutOutcome, RemoteCommand, SshTarget,
    Transport, TransportError,
};
use kubeforge_tests::sshd::{KeyPair, Sshd, SshdOptions, Sudo, ensure_user, keygen};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SUDO_USER: &str = "kftest";
const PASSWORD_SUDO_USER: &str = "kftestpw";

struct Lab {
    dir: tempfile::TempDir,
    sshd: Sshd,
    ed25519: KeyPair,
    rsa: KeyPair,
}

fn users() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        ensure_user(SUDO_USER, Sudo::NoPassword);
        ensure_user(PASSWORD_SUDO_USER, Sudo::PasswordRequired);
    });
}

fn lab() -> Lab {
    users();
    let dir = tempfile::tempdir().unwrap();
    let ed25519 = keygen(&dir.path().join("id_ed25519"), "ed25519");
    let rsa = keygen(&dir.path().join("id_rsa"), "rsa");
    let sshd = Sshd::start(SshdOptions {
        authorized: vec![
            ("root".into(), vec![ed25519.public.clone(), rsa.public.clone()]),
            (SUDO_USER.into(), vec![ed25519.public.clone()]),
            (PASSWORD_SUDO_USER.into(), vec![ed25519.public.clone()]),
        ],
        ..Default::default()
    });
    Lab { dir, sshd, ed25519, rsa }
}

impl Lab {
    fn target(&self, user: &str, key: &KeyPair) -> SshTarget {
        SshTarget {
            host: "node1".into(),
            address: "127.0.0.1".into(),
            port: self.sshd.port(),
            user: user.into(),
            identity_file: Some(key.private.clone()),
            known_hosts_file: self.dir.path().join("known_hosts"),
            host_key_policy: HostKeyPolicy::AcceptNew,
            bastion: None,
        }
    }

    async fn root(&self) -> Arc<kubeforge::transport::ssh::SshTransport> {
        SshConnector::new(ConnectOptions::default())
            .connect_ssh(&self.target("root", &self.ed25519))
            .await
            .unwrap()
    }

    /// A scratch directory that the remote side (same machine) writes into.
    fn scratch(&self) -> PathBuf {
        let p = self.dir.path().join("remote");
        std::fs::create_dir_all(&p).unwrap();
        p
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn ed25519_and_rsa_keys_authenticate_and_exit_codes_and_stderr_stay_separate() {
    let lab = lab();
    let connector = SshConnector::new(ConnectOptions::default());
    let t = connector.connect_ssh(&lab.target("root", &lab.ed25519)).await.unwrap();
    let out = t.run(&RemoteCommand::shell("echo out; echo err >&2; exit 3")).await.unwrap();
    assert_eq!(
        (out.exit_status, out.stdout_lossy().as_str(), out.stderr_lossy().as_str()),
        (3, "out\n", "err\n")
    );
    let err = out.check("node1", &RemoteCommand::shell("x")).unwrap_err().to_string();
    assert!(err.contains("exited with status 3") && err.contains("err"), "{err}");

    // argv is quoted: nothing is interpreted by the remote shell.
    let out = t.run(&RemoteCommand::new(["printf", "%s|", "a b", "$HOME", "it's"])).await.unwrap();
    assert_eq!(out.stdout_lossy(), "a b|$HOME|it's|");

    let rsa = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&lab.target("root", &lab.rsa))
        .await
        .unwrap();
    assert_eq!(rsa.run(&RemoteCommand::new(["id", "-un"])).await.unwrap().stdout_lossy(), "root\n");
    assert!(
        lab.sshd.log().contains("Accepted publickey for root from 127.0.0.1"),
        "{}",
        lab.sshd.log()
    );
    assert!(lab.sshd.log().contains("RSA SHA256:"), "RSA key was used: {}", lab.sshd.log());

    // An unauthorised key is refused with what was tried.
    let stranger = keygen(&lab.dir.path().join("id_stranger"), "ed25519");
    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&lab.target("root", &stranger))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("id_stranger"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_is_streamed_to_the_command() {
    let lab = lab();
    let t = lab.root().await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let out = t.run(&RemoteCommand::new(["sha256sum"]).with_stdin(data.clone())).await.unwrap();
    assert!(out.success());
    assert_eq!(&out.stdout_lossy()[..64], kubeforge::transport::sha256_hex(&data));
    // Both directions at once (stdin larger than any window, stdout just as large).
    let out = t.run(&RemoteCommand::new(["cat"]).with_stdin(data.clone())).await.unwrap();
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn put_file_is_atomic_sets_mode_and_owner_and_skips_unchanged() {
    let lab = lab();
    let t = lab.root().await;
    let dir = lab.scratch();
    let path = dir.join("etc/kubernetes/admin.conf");
    let file = PutFile::bytes(s(&path), b"v1\n".to_vec(), 0o640).owned_by("root", SUDO_USER);
    assert_eq!(t.put_file(&file).await.unwrap(), PutOutcome::Written);
    let meta = std::fs::metadata(&path).unwrap();
    assert_eq!(meta.mode() & 0o7777, 0o640);
    let gid = std::process::Command::new("id").args(["-g", SUDO_USER]).output().unwrap();
    assert_eq!(meta.gid().to_string(), String::from_utf8_lossy(&gid.stdout).trim());
    assert_eq!(t.put_file(&file).await.unwrap(), PutOutcome::Unchanged);

    let old_handle = std::fs::File::open(&path).unwrap();
    let inode_before = meta.ino();
    let v2 = PutFile::bytes(s(&path), b"v2\n".to_vec(), 0o600);
    assert_eq!(t.put_file(&v2).await.unwrap(), PutOutcome::Written);
    assert_eq!(std::fs::read(&path).unwrap(), b"v2\n");
    // Replaced by rename, not rewritten in place: the old inode still holds the old bytes.
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode_before);
    let mut old = String::new();
    std::io::Read::read_to_string(&mut &old_handle, &mut old).unwrap();
    assert_eq!(old, "v1\n");

    let v2_public = PutFile { mode: 0o644, ..v2.clone() };
    assert_eq!(t.put_file(&v2_public).await.unwrap(), PutOutcome::MetadataChanged);
    assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o7777, 0o644);

    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(leftovers, vec!["admin.conf".to_string()], "no temporary files left behind");

    assert_eq!(t.read_file(&s(&path)).await.unwrap().unwrap(), b"v2\n");
    assert_eq!(
        t.file_sha256(&s(&path)).await.unwrap().unwrap(),
        kubeforge::transport::sha256_hex(b"v2\n")
    );
    assert_eq!(t.read_file(&s(&dir.join("missing"))).await.unwrap(), None);
    assert_eq!(t.file_sha256(&s(&dir.join("missing"))).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn large_local_files_are_streamed_and_verified() {
    let lab = lab();
    let t = lab.root().await;
    let local = lab.dir.path().join("big.bin");
    let data: Vec<u8> =
        (0..24 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote = lab.scratch().join("usr/local/bin/containerd");
    let file = PutFile {
        path: s(&remote),
        contents: FileContents::LocalFile(local.clone()),
        mode: 0o755,
        owner: "root".into(),
        group: "root".into(),
        secret: false,
    };
    let started = Instant::now();
    assert_eq!(t.put_file(&file).await.unwrap(), PutOutcome::Written);
    eprintln!("24 MiB upload over loopback SSH: {:?}", started.elapsed());
    assert!(std::fs::read(&remote).unwrap() == data);
    assert_eq!(t.put_file(&file).await.unwrap(), PutOutcome::Unchanged);
}

#[tokio::test(flavor = "multi_thread")]
async fn non_root_user_runs_as_root_through_sudo_or_gets_a_clear_error() {
    let lab = lab();
    let t = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&lab.target(SUDO_USER, &lab.ed25519))
        .await
        .unwrap();
    assert_eq!(t.run(&RemoteCommand::new(["id", "-u"])).await.unwrap().stdout_lossy(), "0\n");
    let out =
        t.run(&RemoteCommand::new(["cat"]).with_stdin(b"through sudo".to_vec())).await.unwrap();
    assert_eq!(out.stdout_lossy(), "through sudo");
    let path = lab.scratch().join("root-only/secret.key");
    let mut file = PutFile::bytes(s(&path), b"k".to_vec(), 0o600);
    file.secret = true;
    assert_eq!(t.put_file(&file).await.unwrap(), PutOutcome::Written);
    assert_eq!(std::fs::metadata(&path).unwrap().uid(), 0, "written as root, not as {SUDO_USER}");

    let err = SshConnector::new(ConnectOptions::default())
        .connect_ssh(&lab.target(PASSWORD_SUDO_USER, &lab.ed25519))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::SudoPasswordRequired { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(PASSWORD_SUDO_USER) && msg.contains("NOPASSWD") && msg.contains("node1"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_many_concurrent_commands_beyond_max_sessions() {
    let lab = lab();
    let connector = SshConnector::new(ConnectOptions::default());
    let target = lab.target("root", &lab.ed25519);
    let t = connector.connect_ssh(&target).await.unwrap();
    let again = connector.connect_ssh(&target).await.unwrap();
    assert!(Arc::ptr_eq(&t, &again), "the connection is reused");
    // 40 parallel commands on one connection; sshd allows 10 sessions at once.
    let runs = (0..40).map(|i| {
        let t = t.clone();
        async move { t.run(&RemoteCommand::shell(format!("sleep 0.1; echo {i}"))).await }
    });
    let results = futures_join_all(runs).await;
    for (i, r) in results.into_iter().enumerate() {
        assert_eq!(r.unwrap().stdout_lossy(), format!("{i}\n"));
    }
    assert_eq!(lab.sshd.log().matches("Accepted publickey").count(), 1, "{}", lab.sshd.log());
}

async fn futures_join_all<F: std::future::Future + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_that_overruns_its_timeout_is_abandoned_and_the_connection_survives() {
    let lab = lab();
    let t = lab.root().await;
    let started = Instant::now();
    let err = t
        .run(&RemoteCommand::new(["sleep", "37.5"]).with_timeout(Duration::from_millis(800)))
        .await
        .unwrap_err();
    assert!(matches!(err, TransportError::CommandTimeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(err.to_string().contains("node1") && err.to_string().contains("sleep 37.5"), "{err}");
    assert!(t.run(&RemoteCommand::new(["true"])).await.unwrap().success());
    // The abandoned command was killed on the host (signal request), not left running.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running_cmdlines().iter().any(|c| c == "sleep\x0037.5\x00") {
        assert!(
            Instant::now() < deadline,
            "the timed-out command is still running on the host:\n{}",
            lab.sshd.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn running_cmdlines() -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            out.push(String::from_utf8_lossy(&c).into_owned());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_connection_is_an_error_not_a_hang_or_a_success() {
    let mut lab = lab();
    let t = lab.root().await;
    let marker = lab.scratch().join("started");
    let cmd = RemoteCommand::shell(format!("touch {}; exec sleep 60", marker.display()));
    let running = tokio::spawn(async move { t.run(&cmd).await });
    // Wait for the command to be running on the host (a condition, not a fixed sleep).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !marker.exists() {
        assert!(Instant::now() < deadline, "the command never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    lab.sshd.kill();
    let result =
        tokio::time::timeout(Duration::from_secs(20), running).await.expect("no hang").unwrap();
    let err = result.unwrap_err();
    assert!(
        matches!(err, TransportError::NoExitStatus { .. } | TransportError::Ssh { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("node1"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn connecting_fails_fast_on_a_closed_port_and_times_out_on_a_silent_one() {
    let lab = lab();
    let mut target = lab.target("root", &lab.ed25519);
    target.port = kubeforge_tests::sshd::free_port();
    let err = SshConnector::new(ConnectOptions::default()).connect_ssh(&target).await.unwrap_err();
    assert!(matches!(err, TransportError::Connect { .. }) && err.is_unreachable(), "{err}");

    // Accepts TCP but never speaks SSH.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    target.port = silent.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((sock, _)) = silent.accept().await {
            held.push(sock);
        }
    });
    let options =
        ConnectOptions { connect_timeout: Duration::from_millis(700), ..Default::default() };
    let started = Instant::now();
    let err = SshConnector::new(options).connect_ssh(&target).await.unwrap_err();
    assert!(matches!(err, TransportError::ConnectTimeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    hold.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn local_forward_reaches_a_server_on_the_hosts_loopback() {
    let lab = lab();
    let t = lab.root().await;
    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        while let Ok((mut sock, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = sock.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let fwd = t.forward_local(echo_port).await.unwrap();
    assert_ne!(fwd.local_addr().port(), echo_port);
    assert!(fwd.local_addr().ip().is_loopback());
    for round in 0..3 {
        let mut c = tokio::net::TcpStream::connect(fwd.local_addr()).await.unwrap();
        let msg = format!("ping {round}");
        c.write_all(msg.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(buf, msg.as_bytes());
    }
    assert!(
        lab.sshd.log().contains(&format!("127.0.0.1 port {echo_port}"))
            || !lab.sshd.log().is_empty()
    );

    let addr = fwd.local_addr();
    drop(fwd);
    // The listener is gone once the forward is dropped (abort is asynchronous: poll briefly).
    let deadline = Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "forward still listening after drop");
        tokio::task::yield_now().await;
    }

    let closed = kubeforge_tests::sshd::free_port();
    let err = t.forward_local(closed).await.unwrap_err();
    assert!(err.to_string().contains(&format!("127.0.0.1:{closed}")), "{err}");
    assert!(matches!(err, TransportError::ForwardRefused { .. }), "{err:?}");
    server.abort();
}
