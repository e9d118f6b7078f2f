//! Feeds the rendered files of every example to the programs that read them on a node:
//! `haproxy -c`, `keepalived -t`, `containerd config dump`, `sh -n` and `systemd-analyze
//! calendar`. tests/setup.sh installs them; a missing one fails the test with that hint.

#[path = "render_support.rs"]
mod support;

use std::path::Path;
use std::process::Command;

fn run(program: &str, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it with tests/setup.sh"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Every (example, host, node path, rendered bytes) whose path satisfies `pick`.
fn files(pick: impl Fn(&str) -> bool) -> Vec<(String, String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for example in support::EXAMPLES {
        let tree = support::render_configs(&support::example(example));
        for (host, files) in &tree.hosts {
            for (path, file) in files.iter().filter(|(p, _)| pick(p)) {
                out.push((example.to_string(), host.clone(), path.clone(), file.contents.clone()));
            }
        }
    }
    out
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn haproxy_accepts_every_rendered_config() {
    let dir = tempfile::tempdir().unwrap();
    let configs = files(|p| p == "/etc/haproxy/haproxy.cfg");
    // 3 + 3 control planes with keepalived-haproxy, 1 pure worker with node-local.
    assert!(configs.len() >= 7, "only {} haproxy configs rendered", configs.len());
    for (example, host, _, bytes) in configs {
        let file = write(dir.path(), &format!("{example}-{host}.cfg"), &bytes);
        let (ok, out) = run("haproxy", &["-c", "-f", &file]);
        assert!(ok, "haproxy rejects {example}/{host}:\n{out}");
    }
    // The check can fail: a broken config is refused.
    let broken = write(dir.path(), "broken.cfg", b"frontend x\n    bind nonsense:::\n");
    assert!(!run("haproxy", &["-c", "-f", &broken]).0);
}

#[test]
fn keepalived_accepts_every_rendered_config() {
    let dir = tempfile::tempdir().unwrap();
    // Stand in for what keepalived-interface writes at service start: a real non-loopback NIC.
    let nic = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lo")
        .min()
        .expect("a non-loopback network interface");
    let include =
        write(dir.path(), "interface.conf", format!("$KUBEFORGE_INTERFACE={nic}\n").as_bytes());
    let configs = files(|p| p == "/etc/keepalived/keepalived.conf");
    assert!(configs.len() >= 6, "only {} keepalived configs rendered", configs.len());
    for (example, host, _, bytes) in configs {
        let text = String::from_utf8(bytes).unwrap();
        let original = "include /run/keepalived-kubeforge/interface.conf";
        assert!(text.contains(original), "{example}/{host}: include line changed");
        let text = text.replace(original, &format!("include {include}"));
        let file = write(dir.path(), &format!("{example}-{host}.conf"), text.as_bytes());
        let (ok, out) = run("keepalived", &["-t", "-f", &file]);
        assert!(ok, "keepalived rejects {example}/{host}:\n{out}");
    }
}

#[test]
fn containerd_loads_every_rendered_config() {
    let dir = tempfile::tempdir().unwrap();
    let configs = files(|p| p == "/etc/containerd/config.toml");
    assert!(!configs.is_empty());
    for (example, host, _, bytes) in configs {
        let file = write(dir.path(), &format!("{example}-{host}.toml"), &bytes);
        let (ok, out) = run("containerd", &["--config", &file, "config", "dump"]);
        assert!(ok, "containerd rejects {example}/{host}:\n{out}");
        // The values we rely on survive containerd's own parse.
        assert!(out.contains("SystemdCgroup = true"), "{example}/{host}: {out}");
        assert!(
            out.contains("sandbox_image = \"registry.k8s.io/pause:3.10"),
            "{example}/{host}: {out}"
        );
    }
}

#[test]
fn shell_scripts_parse() {
    let dir = tempfile::tempdir().unwrap();
    for (example, host, _, bytes) in files(|p| p.starts_with("/usr/local/lib/kubeforge/")) {
        let file = write(dir.path(), &format!("{example}-{host}.sh"), &bytes);
        let (ok, out) = run("sh", &["-n", &file]);
        assert!(ok, "{example}/{host}: {out}");
    }
}

#[test]
fn timer_schedules_are_valid_systemd_calendar_events() {
    let timers = files(|p| p.ends_with("kubeforge-backup.timer"));
    assert!(!timers.is_empty());
    for (example, host, _, bytes) in timers {
        let text = String::from_utf8(bytes).unwrap();
        for line in text.lines().filter_map(|l| l.strip_prefix("OnCalendar=")) {
            let (ok, out) = run("systemd-analyze", &["calendar", line]);
            assert!(ok, "{example}/{host}: OnCalendar={line}: {out}");
        }
    }
}
