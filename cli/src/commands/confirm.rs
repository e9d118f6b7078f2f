//! Asking the operator before a command changes hosts: one prompt on the terminal, the accepted
//! answers given by the command (`y` for apply, the command's own name for disruptive ones such
//! as restore and reset). Without a terminal it refuses to guess and says to use `--yes`.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use miette::{IntoDiagnostic as _, miette};

/// `y`/`yes` answers, for ordinary changes.
pub const YES: &[&str] = &["y", "Y", "yes"];

/// Prints `prompt` on stderr and reads one line; true when it is one of `accept`. `command`
/// names what needs the confirmation in the error when stdin is not a terminal.
pub fn ask(command: &str, prompt: &str, accept: &[&str]) -> miette::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(miette!(
            help = "review the plan above, then run again with --yes",
            "{command} needs confirmation and stdin is not a terminal; nothing was changed"
        ));
    }
    eprint!("{prompt} ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).into_diagnostic()?;
    Ok(accepted(&answer, accept))
}

fn accepted(answer: &str, accept: &[&str]) -> bool {
    accept.contains(&answer.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_listed_answers_confirm() {
        assert!(accepted("yes\n", YES) && accepted(" y \n", YES));
        assert!(!accepted("\n", YES) && !accepted("no\n", YES));
        assert!(accepted("restore\n", &["restore"]));
        assert!(!accepted("y\n", &["restore"]), "a disruptive command wants its own name");
    }
}
