//! known_hosts handling in OpenSSH's format: looking a host's key up (plain and hashed `|1|`
//! entries, comma-separated patterns with `*`/`?` wildcards and `!` negation, `[host]:port` for
//! non-22 ports, `@revoked`), recording new keys under `accept-new`, and refusing changed keys
//! with both fingerprints and the file and line. It never rewrites or removes existing lines:
//! the only write is an append of one line for a host that had no entry at all.
//!
//! Keys are compared by their key data only: `ssh_key::PublicKey` equality includes the comment,
//! which the server never sends (see crates.md §4, pitfall 1).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use russh::keys::HashAlg;
use russh::keys::ssh_key::PublicKey;

use super::{HostKeyChange, TransportError};

/// What to do with a host key that is not in known_hosts yet. A *changed* key is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The key must already be in the known_hosts file.
    Strict,
    /// An unknown host's key is recorded on first contact (like `StrictHostKeyChecking=accept-new`).
    AcceptNew,
}

/// The name OpenSSH looks up and records: `host` on port 22, `[host]:port` otherwise.
pub fn known_hosts_name(address: &str, port: u16) -> String {
    if port == 22 { address.to_string() } else { format!("[{address}]:{port}") }
}

/// `SHA256:…`, as `ssh-keygen -lf` and ssh's warnings print it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The result of looking a key up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// An entry for this name holds this key.
    Known,
    /// No entry names this host.
    Unknown,
    /// Entries name this host but none holds this key; `line` is the first one of the same
    /// algorithm (or the first one at all), `expected` its fingerprint.
    Changed { line: usize, expected: String },
    /// A `@revoked` line lists this key.
    Revoked { line: usize },
}

/// One known_hosts file. Appends from concurrent connections are serialised in-process.
#[derive(Debug)]
pub struct KnownHosts {
    path: PathBuf,
    /// Record new entries hashed (`|1|salt|hmac`), as `HashKnownHosts yes` does.
    hash_new_entries: bool,
    append_lock: Mutex<()>,
}

struct Entry {
    line: usize,
    revoked: bool,
    key: PublicKey,
    patterns: String,
}

