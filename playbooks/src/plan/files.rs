//! Turning a wanted file into a `PutFile` step, or none when the host already has it: compares
//! sha256, mode and owner from the facts, and builds the diff a human sees.

use sha2::Digest;

use super::types::{DiffText, FileReason, PutFile};
use crate::diff::unified_diff;
use crate::facts::{FileState, HostFacts};

/// A file a phase wants on a host.
pub(crate) struct Wanted<'a> {
    pub path: &'a str,
    pub contents: &'a [u8],
    pub mode: u32,
    pub secret: bool,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The step that makes the host's file match, or `None` when it already does.
pub(crate) fn put_file(host: &str, facts: &HostFacts, wanted: Wanted<'_>) -> Option<PutFile> {
    let sha256 = sha256_hex(wanted.contents);
    let state = facts.files.get(wanted.path).unwrap_or(&FileState::Absent);
    if state.matches(&sha256, wanted.mode, "root", "root") {
        return None;
    }
    let reason = match state {
        FileState::Absent => FileReason::Create,
        FileState::Present { sha256: old, mode, owner, group, contents } => {
            if *old == sha256 {
                FileReason::Metadata {
                    from: format!(
                        "{} {}:{}",
                        mode.map(|m| format!("{m:04o}")).unwrap_or_else(|| "?".into()),
                        owner.as_deref().unwrap_or("?"),
                        group.as_deref().unwrap_or("?")
                    ),
                }
            } else {
                FileReason::Change { diff: diff_text(host, wanted.path, contents, &wanted) }
            }
        }
    };
    Some(PutFile {
        path: wanted.path.to_string(),
        contents: wanted.contents.to_vec(),
        sha256,
        size: wanted.contents.len(),
        mode: wanted.mode,
        owner: "root".into(),
        group: "root".into(),
        secret: wanted.secret,
        reason,
    })
}

fn diff_text(host: &str, path: &str, old: &Option<Vec<u8>>, wanted: &Wanted<'_>) -> DiffText {
    if wanted.secret {
        return DiffText::Redacted;
    }
    let Some(old) = old else {
        return DiffText::Unavailable("the current contents were not read".into());
    };
    match (std::str::from_utf8(old), std::str::from_utf8(wanted.contents)) {
        (Ok(old), Ok(new)) => DiffText::Unified(unified_diff(
            old,
            new,
            &format!("{path} (on {host})"),
            &format!("{path} (planned)"),
        )),
        _ => DiffText::Unavailable("binary contents".into()),
    }
}
