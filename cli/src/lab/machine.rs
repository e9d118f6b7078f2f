//! One lab machine: its root (an overlay on the shared image, with its own hostname, address,
//! machine-id, SSH host key and the lab's authorized key), booting it with systemd-nspawn and
//! powering it off. The texts and the nspawn argv are pure functions; the rest is thin.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::error::LabError;
use super::state::{LabState, MachineState};
use super::sys;

/// The systemd-nspawn command line of a machine.
pub fn nspawn_argv(m: &MachineState, bridge: &str) -> Vec<String> {
    vec![
        "systemd-nspawn".into(),
        "--quiet".into(),
        format!("--directory={}", m.root().display()),
        format!("--machine={}", m.machine),
        format!("--hostname={}", m.host),
        "--boot".into(),
        // No machined on lab hosts (PID 1 may not even be systemd): stay in our own process tree.
        "--register=no".into(),
        "--keep-unit".into(),
        format!("--network-bridge={bridge}"),
        "--console=read-only".into(),
    ]
}

/// The systemd-networkd file giving `host0` (the machine end of its veth) a static address.
pub fn network_file(address: &str) -> String {
    format!(
        "# Written by kubeforge lab.\n[Match]\nName=host0\n\n[Network]\nAddress={address}/24\nLinkLocalAddressing=no\n"
    )
}

/// `/etc/hosts` of every machine: itself on 127.0.1.1 and every lab machine by name.
pub fn hosts_file(state: &LabState, host: &str) -> String {
    let mut text = format!(
        "127.0.0.1\tlocalhost\n127.0.1.1\t{host}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    );
    for m in &state.machines {
        text.push_str(&format!("{}\t{}\n", m.address, m.host));
    }
    text
}

/// Builds the machine's overlay root and writes its identity into it. Returns the SSH host
/// public key line (`ssh-ed25519 AAAA… root@host`).
pub fn create_root(
    state: &LabState,
    m: &MachineState,
    authorized_key: &str,
) -> Result<String, LabError> {
    for dir in [m.upper(), m.work(), m.root()] {
        fs::create_dir_all(&dir).map_err(|e| LabError::io("create", &dir, e))?;
    }
    mount_overlay(&state.image, m)?;
    let root = m.root();
    let put =
        |rel: &str, text: &str, mode| sys::write_atomic(&root.join(rel), text.as_bytes(), mode);
    put("etc/hostname", &format!("{}\n", m.host), 0o644)?;
    put("etc/hosts", &hosts_file(state, &m.host), 0o644)?;
    put("etc/machine-id", &format!("{}\n", sys::random_hex16()?), 0o444)?;
    put("etc/systemd/network/10-kubeforge-lab.network", &network_file(&m.address), 0o644)?;
    sys::create_private_dir(&root.join("root/.ssh"))?;
    put("root/.ssh/authorized_keys", authorized_key, 0o600)?;
    let key = root.join("etc/ssh/ssh_host_ed25519_key");
    let _ = fs::remove_file(&key);
    let _ = fs::remove_file(key.with_extension("pub"));
    let mut keygen = sys::command("ssh-keygen");
    keygen
        .args(["-q", "-t", "ed25519", "-N", "", "-C", &format!("root@{}", m.host), "-f"])
        .arg(&key);
    sys::run(
        &format!("making the SSH host key of {}", m.host),
        &mut keygen,
        "check ssh-keygen works",
    )?;
    let public = key.with_extension("pub");
    fs::read_to_string(&public)
        .map(|s| s.trim().to_string())
        .map_err(|e| LabError::io("read", public, e))
}

/// Mounts the machine's overlay root unless it is mounted already.
pub fn mount_overlay(image: &Path, m: &MachineState) -> Result<(), LabError> {
    let root = m.root();
    if mount_points_under(&read_mountinfo()?, &root).iter().any(|p| p == &root) {
        return Ok(());
    }
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        image.display(),
        m.upper().display(),
        m.work().display()
    );
    let mut cmd = sys::command("mount");
    cmd.args(["-t", "overlay", "overlay", "-o", &options]).arg(&root);
    sys::run(
        &format!("mounting the root of {}", m.host),
        &mut cmd,
        "the kernel needs overlayfs (`modprobe overlay`)",
    )?;
    Ok(())
}

