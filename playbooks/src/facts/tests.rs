//! Parsers on output captured from Debian 12 (bookworm, the lab image's release) and Ubuntu,
//! and the whole probe run for real by `sh` on this machine.

use super::*;

const DEBIAN_OS_RELEASE: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"#;

const UBUNTU_OS_RELEASE: &str = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\nPRETTY_NAME=\"Ubuntu 24.04.1 LTS\"\n";

#[test]
fn os_release_of_debian_and_ubuntu() {
    let d = parse_os_release(DEBIAN_OS_RELEASE);
    assert_eq!((d.id.as_str(), d.version_id.as_str()), ("debian", "12"));
    assert_eq!(d.pretty_name, "Debian GNU/Linux 12 (bookworm)");
    let u = parse_os_release(UBUNTU_OS_RELEASE);
    assert_eq!((u.id.as_str(), u.version_id.as_str()), ("ubuntu", "24.04"));
}

#[test]
fn meminfo_and_swaps() {
    let meminfo = "MemTotal:        8131528 kB\nMemFree:         1234 kB\n";
    assert_eq!(parse_meminfo_total_kib(meminfo), Ok(8131528));
    assert!(matches!(
        parse_meminfo_total_kib("MemFree: 1 kB\n"),
        Err(FactsError::Malformed { .. })
    ));
    let off = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n";
    assert_eq!(parse_swaps(off), Ok(vec![]));
    let on = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/vda3                               partition\t1046524\t\t0\t\t-2\n/swapfile                               file\t\t524284\t\t0\t\t-3\n";
    let swaps = parse_swaps(on).unwrap();
    assert_eq!(swaps.len(), 2);
    assert_eq!(
        swaps[0],
        SwapArea { filename: "/dev/vda3".into(), kind: "partition".into(), size_kib: 1046524 }
    );
    assert!(parse_swaps("Filename Type Size\n/x partition notanumber 0 0\n").is_err());
}

#[test]
fn filesystems_list() {
    let fs = parse_filesystems("nodev\tsysfs\nnodev\toverlay\n\text4\n");
    assert_eq!(fs.into_iter().collect::<Vec<_>>(), ["ext4", "overlay", "sysfs"]);
}

#[test]
fn ports_from_ss_and_proc_net_tcp() {
    let ss = "LISTEN 0      128    0.0.0.0:2024 0.0.0.0:*\nLISTEN 0      4096   127.0.0.1:2379 0.0.0.0:*\nLISTEN 0      128    [::]:22 [::]:*\nLISTEN 0      4096   *:10250 *:*\nLISTEN 0      4096   127.0.0.53%lo:53 0.0.0.0:*\n";
    assert_eq!(
        parse_ports_ss(ss).unwrap().into_iter().collect::<Vec<_>>(),
        [22, 53, 2024, 2379, 10250]
    );
    assert!(parse_ports_ss("LISTEN 0\n").is_err());
    let proc = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 654 1\n   1: 020200C0:83D4 507100CB:0050 06 00000000:00000000 03:00000B11 00000000     0        0 0 3\n  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000000000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n";
    assert_eq!(parse_ports_proc_net_tcp(proc).unwrap().into_iter().collect::<Vec<_>>(), [22, 2024]);
}

#[test]
fn unit_states() {
    let running = parse_unit_state("active=active\nenabled=enabled\n").unwrap();
    assert!(running.is_active() && running.is_enabled());
    // `systemctl is-enabled` prints nothing on stdout for a unit systemd does not know.
    let missing = parse_unit_state("active=inactive\nenabled=\n").unwrap();
    assert_eq!(missing.enabled, "not-found");
    assert!(!missing.is_active() && !missing.is_enabled());
    assert!(parse_unit_state("active=active\n").is_err());
}

#[test]
fn binary_versions_as_debian_and_upstream_print_them() {
    let cases = [
        (
            "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3",
            "1.6.20~ds1",
        ),
        ("containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", "1.7.27"),
        (
            "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8",
            "1.1.5+ds1",
        ),
        (
            "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8",
            "3.4.23",
        ),
        ("Kubernetes v1.33.1", "v1.33.1"),
    ];
    for (output, version) in cases {
        assert_eq!(parse_binary_version(output).as_deref(), Some(version), "{output}");
    }
    assert_eq!(parse_binary_version("sh: 1: foo: not found"), None);
}