impl KnownHosts {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        KnownHosts { path: path.into(), hash_new_entries: false, append_lock: Mutex::new(()) }
    }

    /// Record new entries hashed instead of plain.
    pub fn hashed(mut self) -> Self {
        self.hash_new_entries = true;
        self
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn file_error(&self, detail: impl Into<String>) -> TransportError {
        TransportError::KnownHostsFile { file: self.path.clone(), detail: detail.into() }
    }

    /// Parses the file; a missing file has no entries. Lines that are not host keys (comments,
    /// `@cert-authority`, unknown key types) are skipped, as ssh does.
    fn entries(&self) -> Result<Vec<Entry>, TransportError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.file_error(e.to_string())),
        };
        let mut out = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let mut fields = raw.split_whitespace();
            let Some(mut first) = fields.next() else { continue };
            if first.starts_with('#') {
                continue;
            }
            let mut revoked = false;
            if first.starts_with('@') {
                match first {
                    "@revoked" => revoked = true,
                    _ => continue, // @cert-authority: we do not accept host certificates
                }
                let Some(f) = fields.next() else { continue };
                first = f;
            }
            let (Some(kind), Some(b64)) = (fields.next(), fields.next()) else { continue };
            let Ok(key) = PublicKey::from_openssh(&format!("{kind} {b64}")) else { continue };
            out.push(Entry { line: idx + 1, revoked, key, patterns: first.to_string() });
        }
        Ok(out)
    }

    /// Looks `key` up for `name` (from [`known_hosts_name`]).
    pub fn lookup(&self, name: &str, key: &PublicKey) -> Result<Lookup, TransportError> {
        let entries = self.entries()?;
        if let Some(e) = entries.iter().find(|e| e.revoked && e.key.key_data() == key.key_data()) {
            return Ok(Lookup::Revoked { line: e.line });
        }
        let mine: Vec<&Entry> =
            entries.iter().filter(|e| !e.revoked && host_matches(name, &e.patterns)).collect();
        if mine.iter().any(|e| e.key.key_data() == key.key_data()) {
            return Ok(Lookup::Known);
        }
        let witness = mine.iter().find(|e| e.key.algorithm() == key.algorithm()).or(mine.first());
        Ok(match witness {
            Some(e) => Lookup::Changed { line: e.line, expected: fingerprint(&e.key) },
            None => Lookup::Unknown,
        })
    }

    /// The algorithms recorded for `name`, so the client can ask the server for a key it can
    /// verify (OpenSSH orders its host key algorithms the same way).
    pub fn known_algorithms(
        &self,
        name: &str,
    ) -> Result<Vec<russh::keys::Algorithm>, TransportError> {
        let mut algs = Vec::new();
        for e in self.entries()?.iter().filter(|e| !e.revoked && host_matches(name, &e.patterns)) {
            if !algs.contains(&e.key.algorithm()) {
                algs.push(e.key.algorithm());
            }
        }
        Ok(algs)
    }

    /// Appends `name keytype base64` (hashed if configured). Creates the file (0600) and its
    /// directory (0700) when missing.
    pub fn append(&self, name: &str, key: &PublicKey) -> Result<(), TransportError> {
        let _guard = self.append_lock.lock().unwrap_or_else(|p| p.into_inner());
        if super::home::is_unexpanded(&self.path) {
            // Never a literal `./~` directory: the spec's `~/` is expanded by SshTarget::from_host.
            return Err(self.file_error(
                "the path starts with `~`, which was not expanded; write `~/…` in the spec \
                 (expanded from HOME) or an absolute path",
            ));
        }
        // Another connection may have recorded it meanwhile; never add a duplicate or a conflict.
        if self.lookup(name, key)? != Lookup::Unknown {
            return Ok(());
        }
        let bare = PublicKey::new(key.key_data().clone(), "");
        let key_text = bare
            .to_openssh()
            .map_err(|e| self.file_error(format!("cannot encode the host key: {e}")))?;
        let host_field = if self.hash_new_entries {
            hash_name(name).map_err(|e| self.file_error(e))?
        } else {
            name.to_string()
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| self.file_error(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| self.file_error(e.to_string()))?;
        let needs_newline =
            ends_without_newline(&self.path).map_err(|e| self.file_error(e.to_string()))?;
        let line = format!(
            "{}{host_field} {}\n",
            if needs_newline { "\n" } else { "" },
            key_text.trim_end()
        );
        file.write_all(line.as_bytes()).map_err(|e| self.file_error(e.to_string()))?;
        file.sync_all().map_err(|e| self.file_error(e.to_string()))?;
        Ok(())
    }

    /// The host key check a connection makes: known → ok; unknown → recorded under accept-new,
    /// refused under strict; changed or revoked → always refused.
    ///
    /// Keys are bound to the spec's host name as well as to the address (an OpenSSH
    /// `HostKeyAlias`: lines read `cp1,10.0.0.11 ssh-ed25519 …`). Checking the address alone
    /// would accept a spec whose hosts' addresses were swapped, since every address still
    /// answers with its own known key; the name check refuses it before anything is changed.
    pub fn verify(
        &self,
        host: &str,
        address: &str,
        port: u16,
        key: &PublicKey,
        policy: HostKeyPolicy,
    ) -> Result<(), TransportError> {
        self.check(host, Some(host), address, port, key, policy)
    }

    /// The host key check for a jump host: the key is bound to its address only (`addr`, or
    /// `[addr]:port` off port 22, exactly as `ssh -J` records it), since a bastion is no spec
    /// host and has no name of its own. `label` names it in errors (e.g. "bastion ADDR:PORT
    /// (for cp1)"); it is never written to the file.
    pub fn verify_bastion(
        &self,
        label: &str,
        address: &str,
        port: u16,
        key: &PublicKey,
        policy: HostKeyPolicy,
    ) -> Result<(), TransportError> {
        self.check(label, None, address, port, key, policy)
    }

    /// `host` names the hop in errors; `alias`, when given, is the name the key is bound to
    /// besides the address.
    fn check(
        &self,
        host: &str,
        alias: Option<&str>,
        address: &str,
        port: u16,
        key: &PublicKey,
        policy: HostKeyPolicy,
    ) -> Result<(), TransportError> {
        let name = known_hosts_name(address, port);
        // Like OpenSSH's HostKeyAlias: the bare name, whatever the port.
        let alias = alias.filter(|a| *a != name).map(str::to_string);
        let alias_lookup = match &alias {
            Some(a) => Some(self.lookup(a, key)?),
            None => None,
        };
        let address_lookup = self.lookup(&name, key)?;
        // A changed key at the address is reported as such (a reinstalled machine); a key that
        // only the name contradicts means the spec gives this host another machine's address.
        let checks =
            [(Some(&address_lookup), Some(&name)), (alias_lookup.as_ref(), alias.as_ref())];
        for (found, under) in checks {
            match (found, under) {
                (Some(Lookup::Changed { line, expected }), Some(under)) => {
                    return Err(self.changed(host, under, key, *line, expected));
                }
                (Some(Lookup::Revoked { line }), _) => return Err(self.revoked(host, key, *line)),
                _ => {}
            }
        }
        let unknown_alias = match (&alias, &alias_lookup) {
            (Some(a), Some(Lookup::Unknown)) => Some(a.as_str()),
            _ => None,
        };
        match address_lookup {
            Lookup::Known => match unknown_alias {
                // An address-only entry (older file or ssh-keyscan): bind the name from now on.
                Some(a) if policy == HostKeyPolicy::AcceptNew => self.append(a, key),
                _ => Ok(()),
            },
            Lookup::Unknown => match policy {
                HostKeyPolicy::AcceptNew => {
                    tracing::info!(host, known_hosts = %self.path.display(), fingerprint = %fingerprint(key), "recorded new host key for {name}");
                    let names = match unknown_alias {
                        Some(a) => format!("{a},{name}"),
                        None => name,
                    };
                    self.append(&names, key)
                }
                // Known by its name but not at this address (the address changed): the key
                // proves it is the same machine, which is what strict asks for.
                HostKeyPolicy::Strict if matches!(alias_lookup, Some(Lookup::Known)) => Ok(()),
                HostKeyPolicy::Strict => Err(TransportError::HostKeyUnknown {
                    host: host.to_string(),
                    known_hosts_name: name,
                    file: self.path.clone(),
                    offered: fingerprint(key),
                }),
            },
            Lookup::Changed { line, expected } => {
                Err(self.changed(host, &name, key, line, &expected))
            }
            Lookup::Revoked { line } => Err(self.revoked(host, key, line)),
        }
    }

    fn changed(
        &self,
        host: &str,
        name: &str,
        key: &PublicKey,
        line: usize,
        expected: &str,
    ) -> TransportError {
        TransportError::HostKeyChanged(Box::new(HostKeyChange {
            host: host.to_string(),
            known_hosts_name: name.to_string(),
            file: self.path.clone(),
            line,
            expected: expected.to_string(),
            offered: fingerprint(key),
        }))
    }

    fn revoked(&self, host: &str, key: &PublicKey, line: usize) -> TransportError {
        TransportError::HostKeyRevoked {
            host: host.to_string(),
            file: self.path.clone(),
            line,
            offered: fingerprint(key),
        }
    }
}

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};

