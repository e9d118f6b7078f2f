//! POSIX shell quoting for argv sent over SSH (SSH's exec request takes one command string).
//! Owns quoting only; it never interprets or rewrites commands.

/// Quotes one word so that a POSIX shell reads it back verbatim.
pub fn word(s: &str) -> String {
    let plain =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// Quotes and joins an argv into one command line.
pub fn join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter().map(|a| word(a.as_ref())).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(join(&["ls", "-l", "/etc/kubernetes"]), "ls -l /etc/kubernetes");
        assert_eq!(word(""), "''");
        assert_eq!(word("a b"), "'a b'");
        assert_eq!(word("it's"), r"'it'\''s'");
        assert_eq!(word("$(reboot)"), "'$(reboot)'");
        assert_eq!(word("*"), "'*'");
    }

    #[test]
    fn round_trips_through_a_real_shell() {
        let nasty = ["a b", "it's", "$HOME", "`id`", "x\ny", "\\", "\"q\"", ";", "&&", "-n", "é"];
        let line = format!("printf '%s\\0' {}", join(&nasty));
        let out = std::process::Command::new("sh").arg("-c").arg(&line).output().unwrap();
        let got: Vec<String> = out
            .stdout
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        assert_eq!(got, nasty);
    }
}