/// Starts systemd-nspawn for the machine in the background; returns its pid.
pub fn boot(state: &LabState, m: &MachineState) -> Result<u32, LabError> {
    let argv = nspawn_argv(m, &state.bridge);
    let log = m.console_log();
    let out = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| LabError::io("open the console log", &log, e))?;
    let err = out.try_clone().map_err(|e| LabError::io("open the console log", &log, e))?;
    let mut cmd = sys::command(&argv[0]);
    cmd.args(&argv[1..]).stdout(Stdio::from(out)).stderr(Stdio::from(err));
    // Its own process group: a Ctrl-C meant for kubeforge must not power the machine off.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        what: format!("booting {}", m.host),
        argv: argv.join(" "),
        source,
    })?;
    Ok(child.id())
}

/// True while `pid` is a live systemd-nspawn running this machine's root.
pub fn is_running(m: &MachineState) -> bool {
    m.pid.is_some_and(|pid| nspawn_root(pid).is_some_and(|root| root == m.root()))
}

/// The `--directory` of a live (not zombie) systemd-nspawn process, if `pid` is one.
pub fn nspawn_root(pid: u32) -> Option<PathBuf> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if process_state(&stat) == Some('Z') {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    nspawn_root_from_cmdline(&cmdline)
}

/// The state letter in `/proc/PID/stat` (after the parenthesised command name).
pub fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(") ")?.1.chars().next()
}

/// `--directory=` of a NUL-separated systemd-nspawn command line.
pub fn nspawn_root_from_cmdline(cmdline: &[u8]) -> Option<PathBuf> {
    let text = String::from_utf8_lossy(cmdline);
    let mut args = text.split('\0');
    let program = args.next()?;
    if Path::new(program).file_name()? != "systemd-nspawn" {
        return None;
    }
    args.find_map(|a| a.strip_prefix("--directory=").map(PathBuf::from))
}

/// Every live systemd-nspawn whose root lies under `prefix` (for `down` without a good state).
pub fn nspawn_pids_under(prefix: &Path) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| nspawn_root(*pid).is_some_and(|root| root.starts_with(prefix)))
        .collect()
}

/// Powers a machine off: SIGTERM makes nspawn shut the machine's systemd down cleanly; after
/// `grace` it is killed. Waits until the process is gone.
pub fn power_off(pid: u32, root: &Path, grace: Duration) -> Result<(), LabError> {
    let alive = || nspawn_root(pid).is_some_and(|r| r == root);
    if !alive() {
        return Ok(());
    }
    signal(pid, "TERM")?;
    let deadline = Instant::now() + grace;
    while alive() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    if alive() {
        let lock = nspawn_lock_file(root);
        signal(pid, "KILL")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        tracing::warn!(
            "systemd-nspawn {pid} ({}) did not shut down within {grace:?}; killed",
            root.display()
        );
        if let Some(lock) = lock {
            let _ = fs::remove_file(lock); // a killed nspawn leaves its lock behind
        }
    }
    Ok(())
}

