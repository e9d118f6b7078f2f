//! Pure parsers for the probe's sections: each takes the captured text of one command and
//! returns typed facts. Unexpected text is an error naming the section, never a panic.

use std::collections::{BTreeMap, BTreeSet};

use base64::Engine;

use super::{
    Binary, CommandOutput, FactsError, FileState, HostFacts, OsRelease, ProbeRequest, ProbeWindow,
    SwapArea, UnitState,
};

fn malformed(section: &str, problem: impl Into<String>) -> FactsError {
    FactsError::Malformed { section: section.to_string(), problem: problem.into() }
}

/// `/etc/os-release`: `KEY=value` lines, values optionally quoted.
pub fn parse_os_release(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let value = value.trim().trim_matches('"').trim_matches('\'').to_string();
        match key {
            "ID" => os.id = value,
            "VERSION_ID" => os.version_id = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

/// `MemTotal` from `/proc/meminfo`, in KiB.
pub fn parse_meminfo_total_kib(text: &str) -> Result<u64, FactsError> {
    let line = text
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .ok_or_else(|| malformed("meminfo", "no MemTotal line"))?;
    let value = line.split_whitespace().nth(1).unwrap_or("");
    value.parse().map_err(|_| malformed("meminfo", format!("MemTotal is not a number: {line:?}")))
}

/// `/proc/swaps`: a header line, then one line per active swap area.
pub fn parse_swaps(text: &str) -> Result<Vec<SwapArea>, FactsError> {
    let mut swaps = Vec::new();
    for line in text.lines().skip_while(|l| !l.starts_with("Filename")).skip(1) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.is_empty() {
            continue;
        }
        let [filename, kind, size, ..] = fields[..] else {
            return Err(malformed("swaps", format!("short line {line:?}")));
        };
        let size_kib =
            size.parse().map_err(|_| malformed("swaps", format!("bad size in {line:?}")))?;
        swaps.push(SwapArea { filename: filename.to_string(), kind: kind.to_string(), size_kib });
    }
    Ok(swaps)
}

/// `/proc/filesystems`: `[nodev]\t<type>` per line.
pub fn parse_filesystems(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.split_whitespace().last()).map(str::to_string).collect()
}

/// The port of a local address as `ss` prints it: `0.0.0.0:22`, `[::]:22`, `*:22`,
/// `127.0.0.1%lo:53`.
fn port_of(local: &str) -> Option<u16> {
    local.rsplit_once(':').and_then(|(_, port)| port.parse().ok())
}

/// `ss -Htln`: `State Recv-Q Send-Q Local:Port Peer:Port` per listening socket.
pub fn parse_ports_ss(text: &str) -> Result<BTreeSet<u16>, FactsError> {
    let mut ports = BTreeSet::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let local = line
            .split_whitespace()
            .nth(3)
            .ok_or_else(|| malformed("ports-ss", format!("short line {line:?}")))?;
        let port =
            port_of(local).ok_or_else(|| malformed("ports-ss", format!("no port in {local:?}")))?;
        ports.insert(port);
    }
    Ok(ports)
}

/// `/proc/net/tcp` and `/proc/net/tcp6`: sockets in state `0A` (LISTEN), port in hex.
pub fn parse_ports_proc_net_tcp(text: &str) -> Result<BTreeSet<u16>, FactsError> {
    let mut ports = BTreeSet::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.first().is_none_or(|f| *f == "sl") || fields.len() < 4 {
            continue;
        }
        if fields[3] != "0A" {
            continue;
        }
        let port_hex = fields[1].rsplit_once(':').map(|(_, p)| p).unwrap_or("");
        let port = u16::from_str_radix(port_hex, 16)
            .map_err(|_| malformed("ports-proc", format!("bad local address in {line:?}")))?;
        ports.insert(port);
    }
    Ok(ports)
}

/// The `active=…` / `enabled=…` pair the probe prints per unit. An empty `enabled` means
/// systemd does not know the unit.
pub fn parse_unit_state(text: &str) -> Result<UnitState, FactsError> {
    let mut active = None;
    let mut enabled = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("active=") {
            active = Some(v.trim().to_string());
        } else if let Some(v) = line.strip_prefix("enabled=") {
            enabled = Some(v.trim().to_string());
        }
    }
    let active = active.ok_or_else(|| malformed("unit", "no active= line"))?;
    let enabled = enabled.ok_or_else(|| malformed("unit", "no enabled= line"))?;
    Ok(UnitState {
        active: if active.is_empty() { "unknown".into() } else { active },
        enabled: if enabled.is_empty() { "not-found".into() } else { enabled },
    })
}

