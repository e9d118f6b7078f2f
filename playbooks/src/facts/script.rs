//! The combined probe: one POSIX `sh` script per host that only reads, printing each answer in a
//! section that starts with a `@@kf <section> <argument>` line. One round trip per host keeps
//! fact gathering fast; everything it prints is parsed by `parse.rs`.

use super::{MAX_READ_BYTES, ProbeRequest};

/// Quotes a word for `sh` (single quotes; embedded quotes closed and escaped).
pub(crate) fn sh_quote(word: &str) -> String {
    if !word.is_empty()
        && word.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+=:@,".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The probe script for a request. It changes nothing on the host.
pub fn probe_script(request: &ProbeRequest) -> String {
    let mut s = String::from(
        "LC_ALL=C; export LC_ALL\n\
         PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH\n\
         s() { printf '\\n@@kf %s %s\\n' \"$1\" \"$2\"; }\n\
         s clock ''; date +%s.%N\n\
         s os-release ''; cat /etc/os-release 2>/dev/null || cat /usr/lib/os-release 2>/dev/null\n\
         s arch ''; uname -m\n\
         s kernel ''; uname -r\n\
         s nproc ''; nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo\n\
         s meminfo ''; cat /proc/meminfo\n\
         s swaps ''; cat /proc/swaps\n\
         s filesystems ''; cat /proc/filesystems\n\
         s hostname ''; cat /proc/sys/kernel/hostname\n\
         if command -v ss >/dev/null 2>&1; then s ports-ss ''; ss -Htln; \
         else s ports-proc ''; cat /proc/net/tcp /proc/net/tcp6 2>/dev/null; fi\n",
    );
    for unit in &request.units {
        let q = sh_quote(unit);
        s.push_str(&format!(
            "s unit {q}; echo \"active=$(systemctl is-active {q} 2>/dev/null)\"; \
             echo \"enabled=$(systemctl is-enabled {q} 2>/dev/null)\"\n"
        ));
    }
    for binary in &request.binaries {
        let q = sh_quote(binary);
        s.push_str(&format!(
            "s binary {q}; if p=$(command -v {q}); then echo \"path=$p\"; \
             {q} --version 2>&1 | head -n 5; else echo '@absent'; fi\n"
        ));
    }
    for path in &request.paths_exist {
        let q = sh_quote(path);
        s.push_str(&format!("s exists {q}; if [ -e {q} ]; then echo yes; else echo no; fi\n"));
    }
    for key in &request.sysctls {
        let proc_path = format!("/proc/sys/{}", key.replace('.', "/"));
        let q = sh_quote(&proc_path);
        s.push_str(&format!("s sysctl {}; cat {q} 2>/dev/null || echo '@absent'\n", sh_quote(key)));
    }
    for (name, argv) in &request.commands {
        let line: Vec<String> = argv.iter().map(|w| sh_quote(w)).collect();
        s.push_str(&format!(
            "s command {}; o=$(timeout 15 {} 2>/dev/null); echo \"exit=$?\"; printf '%s\\n' \"$o\"\n",
            sh_quote(name),
            line.join(" ")
        ));
    }
    let hashed: Vec<String> =
        request.hash_files.union(&request.read_files).map(|p| sh_quote(p)).collect();
    if !hashed.is_empty() {
        // One sha256sum for every file; missing ones print to stderr and are absent below.
        s.push_str(&format!("s sha256 ''; sha256sum -- {} 2>/dev/null\n", hashed.join(" ")));
        s.push_str(&format!(
            "s stat ''; stat -c '%a %U %G %n' -- {} 2>/dev/null\n",
            hashed.join(" ")
        ));
    }
    for path in &request.read_files {
        let q = sh_quote(path);
        s.push_str(&format!(
            "s read {q}; if [ -f {q} ] && [ $(wc -c < {q}) -le {MAX_READ_BYTES} ]; \
             then base64 -w0 < {q}; else echo '@unread'; fi\n"
        ));
    }
    s.push_str("s end ''\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(sh_quote("/etc/hosts"), "/etc/hosts");
        assert_eq!(sh_quote("a b"), "'a b'");
        assert_eq!(sh_quote("it's"), r"'it'\''s'");
        assert_eq!(sh_quote(""), "''");
        assert_eq!(sh_quote("$(rm -rf /)"), "'$(rm -rf /)'");
    }
}