fn signal(pid: u32, sig: &str) -> Result<(), LabError> {
    let mut cmd = sys::command("kill");
    cmd.arg(format!("-{sig}")).arg(pid.to_string());
    // The process may exit between the check and the signal; that is fine.
    match sys::run(&format!("sending SIG{sig} to systemd-nspawn {pid}"), &mut cmd, "") {
        Ok(_) => Ok(()),
        Err(_) if !Path::new(&format!("/proc/{pid}")).exists() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The lock file systemd-nspawn keeps for a (mounted) root while it runs:
/// `/run/systemd/nspawn/locks/inode-<dev>:<ino>`. nspawn removes it on a clean exit; after a
/// SIGKILL it stays, so `down` removes it.
pub fn nspawn_lock_file(root: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = fs::metadata(root).ok()?;
    Some(PathBuf::from(format!("/run/systemd/nspawn/locks/inode-{}:{}", meta.dev(), meta.ino())))
}

/// The mount table of this process.
pub fn read_mountinfo() -> Result<String, LabError> {
    fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| LabError::io("read", "/proc/self/mountinfo", e))
}

/// Mount points at or under `prefix`, deepest first (the order to unmount them).
pub fn mount_points_under(mountinfo: &str, prefix: &Path) -> Vec<PathBuf> {
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mount_path(p)))
        .filter(|p| p.starts_with(prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mount_path(p: &str) -> String {
    let bytes = p.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push(
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'),
            );
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Unmounts everything at or under `prefix` (idempotent).
pub fn unmount_all_under(prefix: &Path) -> Result<(), LabError> {
    for point in mount_points_under(&read_mountinfo()?, prefix) {
        let mut cmd = sys::command("umount");
        cmd.arg(&point);
        if sys::run(&format!("unmounting {}", point.display()), &mut cmd, "").is_err() {
            // Busy (a process still inside): detach it so that the directory can go.
            let mut lazy = sys::command("umount");
            lazy.arg("--lazy").arg(&point);
            sys::run(
                &format!("unmounting {}", point.display()),
                &mut lazy,
                "find what still uses it with `fuser -m`",
            )?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Request, plan};
    use crate::lab::net::Subnet;
    use crate::lab::state::from_layout;

    fn state() -> LabState {
        let req = Request { name: "t".into(), control_planes: 1, workers: 1, etcd: 0 };
        let layout = plan(&req, Subnet::from_index(5)).unwrap();
        from_layout(
            &layout,
            Path::new("/labs/t"),
            Path::new("/img"),
            Path::new("/art"),
            Path::new("/s.yaml"),
        )
    }

    #[test]
    fn nspawn_boots_the_overlay_root_on_the_lab_bridge() {
        let s = state();
        let argv = nspawn_argv(&s.machines[1], &s.bridge);
        assert_eq!(
            argv,
            [
                "systemd-nspawn",
                "--quiet",
                "--directory=/labs/t/machines/w1/root",
                "--machine=t-w1",
                "--hostname=w1",
                "--boot",
                "--register=no",
                "--keep-unit",
                "--network-bridge=kf-t",
                "--console=read-only",
            ]
        );
        let cmdline = argv.join("\0");
        assert_eq!(nspawn_root_from_cmdline(cmdline.as_bytes()), Some(s.machines[1].root()));
    }

    #[test]
    fn only_nspawn_command_lines_have_a_root() {
        assert_eq!(
            nspawn_root_from_cmdline(b"/usr/bin/systemd-nspawn\0-q\0--directory=/x\0"),
            Some("/x".into())
        );
        assert_eq!(nspawn_root_from_cmdline(b"bash\0--directory=/x\0"), None);
        assert_eq!(nspawn_root_from_cmdline(b""), None);
    }

    #[test]
    fn machine_files_carry_address_and_names() {
        let s = state();
        assert_eq!(
            network_file("10.200.5.11"),
            "# Written by kubeforge lab.\n[Match]\nName=host0\n\n[Network]\nAddress=10.200.5.11/24\nLinkLocalAddressing=no\n"
        );
        let hosts = hosts_file(&s, "w1");
        assert!(
            hosts.contains("127.0.1.1\tw1\n")
                && hosts.contains("10.200.5.11\tcp1\n")
                && hosts.contains("10.200.5.51\tw1\n"),
            "{hosts}"
        );
    }

    #[test]
    fn process_state_reads_past_odd_command_names() {
        assert_eq!(process_state("123 (systemd-nspawn) S 1 2"), Some('S'));
        assert_eq!(process_state("123 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(process_state("junk"), None);
    }

    #[test]
    fn mount_points_under_a_prefix_deepest_first_with_escapes() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
40 22 0:50 / /labs/t/machines/cp1/root rw - overlay overlay rw
41 40 0:51 / /labs/t/machines/cp1/root/proc rw - proc proc rw
42 22 0:52 / /labs/t/machines/w\\0401/root rw - overlay overlay rw
43 22 0:53 / /labs/tt/machines/cp1/root rw - overlay overlay rw
";
        let points = mount_points_under(info, Path::new("/labs/t"));
        let texts: Vec<_> = points.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(
            texts,
            [
                "/labs/t/machines/cp1/root/proc",
                "/labs/t/machines/cp1/root",
                "/labs/t/machines/w 1/root"
            ]
        );
    }
}