#[test]
fn sha256sum_and_stat_lines() {
    let sums = parse_sha256sum(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  /etc/empty\n",
    )
    .unwrap();
    assert_eq!(
        sums["/etc/empty"],
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(parse_sha256sum("xyz  /etc/a\n").is_err());
    let stat =
        parse_stat("644 root root /etc/hosts\n600 etcd etcd /var/lib/etcd/my file\n").unwrap();
    assert_eq!(stat["/etc/hosts"], (0o644, "root".into(), "root".into()));
    assert_eq!(stat["/var/lib/etcd/my file"].0, 0o600);
}

#[test]
fn clock_offset_is_the_least_the_round_trip_allows() {
    let window = ProbeWindow {
        sent_unix_ns: 1_795_323_596_000_000_000,
        received_unix_ns: 1_795_323_596_200_000_000,
    };
    // After the output arrived: at least that far ahead.
    assert_eq!(clock_offset_ms("1795323596.379454240", window), Ok(179));
    // Before the probe was sent: at least that far behind.
    assert_eq!(clock_offset_ms("1795323590.1", window), Ok(-5900));
    // Within the round trip: the clock may be right.
    assert_eq!(clock_offset_ms("1795323596.150", window), Ok(0));
    assert!(clock_offset_ms("soon", window).is_err());
}

#[test]
fn a_slow_probe_does_not_make_a_right_clock_look_wrong() {
    // A 5 s probe on a loaded machine whose host answered `date` 10 ms after the send: the
    // midpoint would say 2.49 s behind, over the 2 s limit.
    let window = ProbeWindow {
        sent_unix_ns: 1_795_323_596_000_000_000,
        received_unix_ns: 1_795_323_601_000_000_000,
    };
    assert_eq!(clock_offset_ms("1795323596.010", window), Ok(0));
    assert_eq!(clock_offset_ms("1795323593.000", window), Ok(-3000));
}

#[test]
fn truncated_probe_output_is_an_error_not_a_panic() {
    let request = ProbeRequest::default();
    let err = parse_probe_output(
        &request,
        "\n@@kf clock \n123.4\n",
        ProbeWindow { sent_unix_ns: 0, received_unix_ns: 0 },
    );
    assert_eq!(err, Err(FactsError::MissingSection { section: "end".into() }));
}

fn now_ns() -> i128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i128
}

/// The real script, run by this machine's `sh`, parsed: every requested item is answered.
#[test]
fn probe_script_runs_under_sh_and_parses() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.conf");
    let secret = dir.path().join("secret key");
    std::fs::write(&plain, "a = 1\n").unwrap();
    std::fs::write(&secret, "TOPSECRET").unwrap();
    let missing = dir.path().join("missing");
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let request = ProbeRequest {
        hash_files: [s(&secret), s(&missing)].into(),
        read_files: [s(&plain)].into(),
        paths_exist: [s(dir.path()), s(&missing)].into(),
        sysctls: ["kernel.ostype".to_string(), "no.such.key".to_string()].into(),
        units: ["kubeforge-test-nosuch.service".to_string()].into(),
        binaries: ["sh".to_string(), "kubeforge-no-such-binary".to_string()].into(),
        commands: [
            ("says".to_string(), vec!["echo".to_string(), "v1.34.1 it's".to_string()]),
            (
                "fails".to_string(),
                vec!["sh".to_string(), "-c".to_string(), "echo x; exit 3".to_string()],
            ),
            ("absent".to_string(), vec!["kubeforge-no-such-binary".to_string()]),
        ]
        .into(),
    };
    let sent = now_ns();
    let output =
        std::process::Command::new("sh").arg("-c").arg(probe_script(&request)).output().unwrap();
    let window = ProbeWindow { sent_unix_ns: sent, received_unix_ns: now_ns() };
    let stdout = String::from_utf8(output.stdout).unwrap();
    let facts = parse_probe_output(&request, &stdout, window).unwrap();
    assert!(!stdout.contains("TOPSECRET"), "secret files are hashed, never read");
    assert!(facts.cpus >= 1 && facts.memory_kib > 0 && !facts.hostname.is_empty());
    assert!(facts.clock_offset_ms.abs() < 1000, "{}", facts.clock_offset_ms);
    assert!(!facts.os.id.is_empty());
    assert!(facts.filesystems.contains("proc"), "{:?}", facts.filesystems);
    assert_eq!(facts.sysctls["kernel.ostype"].as_deref(), Some("Linux"));
    assert_eq!(facts.sysctls["no.such.key"], None);
    assert!(facts.paths_exist[&s(dir.path())]);
    assert!(!facts.paths_exist[&s(&missing)]);
    assert_eq!(facts.files[&s(&missing)], FileState::Absent);
    assert_eq!(facts.files[&s(&plain)].contents(), Some(&b"a = 1\n"[..]));
    let want: String = {
        use sha2::Digest;
        sha2::Sha256::digest(b"TOPSECRET").iter().map(|b| format!("{b:02x}")).collect()
    };
    assert_eq!(facts.files[&s(&secret)].sha256(), Some(want.as_str()));
    assert!(facts.files[&s(&secret)].contents().is_none());
    assert!(facts.binaries["sh"].path.is_some());
    assert_eq!(facts.binaries["kubeforge-no-such-binary"].path, None);
    assert!(facts.units.contains_key("kubeforge-test-nosuch.service"));
    // Probe commands: their output and exit status, quoted words passed whole.
    assert_eq!(facts.commands["says"].ok(), Some("v1.34.1 it's"));
    assert_eq!(facts.commands["fails"].exit_status, 3);
    assert_eq!(facts.commands["fails"].ok(), None);
    assert_eq!(facts.commands["absent"].exit_status, 127);
    assert_eq!(facts.commands["absent"].ok(), None);
}
