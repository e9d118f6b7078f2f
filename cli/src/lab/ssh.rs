//! SSH for the lab itself (not the cluster transport): the lab key pair, the lab's known_hosts
//! (written from the host keys made for each machine, so nothing is trusted on first use), and
//! readiness probes with the system `ssh` client. argv and texts are pure.

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::LabError;
use super::state::{LabState, MachineState};
use super::sys;

/// Makes the lab's key pair (ed25519, no passphrase) and returns the public key line.
pub fn make_lab_key(identity_file: &Path, lab: &str) -> Result<String, LabError> {
    let mut cmd = sys::command("ssh-keygen");
    cmd.args(["-q", "-t", "ed25519", "-N", "", "-C", &format!("kubeforge-lab-{lab}"), "-f"])
        .arg(identity_file);
    sys::run("making the lab's SSH key", &mut cmd, "check that ssh-keygen works")?;
    let public = identity_file.with_extension("pub");
    std::fs::read_to_string(&public).map_err(|e| LabError::io("read", public, e))
}

/// A known_hosts line binding the key to the machine's name and address (kubeforge checks both)
/// from a public key line (`type base64 [comment]`).
pub fn known_hosts_line(name: &str, address: &str, public_key: &str) -> Option<String> {
    let mut words = public_key.split_whitespace();
    let (kind, key) = (words.next()?, words.next()?);
    Some(format!("{name},{address} {kind} {key}\n"))
}

/// The `ssh` argv that runs `remote` on machine `m` as root with the lab key and known_hosts only.
pub fn ssh_argv(state: &LabState, m: &MachineState, remote: &str) -> Vec<String> {
    let mut argv: Vec<String> = vec!["ssh".into(), "-F".into(), "/dev/null".into(), "-i".into()];
    argv.push(state.identity_file.to_string_lossy().into_owned());
    for option in [
        "IdentitiesOnly=yes".to_string(),
        "BatchMode=yes".into(),
        "StrictHostKeyChecking=yes".into(),
        format!("UserKnownHostsFile={}", state.known_hosts.display()),
        "GlobalKnownHostsFile=/dev/null".into(),
        "ConnectTimeout=3".into(),
        "LogLevel=ERROR".into(),
    ] {
        argv.push("-o".into());
        argv.push(option);
    }
    argv.push(format!("root@{}", m.address));
    argv.push(remote.into());
    argv
}

/// What a user types to log in (printed by `lab up` and `lab status`).
pub fn login_hint(state: &LabState, m: &MachineState) -> String {
    format!(
        "ssh -i {} -o UserKnownHostsFile={} root@{}",
        state.identity_file.display(),
        state.known_hosts.display(),
        m.address
    )
}

/// Readiness from the output of `systemctl is-system-running`: booted means `running` or
/// `degraded` (a failed unit is the cluster's business, not the lab's).
pub fn is_booted(output: &str) -> bool {
    matches!(output.trim(), "running" | "degraded")
}

/// One probe: `Ok(state)` when booted, `Err(what was seen)` otherwise.
pub fn probe(state: &LabState, m: &MachineState) -> Result<String, String> {
    let argv = ssh_argv(state, m, "systemctl is-system-running");
    let mut cmd = sys::command(&argv[0]);
    cmd.args(&argv[1..]);
    match cmd.output() {
        Ok(out) => {
            let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if is_booted(&stdout) {
                Ok(stdout)
            } else if !stdout.is_empty() {
                Err(format!("systemd is {stdout}"))
            } else {
                Err(sys::tail(String::from_utf8_lossy(&out.stderr).trim(), 1))
            }
        }
        Err(e) => Err(format!("cannot run ssh: {e}")),
    }
}

/// Waits until every machine in `hosts` answers over SSH with systemd booted, probing them in
/// parallel; fails naming the first machine that did not make it within `timeout`.
pub fn wait_ready(
    state: &LabState,
    hosts: &[&MachineState],
    timeout: Duration,
) -> Result<(), LabError> {
    let deadline = Instant::now() + timeout;
    let results: Vec<Result<(), LabError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|m| {
                scope.spawn(move || {
                    loop {
                        let last = match probe(state, m) {
                            Ok(_) => return Ok(()),
                            Err(seen) => seen,
                        };
                        if Instant::now() >= deadline {
                            return Err(LabError::NotReady {
                                lab: state.name.clone(),
                                node: m.host.clone(),
                                secs: timeout.as_secs(),
                                last,
                                log: m.console_log(),
                            });
                        }
                        std::thread::sleep(Duration::from_millis(300));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .zip(hosts)
            .map(|(h, m)| {
                h.join().unwrap_or_else(|_| {
                    Err(LabError::NotReady {
                        lab: state.name.clone(),
                        node: m.host.clone(),
                        secs: timeout.as_secs(),
                        last: "the probe thread panicked".into(),
                        log: m.console_log(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::layout::{Request, plan};
    use crate::lab::net::Subnet;
    use crate::lab::state::from_layout;

    #[test]
    fn probes_use_only_the_lab_key_and_known_hosts() {
        let req = Request { name: "t".into(), control_planes: 1, workers: 0, etcd: 0 };
        let layout = plan(&req, Subnet::from_index(1)).unwrap();
        let state = from_layout(
            &layout,
            Path::new("/labs/t"),
            Path::new("/i"),
            Path::new("/a"),
            Path::new("/s"),
        );
        let argv = ssh_argv(&state, &state.machines[0], "true").join(" ");
        assert_eq!(
            argv,
            "ssh -F /dev/null -i /labs/t/id_ed25519 -o IdentitiesOnly=yes -o BatchMode=yes \
             -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/labs/t/known_hosts \
             -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=3 -o LogLevel=ERROR root@10.200.1.11 true"
        );
        assert_eq!(
            login_hint(&state, &state.machines[0]),
            "ssh -i /labs/t/id_ed25519 -o UserKnownHostsFile=/labs/t/known_hosts root@10.200.1.11"
        );
    }

    #[test]
    fn known_hosts_lines_drop_the_comment() {
        assert_eq!(
            known_hosts_line("cp1", "10.0.0.1", "ssh-ed25519 AAAAC3Nz root@cp1\n").as_deref(),
            Some("cp1,10.0.0.1 ssh-ed25519 AAAAC3Nz\n")
        );
        assert_eq!(known_hosts_line("cp1", "10.0.0.1", "garbage"), None);
    }

    #[test]
    fn booted_means_running_or_degraded() {
        assert!(is_booted("running\n"));
        assert!(is_booted("degraded"));
        assert!(!is_booted("starting"));
        assert!(!is_booted(""));
    }
}