/// The version number in a binary's `--version` output:
/// `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3` → `1.6.20~ds1`,
/// `runc version 1.1.5+ds1` → `1.1.5+ds1`, `etcd Version: 3.4.23` → `3.4.23`,
/// `Kubernetes v1.33.1` → `v1.33.1`. The first word that starts with a digit (or `v` and a digit)
/// and contains a dot.
pub fn parse_binary_version(text: &str) -> Option<String> {
    let first = text.lines().find(|l| !l.trim().is_empty())?;
    first
        .split_whitespace()
        .find(|w| {
            let digits = w.strip_prefix('v').unwrap_or(w);
            digits.starts_with(|c: char| c.is_ascii_digit()) && digits.contains('.')
        })
        .map(str::to_string)
}

/// `sha256sum` output: `<64 hex>  <path>` per line (a `\` prefix marks escaped names).
pub fn parse_sha256sum(text: &str) -> Result<BTreeMap<String, String>, FactsError> {
    let mut sums = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let line = line.strip_prefix('\\').unwrap_or(line);
        let (hash, path) = line
            .split_once("  ")
            .or_else(|| line.split_once(" *"))
            .ok_or_else(|| malformed("sha256", format!("no digest and path in {line:?}")))?;
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("sha256", format!("not a sha256 digest: {hash:?}")));
        }
        sums.insert(path.to_string(), hash.to_ascii_lowercase());
    }
    Ok(sums)
}

/// `stat -c '%a %U %G %n'` output: octal mode, owner, group, path per line.
pub fn parse_stat(text: &str) -> Result<BTreeMap<String, (u32, String, String)>, FactsError> {
    let mut out = BTreeMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut parts = line.splitn(4, ' ');
        let (Some(mode), Some(owner), Some(group), Some(path)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("stat", format!("short line {line:?}")));
        };
        let mode = u32::from_str_radix(mode, 8)
            .map_err(|_| malformed("stat", format!("bad mode in {line:?}")))?;
        out.insert(path.to_string(), (mode, owner.to_string(), group.to_string()));
    }
    Ok(out)
}

/// How far the host clock is at least off the operator's, in ms (0 when it may be right).
/// The host's `date +%s.%N` was taken somewhere between the operator sending the probe and
/// receiving its output, so the true offset lies between `remote - received` and
/// `remote - sent`; the one nearest zero is returned. A midpoint estimate instead errs by half
/// the round trip, and a probe slowed by a loaded machine or a slow command (seconds) would
/// then refuse hosts whose clocks are right.
pub fn clock_offset_ms(remote: &str, window: ProbeWindow) -> Result<i64, FactsError> {
    let remote = remote.trim();
    let (secs, frac) = remote.split_once('.').unwrap_or((remote, "0"));
    let secs: i128 =
        secs.parse().map_err(|_| malformed("clock", format!("not a time: {remote:?}")))?;
    let frac9 = format!("{frac:0<9}");
    let nanos: i128 = frac9
        .get(..9)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| malformed("clock", format!("not a time: {remote:?}")))?;
    let remote_ns = secs * 1_000_000_000 + nanos;
    let off_ns = if remote_ns < window.sent_unix_ns {
        remote_ns - window.sent_unix_ns
    } else if remote_ns > window.received_unix_ns {
        remote_ns - window.received_unix_ns
    } else {
        0
    };
    Ok((off_ns / 1_000_000) as i64)
}

