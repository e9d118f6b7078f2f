//! The spec `kubeforge init` writes, used as a new operator would: the real binary writes it,
//! only its host addresses and SSH ports (and worker2's login user, which must exist here) are
//! edited to point at real OpenSSH sshds on loopback addresses, and HOME is a temp dir holding
//! `.ssh/id_ed25519`, the key those sshds authorize. `identityFile: ~/.ssh/id_ed25519` must reach
//! every host (`certs check-expiration --remote` connects to each and reads files over SSH), a
//! `knownHostsFile: ~/…` must land in HOME (never in a literal `./~`), and with HOME unset the
//! run must stop before connecting, naming each host and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use kubeforge_tests::lab::{kubeforge_bin, text};
use kubeforge_tests::sshd::{KeyPair, Sshd, SshdOptions, Sudo, ensure_user, free_port, keygen};

/// worker2's login user: the example says `admin`; this machine's test user with passwordless
/// sudo stands in (the same one ssh_transport uses).
const SUDO_USER: &str = "kftest";

/// The example's hosts and the loopback address each gets instead of 10.88.0.x.
const HOSTS: [(&str, &str); 5] = [
    ("cp1", "127.0.0.11"),
    ("cp2", "127.0.0.12"),
    ("cp3", "127.0.0.13"),
    ("worker1", "127.0.0.21"),
    ("worker2", "127.0.0.22"),
];

static USERS: Mutex<()> = Mutex::new(());

struct Setup {
    _dir: tempfile::TempDir,
    home: PathBuf,
    work: PathBuf,
    key: KeyPair,
    /// `(host name, its login user, its sshd)`.
    sshds: Vec<(&'static str, &'static str, Sshd)>,
}

impl Setup {
    /// `kubeforge init` in `work`, the spec edited to the sshds, `certs generate` done.
    /// `extra_ssh` is added to `spec.ssh` (empty: the spec exactly as init wrote it).
    fn new(extra_ssh: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::DirBuilder::new().recursive(true).create(home.join(".ssh")).unwrap();
        let key = keygen(&home.join(".ssh/id_ed25519"), "ed25519");
        {
            let _g = USERS.lock().unwrap_or_else(|p| p.into_inner());
            ensure_user(SUDO_USER, Sudo::NoPassword);
        }
        let (port, worker2_port) = (free_port(), free_port());
        let mut sshds = Vec::new();
        for (name, address) in HOSTS {
            let (user, port) =
                if name == "worker2" { (SUDO_USER, worker2_port) } else { ("root", port) };
            let sshd = Sshd::start(SshdOptions {
                authorized: vec![(user.to_string(), vec![key.public.clone()])],
                port: Some(port),
                listen_address: Some(address.to_string()),
                ..Default::default()
            });
            sshds.push((name, user, sshd));
        }

        let out = run(&work, Some(&home), &["init", "--out", "cluster.yaml"]);
        assert!(out.status.success(), "{}", text(&out));
        let written = std::fs::read_to_string(work.join("cluster.yaml")).unwrap();
        assert!(
            written.contains("    identityFile: ~/.ssh/id_ed25519"),
            "init's spec names ~/.ssh/id_ed25519:\n{written}"
        );
        let mut spec = written.clone();
        let mut edit = |from: &str, to: &str| {
            assert_eq!(spec.matches(from).count(), 1, "`{from}` once in init's spec:\n{written}");
            spec = spec.replace(from, to);
        };
        for (_, address) in HOSTS {
            let last = address.rsplit('.').next().unwrap();
            edit(&format!("address: 10.88.0.{last}\n"), &format!("address: {address}\n"));
        }
        edit("    port: 22\n", &format!("    port: {port}\n"));
        edit("{user: admin, port: 2222}", &format!("{{user: {SUDO_USER}, port: {worker2_port}}}"));
        if !extra_ssh.is_empty() {
            edit(
                "    hostKeyPolicy: accept-new",
                &format!("    {extra_ssh}\n    hostKeyPolicy: accept-new"),
            );
        }
        std::fs::write(work.join("cluster.yaml"), spec).unwrap();
        let out = run(&work, Some(&home), &["certs", "generate"]);
        assert!(out.status.success(), "{}", text(&out));
        Setup { _dir: dir, home, work, key, sshds }
    }