fn ends_without_newline(path: &Path) -> std::io::Result<bool> {
    let bytes = std::fs::read(path)?;
    Ok(bytes.last().is_some_and(|b| *b != b'\n'))
}

/// `|1|base64(salt)|base64(HMAC-SHA1(salt, name))`, OpenSSH's hashed host name.
fn hash_name(name: &str) -> Result<String, String> {
    let mut salt = [0u8; 20];
    aws_lc_rs::rand::fill(&mut salt)
        .map_err(|_| "no random bytes for the hashed entry's salt".to_string())?;
    let tag = hmac_sha1(&salt, name);
    Ok(format!("|1|{}|{}", B64.encode(salt), B64.encode(tag)))
}

fn hmac_sha1(salt: &[u8], name: &str) -> Vec<u8> {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    aws_lc_rs::hmac::sign(&key, name.as_bytes()).as_ref().to_vec()
}

/// Whether `name` matches a known_hosts host field (OpenSSH's `match_hostname` rules: any
/// positive match and no negated match; a hashed field is one exact name).
fn host_matches(name: &str, field: &str) -> bool {
    if let Some(rest) = field.strip_prefix("|1|") {
        let mut parts = rest.splitn(2, '|');
        let (Some(salt), Some(hash)) = (parts.next(), parts.next()) else { return false };
        let (Ok(salt), Ok(hash)) = (B64.decode(salt), B64.decode(hash)) else { return false };
        return aws_lc_rs::constant_time::verify_slices_are_equal(&hmac_sha1(&salt, name), &hash)
            .is_ok();
    }
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for pattern in field.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(p) => (true, p),
            None => (false, pattern),
        };
        if wildcard_match(&pattern.to_ascii_lowercase(), &name) {
            if negated {
                return false;
            }
            positive = true;
        }
    }
    positive
}

