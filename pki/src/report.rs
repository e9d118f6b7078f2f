//! What a PKI run did to each object and why: the report `certs generate`, `certs renew` and
//! `render` print, and the list of store files the caller may replace.

use std::collections::BTreeSet;
use std::fmt;

use time::OffsetDateTime;

use crate::KeyAlgorithm;

/// Why a leaf was reissued or a kubeconfig rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A file of the pair is missing (named).
    Missing(String),
    Unreadable(String),
    KeyMismatch,
    WrongIssuer {
        issuer: String,
        ca: String,
    },
    SubjectChanged {
        have: String,
        want: String,
    },
    SansChanged {
        added: Vec<String>,
        removed: Vec<String>,
    },
    UsagesChanged {
        have: String,
        want: String,
    },
    KeyAlgorithm {
        have: String,
        want: KeyAlgorithm,
    },
    Expiring {
        not_after: OffsetDateTime,
    },
    ServerChanged {
        have: String,
        want: String,
    },
    CaBundleChanged,
    NamesChanged,
    RenewRequested,
    /// A stage of a CA rotation (`trust-both`, `reissue-leaves`, `drop-old`).
    CaRotation(String),
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Missing(file) => write!(f, "{file} is missing"),
            Reason::Unreadable(problem) => write!(f, "unreadable ({problem})"),
            Reason::KeyMismatch => f.write_str("key does not match the certificate"),
            Reason::WrongIssuer { issuer, ca } => {
                write!(f, "issued by {issuer:?}, not by the current {ca}")
            }
            Reason::SubjectChanged { have, want } => write!(f, "subject {have} → {want}"),
            Reason::SansChanged { added, removed } => {
                let mut parts: Vec<String> = added.iter().map(|s| format!("+{s}")).collect();
                parts.extend(removed.iter().map(|s| format!("-{s}")));
                write!(f, "SANs changed ({})", parts.join(", "))
            }
            Reason::UsagesChanged { have, want } => write!(f, "usages {have} → {want}"),
            Reason::KeyAlgorithm { have, want } => write!(f, "key algorithm {have} → {want}"),
            Reason::Expiring { not_after } => {
                write!(f, "expires {}", crate::expiry::fmt_time(*not_after))
            }
            Reason::ServerChanged { have, want } => write!(f, "server {have} → {want}"),
            Reason::CaBundleChanged => f.write_str("CA bundle changed"),
            Reason::NamesChanged => f.write_str("cluster or user name changed"),
            Reason::RenewRequested => f.write_str("renewal requested"),
            Reason::CaRotation(stage) => write!(f, "CA rotation, stage {stage}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Created,
    Reused,
    /// New key and certificate.
    Reissued(Vec<Reason>),
    /// Same certificate and key, other kubeconfig fields updated.
    Rewritten(Vec<Reason>),
    /// `certs renew`: new key, serial and validity; same subject, SANs and usages.
    Renewed,
}

impl Action {
    pub fn verb(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Reused => "reused",
            Action::Reissued(_) => "reissued",
            Action::Rewritten(_) => "rewritten",
            Action::Renewed => "renewed",
        }
    }
    pub fn reasons(&self) -> &[Reason] {
        match self {
            Action::Reissued(r) | Action::Rewritten(r) => r,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportEntry {
    /// The primary store path (`nodes/cp1/apiserver.crt`, `ca.crt`, `nodes/w1/kubelet.conf`).
    pub path: String,
    /// Every store file written for this entry (a pair has two).
    pub files: Vec<String>,
    pub host: Option<String>,
    pub action: Action,
}

/// The outcome of one run, entry by entry, plus notes that need the operator's attention.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub entries: Vec<ReportEntry>,
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn push(
        &mut self,
        path: String,
        files: Vec<String>,
        host: Option<String>,
        action: Action,
    ) {
        self.entries.push(ReportEntry { path, files, host, action });
    }

    /// Store files that existed and were given new contents: the only files the caller may
    /// overwrite when it saves the new store.
    pub fn replaced_files(&self) -> BTreeSet<String> {
        self.entries
            .iter()
            .filter(|e| {
                matches!(e.action, Action::Reissued(_) | Action::Rewritten(_) | Action::Renewed)
            })
            .flat_map(|e| e.files.iter().cloned())
            .collect()
    }

    pub fn count(&self, verb: &str) -> usize {
        self.entries.iter().filter(|e| e.action.verb() == verb).count()
    }

    /// True when nothing was created or changed.
    pub fn is_unchanged(&self) -> bool {
        self.entries.iter().all(|e| e.action == Action::Reused)
    }

    /// Machine-readable form for `-o json`.
    pub fn to_json(&self) -> serde_json::Value {
        let entries: Vec<_> = self
            .entries
            .iter()
            .map(|e| {
                serde_json::json!({
                    "path": e.path,
                    "host": e.host,
                    "action": e.action.verb(),
                    "reasons": e.action.reasons().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect();
        serde_json::json!({ "entries": entries, "notes": self.notes })
    }
}

impl fmt::Display for Report {
    /// One line per object that changed, then a count of reused objects and the notes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in self.entries.iter().filter(|e| e.action != Action::Reused) {
            write!(f, "{:<9} {}", e.action.verb(), e.path)?;
            let reasons: Vec<String> = e.action.reasons().iter().map(|r| r.to_string()).collect();
            if !reasons.is_empty() {
                write!(f, ": {}", reasons.join("; "))?;
            }
            writeln!(f)?;
        }
        writeln!(
            f,
            "{} created, {} reissued, {} rewritten, {} renewed, {} reused",
            self.count("created"),
            self.count("reissued"),
            self.count("rewritten"),
            self.count("renewed"),
            self.count("reused")
        )?;
        for note in &self.notes {
            writeln!(f, "note: {note}")?;
        }
        Ok(())
    }
}