/// Splits probe output into `(section, argument) → text` in order.
fn sections(output: &str) -> Vec<(String, String, String)> {
    let mut out: Vec<(String, String, String)> = Vec::new();
    for line in output.split('\n') {
        if let Some(header) = line.strip_prefix("@@kf ") {
            let (name, arg) = header.split_once(' ').unwrap_or((header, ""));
            out.push((name.to_string(), arg.to_string(), String::new()));
        } else if let Some((_, _, text)) = out.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    // Each section's text ends with the blank line that separates it from the next header.
    for (_, _, text) in &mut out {
        while text.ends_with('\n') {
            text.pop();
        }
    }
    out
}

/// Parses a whole probe output for the request it was made from.
pub fn parse_probe_output(
    request: &ProbeRequest,
    output: &str,
    window: ProbeWindow,
) -> Result<HostFacts, FactsError> {
    let all = sections(output);
    if !all.iter().any(|(name, _, _)| name == "end") {
        return Err(FactsError::MissingSection { section: "end".into() });
    }
    let one = |name: &str| -> Result<&str, FactsError> {
        all.iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, _, text)| text.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: name.to_string() })
    };
    let by_arg = |name: &str| -> BTreeMap<&str, &str> {
        all.iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, arg, text)| (arg.as_str(), text.as_str()))
            .collect()
    };

    let cpus = one("nproc")?.trim().parse().map_err(|_| malformed("nproc", "not a number"))?;
    let listening_ports = match one("ports-ss") {
        Ok(text) => parse_ports_ss(text)?,
        Err(_) => parse_ports_proc_net_tcp(one("ports-proc")?)?,
    };

    let unit_sections = by_arg("unit");
    let mut units = BTreeMap::new();
    for unit in &request.units {
        let text = unit_sections
            .get(unit.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: format!("unit {unit}") })?;
        units.insert(unit.clone(), parse_unit_state(text)?);
    }

    let binary_sections = by_arg("binary");
    let mut binaries = BTreeMap::new();
    for name in &request.binaries {
        let text = binary_sections
            .get(name.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: format!("binary {name}") })?;
        let binary = if text.trim() == "@absent" {
            Binary { path: None, version: None }
        } else {
            let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
            Binary {
                path: first.strip_prefix("path=").map(str::to_string),
                version: parse_binary_version(rest),
            }
        };
        binaries.insert(name.clone(), binary);
    }

    let exist_sections = by_arg("exists");
    let mut paths_exist = BTreeMap::new();
    for path in &request.paths_exist {
        let text = exist_sections
            .get(path.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: format!("exists {path}") })?;
        paths_exist.insert(path.clone(), text.trim() == "yes");
    }

    let sysctl_sections = by_arg("sysctl");
    let mut sysctls = BTreeMap::new();
    for key in &request.sysctls {
        let text = sysctl_sections
            .get(key.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: format!("sysctl {key}") })?;
        let value = (text.trim() != "@absent").then(|| normalize_sysctl(text));
        sysctls.insert(key.clone(), value);
    }

    let command_sections = by_arg("command");
    let mut commands = BTreeMap::new();
    for name in request.commands.keys() {
        let text = command_sections
            .get(name.as_str())
            .ok_or_else(|| FactsError::MissingSection { section: format!("command {name}") })?;
        let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
        let exit_status = first
            .strip_prefix("exit=")
            .and_then(|n| n.trim().parse().ok())
            .ok_or_else(|| malformed("command", format!("{name}: no exit= line")))?;
        commands.insert(name.clone(), CommandOutput { exit_status, stdout: rest.to_string() });
    }

    let mut files = BTreeMap::new();
    let wanted: BTreeSet<&String> = request.hash_files.union(&request.read_files).collect();
    if !wanted.is_empty() {
        let sums = parse_sha256sum(one("sha256")?)?;
        let stats = parse_stat(one("stat")?)?;
        let reads = by_arg("read");
        for path in wanted {
            let state = match sums.get(path.as_str()) {
                None => FileState::Absent,
                Some(sha256) => {
                    let contents = match reads.get(path.as_str()) {
                        Some(text) if text.trim() != "@unread" => Some(
                            base64::engine::general_purpose::STANDARD
                                .decode(text.trim())
                                .map_err(|e| malformed("read", format!("{path}: {e}")))?,
                        ),
                        _ => None,
                    };
                    let stat = stats.get(path.as_str());
                    FileState::Present {
                        sha256: sha256.clone(),
                        mode: stat.map(|s| s.0),
                        owner: stat.map(|s| s.1.clone()),
                        group: stat.map(|s| s.2.clone()),
                        contents,
                    }
                }
            };
            files.insert(path.clone(), state);
        }
    }

    Ok(HostFacts {
        os: parse_os_release(one("os-release")?),
        arch: one("arch")?.trim().to_string(),
        kernel: one("kernel")?.trim().to_string(),
        cpus,
        memory_kib: parse_meminfo_total_kib(one("meminfo")?)?,
        swaps: parse_swaps(one("swaps")?)?,
        hostname: one("hostname")?.trim().to_string(),
        filesystems: parse_filesystems(one("filesystems")?),
        clock_offset_ms: clock_offset_ms(one("clock")?, window)?,
        listening_ports,
        units,
        binaries,
        files,
        paths_exist,
        sysctls,
        commands,
    })
}

/// sysctl values compare with runs of whitespace (tabs in multi-value keys) collapsed.
pub(crate) fn normalize_sysctl(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}