/// `*` and `?` glob matching, as in OpenSSH's `match_pattern`.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    const K2: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA6rWI3G2sz07DnfFlrouTcysQlj2P+jpNSOEWD9OJ3X";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn file_with(text: &str) -> (tempfile::TempDir, KnownHosts) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_hosts");
        std::fs::write(&path, text).unwrap();
        (dir, KnownHosts::new(path))
    }

    #[test]
    fn keys_are_bound_to_host_names_so_swapped_addresses_are_refused() {
        let (_d, kh) = file_with("");
        let accept = HostKeyPolicy::AcceptNew;
        kh.verify("cp1", "10.0.0.1", 22, &key(K1), accept).unwrap();
        kh.verify("cp2", "10.0.0.2", 22, &key(K2), accept).unwrap();
        let text = std::fs::read_to_string(kh.path()).unwrap();
        assert!(text.contains(&format!("cp1,10.0.0.1 {K1}")), "{text}");
        // The spec now says cp1 is at cp2's address: that machine answers with cp2's key.
        let err = kh.verify("cp1", "10.0.0.2", 22, &key(K2), accept).unwrap_err();
        let TransportError::HostKeyChanged(change) = err else { panic!("{err}") };
        assert_eq!((change.host.as_str(), change.known_hosts_name.as_str()), ("cp1", "cp1"));
        assert_eq!(change.expected, fingerprint(&key(K1)));
        assert_eq!(std::fs::read_to_string(kh.path()).unwrap(), text, "nothing recorded");
        // The same machine at a new address proves itself by its key, even under strict.
        kh.verify("cp1", "10.0.0.9", 22, &key(K1), HostKeyPolicy::Strict).unwrap();
    }

    #[test]
    fn an_address_only_entry_gains_the_name_under_accept_new() {
        let (_d, kh) = file_with(&format!("10.0.0.1 {K1}\n"));
        kh.verify("cp1", "10.0.0.1", 22, &key(K1), HostKeyPolicy::Strict).unwrap();
        assert_eq!(kh.lookup("cp1", &key(K1)).unwrap(), Lookup::Unknown, "strict writes nothing");
        kh.verify("cp1", "10.0.0.1", 22, &key(K1), HostKeyPolicy::AcceptNew).unwrap();
        assert_eq!(kh.lookup("cp1", &key(K1)).unwrap(), Lookup::Known);
    }

    #[test]
    fn names_use_brackets_for_non_default_ports() {
        assert_eq!(known_hosts_name("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(known_hosts_name("10.0.0.1", 2222), "[10.0.0.1]:2222");
        assert_eq!(known_hosts_name("::1", 2222), "[::1]:2222");
    }

    #[test]
    fn comment_on_the_recorded_key_does_not_count_as_a_change() {
        let (_d, kh) = file_with(&format!("# comment\n\n[127.0.0.1]:2222 {K1} root@somewhere\n"));
        assert_eq!(
            kh.lookup("[127.0.0.1]:2222", &key(&format!("{K1} other-comment"))).unwrap(),
            Lookup::Known
        );
        assert_eq!(
            kh.lookup("127.0.0.1", &key(K1)).unwrap(),
            Lookup::Unknown,
            "port 22 is a different name"
        );
    }

    #[test]
    fn changed_key_reports_the_line_and_recorded_fingerprint() {
        let (_d, kh) = file_with(&format!("# c\nother {K2}\n[h]:2222 {K1}\n"));
        let lookup = kh.lookup("[h]:2222", &key(K2)).unwrap();
        assert_eq!(lookup, Lookup::Changed { line: 3, expected: fingerprint(&key(K1)) });
        let err = kh
            .verify("cp1", "h", 2222, &key(K2), HostKeyPolicy::AcceptNew)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&fingerprint(&key(K1))) && err.contains(&fingerprint(&key(K2))),
            "{err}"
        );
        assert!(err.contains(":3 ") && err.contains("ssh-keygen -R '[h]:2222'"), "{err}");
        // accept-new never replaces: the file is as it was.
        assert_eq!(
            std::fs::read_to_string(kh.path()).unwrap(),
            format!("# c\nother {K2}\n[h]:2222 {K1}\n")
        );
    }

    #[test]
    fn patterns_wildcards_negation_and_revocation() {
        let (_d, kh) =
            file_with(&format!("*.lab,!bad.lab {K1}\n@revoked * {K2}\n@cert-authority * {K1}\n"));
        assert_eq!(kh.lookup("cp1.lab", &key(K1)).unwrap(), Lookup::Known);
        assert_eq!(kh.lookup("bad.lab", &key(K1)).unwrap(), Lookup::Unknown);
        assert_eq!(kh.lookup("CP1.LAB", &key(K1)).unwrap(), Lookup::Known);
        assert_eq!(kh.lookup("cp1.lab", &key(K2)).unwrap(), Lookup::Revoked { line: 2 });
        assert!(wildcard_match("10.0.?.*", "10.0.1.25"));
        assert!(!wildcard_match("10.0.?.*", "10.0.12.5"));
    }

    #[test]
    fn accept_new_appends_once_and_strict_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let kh = KnownHosts::new(dir.path().join("sub/known_hosts"));
        let err = kh.verify("w1", "10.0.0.5", 22, &key(K1), HostKeyPolicy::Strict).unwrap_err();
        assert!(matches!(err, TransportError::HostKeyUnknown { .. }), "{err}");
        assert!(!kh.path().exists(), "strict never writes");
        kh.verify("w1", "10.0.0.5", 22, &key(&format!("{K1} c")), HostKeyPolicy::AcceptNew)
            .unwrap();
        kh.verify("w1", "10.0.0.5", 22, &key(K1), HostKeyPolicy::AcceptNew).unwrap();
        kh.append("10.0.0.5", &key(K1)).unwrap();
        assert_eq!(std::fs::read_to_string(kh.path()).unwrap(), format!("w1,10.0.0.5 {K1}\n"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(kh.path()).unwrap().permissions().mode() & 0o777, 0o600);
        kh.verify("w1", "10.0.0.5", 22, &key(K1), HostKeyPolicy::Strict).unwrap();
    }

    #[test]
    fn hashed_entries_are_written_and_read_like_openssh() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kh");
        std::fs::write(&path, "no-newline-at-end ").unwrap();
        let kh = KnownHosts::new(&path).hashed();
        kh.append("[10.1.1.1]:2200", &key(K1)).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.starts_with("|1|") && !last.contains("10.1.1.1"), "{text}");
        assert_eq!(kh.lookup("[10.1.1.1]:2200", &key(K1)).unwrap(), Lookup::Known);
        assert_eq!(kh.lookup("10.1.1.1", &key(K1)).unwrap(), Lookup::Unknown);
        // ssh-keygen finds our hashed entry (cross-check with the real tool; in CI it must run).
        match std::process::Command::new("ssh-keygen")
            .arg("-F")
            .arg("[10.1.1.1]:2200")
            .arg("-f")
            .arg(&path)
            .output()
        {
            Ok(out) => assert!(
                String::from_utf8_lossy(&out.stdout).contains("|1|"),
                "ssh-keygen -F did not find it"
            ),
            Err(e) => {
                assert!(
                    !must_run_tools(),
                    "ssh-keygen is needed for the cross-check (CI or KUBEFORGE_E2E is set): {e}; \
                     install openssh-client"
                );
                eprintln!("skipped the ssh-keygen cross-check: {e}");
            }
        }
    }

    /// With `CI` or `KUBEFORGE_E2E` set, a missing tool fails the test instead of skipping.
    fn must_run_tools() -> bool {
        ["CI", "KUBEFORGE_E2E"].iter().any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()))
    }

    #[test]
    fn a_bastion_is_recorded_under_its_address_found_again_and_pinned() {
        let (_d, kh) = file_with("");
        let accept = HostKeyPolicy::AcceptNew;
        let label = "bastion 10.0.0.9:2222 (for w1)";
        for _ in 0..3 {
            kh.verify_bastion(label, "10.0.0.9", 2222, &key(K1), accept).unwrap();
        }
        kh.verify_bastion("bastion 10.0.0.8:22 (for w1)", "10.0.0.8", 22, &key(K2), accept)
            .unwrap();
        let text = std::fs::read_to_string(kh.path()).unwrap();
        assert_eq!(text, format!("[10.0.0.9]:2222 {K1}\n10.0.0.8 {K2}\n"));
        // Strict finds it; another key at that address is refused, naming the bastion and line.
        kh.verify_bastion(label, "10.0.0.9", 2222, &key(K1), HostKeyPolicy::Strict).unwrap();
        let err = kh.verify_bastion(label, "10.0.0.9", 2222, &key(K2), accept).unwrap_err();
        let TransportError::HostKeyChanged(change) = &err else { panic!("{err}") };
        assert_eq!((change.host.as_str(), change.line), (label, 1));
        assert_eq!(change.known_hosts_name, "[10.0.0.9]:2222");
        let msg = err.to_string();
        assert!(msg.starts_with(label) && msg.contains("known_hosts:1 "), "{msg}");
        assert_eq!(std::fs::read_to_string(kh.path()).unwrap(), text, "nothing recorded");
    }

    #[test]
    fn an_unexpanded_tilde_path_is_never_created() {
        let kh = KnownHosts::new("~/kubeforge-test-never/known_hosts");
        let err = kh.verify("w1", "10.0.0.5", 22, &key(K1), HostKeyPolicy::AcceptNew).unwrap_err();
        assert!(err.to_string().contains("not expanded"), "{err}");
        assert!(!std::path::Path::new("~").exists(), "no ./~ directory");
    }
}
