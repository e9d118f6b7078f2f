//! Thin process and file helpers for the lab: run a host command with a clear error, check for
//! root and for the tools the lab needs (naming their Debian packages), write files atomically.
//! Decides nothing about the lab itself.

use std::ffi::OsStr;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::error::LabError;

/// A host program the lab runs, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tool {
    pub name: &'static str,
    pub package: &'static str,
}

const fn tool(name: &'static str, package: &'static str) -> Tool {
    Tool { name, package }
}

/// What `lab up` needs (building the image and the artifacts, booting, probing).
pub const UP_TOOLS: &[Tool] = &[
    tool("debootstrap", "debootstrap"),
    tool("systemd-nspawn", "systemd-container"),
    tool("ip", "iproute2"),
    tool("ssh", "openssh-client"),
    tool("ssh-keygen", "openssh-client"),
    tool("mount", "mount"),
    tool("umount", "mount"),
    tool("chroot", "coreutils"),
    tool("kill", "procps"),
    tool("apt-get", "apt"),
    tool("dpkg-deb", "dpkg"),
    tool("python3", "python3"),
];

/// What stop/start/down need.
pub const RUN_TOOLS: &[Tool] = &[
    tool("systemd-nspawn", "systemd-container"),
    tool("ip", "iproute2"),
    tool("ssh", "openssh-client"),
    tool("mount", "mount"),
    tool("umount", "mount"),
    tool("kill", "procps"),
];

/// Fails unless the effective user is root.
pub fn require_root() -> Result<(), LabError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| LabError::io("read", "/proc/self/status", e))?;
    match effective_uid(&status) {
        Some(0) => Ok(()),
        _ => Err(LabError::NotRoot),
    }
}

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
pub fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Fails on the first tool that is not on the PATH (or in the sbin directories).
pub fn require_tools(tools: &[Tool]) -> Result<(), LabError> {
    for t in tools {
        if find_program(t.name).is_none() {
            return Err(LabError::MissingTool { tool: t.name, package: t.package });
        }
    }
    Ok(())
}

/// Looks a program up on the PATH and in the sbin directories (absent from many users' PATH).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let extra = ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    std::env::split_paths(&path).chain(extra).map(|dir| dir.join(name)).find(|p| {
        p.metadata().map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
    })
}

/// A command ready to run: the program resolved like [`find_program`] does.
pub fn command(program: &str) -> Command {
    let mut cmd = Command::new(find_program(program).unwrap_or_else(|| PathBuf::from(program)));
    cmd.stdin(Stdio::null());
    cmd
}

/// The command line as a user would type it, for messages.
pub fn argv_text(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program()).file_name().unwrap_or(cmd.get_program());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` to completion; a non-zero exit is an error carrying the tail of stderr and `help`.
pub fn run(what: &str, cmd: &mut Command, help: &str) -> Result<Output, LabError> {
    tracing::debug!(command = %argv_text(cmd), "{what}");
    let output = cmd.output().map_err(|source| LabError::Spawn {
        what: what.to_string(),
        argv: argv_text(cmd),
        source,
    })?;
    if output.status.success() {
        return Ok(output);
    }
    Err(LabError::Command {
        what: what.to_string(),
        argv: argv_text(cmd),
        status: output.status.to_string(),
        stderr_tail: tail(&String::from_utf8_lossy(&output.stderr), 15),
        help: help.to_string(),
    })
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Writes `bytes` to `path` through a temporary file and a rename, with `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), LabError> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = (|| {
        let mut f =
            fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        LabError::io("write", path, e)
    })
}

/// Creates `dir` and its parents with mode 0700 (lab dirs hold a private key).
pub fn create_private_dir(dir: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| LabError::io("create the directory", dir, e))
}

/// Live processes (other than this one) with a command-line argument at or under `path`.
pub fn pids_mentioning(path: &Path) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| cmdline_mentions(&c, path))
        })
        .collect()
}

/// True when an argument of a NUL-separated command line is `path` or lies under it.
pub fn cmdline_mentions(cmdline: &[u8], path: &Path) -> bool {
    cmdline
        .split(|b| *b == 0)
        .any(|arg| Path::new(&*String::from_utf8_lossy(arg)).starts_with(path))
}

/// 16 random bytes from the kernel, as lower-case hex (a machine-id).
pub fn random_hex16() -> Result<String, LabError> {
    let mut bytes = [0u8; 16];
    let mut f =
        fs::File::open("/dev/urandom").map_err(|e| LabError::io("open", "/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut bytes)
        .map_err(|e| LabError::io("read", "/dev/urandom", e))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status = "Name:\tcat\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t0\t1000\t0\t0\n"), Some(1000));
        assert_eq!(effective_uid("Name: x\n"), None);
    }

    #[test]
    fn missing_tool_names_its_package() {
        let err = require_tools(&[tool("kubeforge-no-such-tool", "no-such-package")]).unwrap_err();
        assert!(matches!(err, LabError::MissingTool { package: "no-such-package", .. }));
        require_tools(&[tool("sh", "dash")]).unwrap();
    }

    #[test]
    fn failed_command_reports_argv_status_and_stderr() {
        let mut cmd = command("sh");
        cmd.args(["-c", "echo first >&2; echo boom >&2; exit 3"]);
        let err = run("a test step", &mut cmd, "do X").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("a test step failed: `sh -c"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.ends_with("first\nboom"), "{text}");
    }

    #[test]
    fn cmdline_mentions_paths_under_a_directory() {
        let p = Path::new("/c/images/.tmp-x");
        assert!(cmdline_mentions(
            b"/bin/sh\0/usr/sbin/debootstrap\0bookworm\0/c/images/.tmp-x\0",
            p
        ));
        assert!(cmdline_mentions(b"chroot\0/c/images/.tmp-x/\0dpkg\0", p));
        assert!(!cmdline_mentions(b"ls\0/c/images/.tmp-xy\0", p));
        assert!(!cmdline_mentions(b"", p));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn write_atomic_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"x", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"x");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
