//! Reading the cluster spec file: a size-bounded read, then parsing and validation in
//! `kubeforge-playbooks`. Every command that needs the cluster calls [`load`]; `validate`
//! uses [`check`] to render the problems itself (human or JSON).

use std::fs::File;
use std::io::Read;
use std::path::Path;

use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::spec::{self, Diagnostics, MAX_SPEC_BYTES, Position, Problem};

/// Why a spec could not be used.
#[derive(Debug)]
pub enum SpecError {
    /// The file could not be read (missing, unreadable, too large, not UTF-8…).
    Unreadable(Diagnostics),
    /// The file was read and has problems.
    Invalid(Diagnostics),
}

impl SpecError {
    pub fn diagnostics(&self) -> &Diagnostics {
        match self {
            SpecError::Unreadable(d) | SpecError::Invalid(d) => d,
        }
    }
    pub fn into_report(self) -> miette::Report {
        match self {
            SpecError::Unreadable(d) | SpecError::Invalid(d) => miette::Report::new(d),
        }
    }
}

/// Reads, parses and validates the spec at `path`; on failure a report with every problem and
/// the source snippets.
pub fn load(path: &Path) -> miette::Result<Cluster> {
    check(path).map_err(SpecError::into_report)
}

/// Like [`load`], keeping the problems as data.
pub fn check(path: &Path) -> Result<Cluster, SpecError> {
    let origin = path.display().to_string();
    let bytes = read_bounded(path).map_err(SpecError::Unreadable)?;
    let text = spec::decode(&bytes, &origin).map_err(SpecError::Unreadable)?;
    spec::load_str(text, &origin).map_err(SpecError::Invalid)
}

/// The file's bytes, refusing to read more than [`MAX_SPEC_BYTES`] (so a mistaken path to a
/// huge file or a device cannot exhaust memory).
pub fn read_bounded(path: &Path) -> Result<Vec<u8>, Diagnostics> {
    let origin = path.display().to_string();
    let fail = |message: String, help: &str| {
        Diagnostics::single(&origin, Problem::new("", Position::START, message, help))
    };
    let file = File::open(path).map_err(|e| {
        let help = if e.kind() == std::io::ErrorKind::NotFound {
            "pass the spec with `-f FILE`, or write an example with `kubeforge init`"
        } else {
            "check the path and its permissions"
        };
        fail(format!("cannot open {origin}: {e}"), help)
    })?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(fail(format!("{origin} is a directory"), "pass the spec file with `-f FILE`"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_SPEC_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| {
        fail(format!("cannot read {origin}: {e}"), "check the file and its permissions")
    })?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(fail(
            format!(
                "{origin} is larger than {MAX_SPEC_BYTES} bytes, the most a cluster spec may have"
            ),
            "check that this is the cluster spec; even 50,000 hosts fit in a few MiB",
        ));
    }
    Ok(bytes)
}