    /// `certs check-expiration --remote -o json`: connects to every host and reads its files.
    fn check_remote(&self, home: Option<&Path>) -> Output {
        run(&self.work, home, &["-o", "json", "certs", "check-expiration", "--remote"])
    }

    /// The known_hosts lines every host should have left: spec name and address, host key.
    fn expected_known_hosts(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .sshds
            .iter()
            .zip(HOSTS)
            .map(|((name, _, sshd), (_, address))| {
                format!("{name},[{address}]:{} {}", sshd.port(), sshd.host_public_key())
            })
            .collect();
        lines.sort();
        lines
    }
}

/// Runs the binary in `dir` with HOME set to `home` (or unset) and no ssh-agent, so only the key
/// file under HOME can authenticate.
fn run(dir: &Path, home: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(kubeforge_bin());
    cmd.current_dir(dir).args(args).env_remove("SSH_AUTH_SOCK");
    match home {
        Some(h) => cmd.env("HOME", h),
        None => cmd.env_remove("HOME"),
    };
    cmd.output().expect("run kubeforge")
}

fn sorted_lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} should exist: {e}", path.display()));
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

/// Every host was reached and read: each appears in the report, none unreadable, and each sshd
/// accepted the key from HOME for the spec's user.
fn assert_every_host_reached(setup: &Setup, out: &Output) {
    assert!(out.status.success(), "{}", text(out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let entries = report.as_array().expect("an array");
    for (name, _) in HOSTS {
        let mine: Vec<_> = entries.iter().filter(|e| e["host"] == name).collect();
        assert!(!mine.is_empty(), "{name} is in the report: {}", text(out));
        for e in mine {
            assert!(
                !e["onHost"].to_string().to_lowercase().contains("unreadable"),
                "{name}: {e}\n{}",
                text(out)
            );
        }
    }
    let fingerprint = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&setup.key.private)
        .output()
        .expect("ssh-keygen -lf");
    let fingerprint = String::from_utf8_lossy(&fingerprint.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    for (name, user, sshd) in &setup.sshds {
        let log = sshd.log();
        assert!(
            log.contains(&format!("Accepted publickey for {user} ")) && log.contains(&fingerprint),
            "{name}'s sshd accepted ~/.ssh/id_ed25519 for {user}:\n{log}"
        );
    }
}

#[test]
fn the_spec_init_writes_reaches_every_host_with_the_key_in_home() {
    let setup = Setup::new("");
    let out = setup.check_remote(Some(&setup.home));
    assert_every_host_reached(&setup, &out);
    let known_hosts = setup.work.join(".kubeforge/prod-eu1/known_hosts");
    assert_eq!(sorted_lines(&known_hosts), setup.expected_known_hosts());
    assert!(!setup.work.join("~").exists(), "no literal ./~ directory");
}

#[test]
fn a_known_hosts_file_under_home_is_written_there_and_never_to_a_literal_tilde() {
    let setup = Setup::new("knownHostsFile: ~/.ssh/kubeforge_known_hosts");
    let out = setup.check_remote(Some(&setup.home));
    assert_every_host_reached(&setup, &out);
    let in_home = setup.home.join(".ssh/kubeforge_known_hosts");
    assert_eq!(sorted_lines(&in_home), setup.expected_known_hosts());
    assert!(!setup.work.join("~").exists(), "no literal ./~ directory");
    assert!(
        !setup.work.join(".kubeforge/prod-eu1/known_hosts").exists(),
        "the spec's file is used"
    );
}

#[test]
fn without_home_nothing_connects_and_every_host_and_field_is_named() {
    let setup = Setup::new("");
    let out = setup.check_remote(None);
    assert!(!out.status.success(), "{}", text(&out));
    // miette wraps the report to the terminal width: compare with the wrapping undone.
    let stderr = String::from_utf8_lossy(&out.stderr)
        .split(|c: char| c.is_whitespace() || c == '│')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    for (name, _) in HOSTS {
        assert!(
            stderr.contains(&format!(
                "{name}: ssh.identityFile `~/.ssh/id_ed25519` starts with `~`, but HOME is not set"
            )),
            "{name} named:\n{}",
            text(&out)
        );
    }
    for (name, _, sshd) in &setup.sshds {
        assert!(!sshd.log().contains("Connection from"), "{name} was contacted:\n{}", sshd.log());
    }
    assert!(!setup.work.join("~").exists(), "no literal ./~ directory");
}
