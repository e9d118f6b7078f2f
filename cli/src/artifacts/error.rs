//! What can go wrong while finding, downloading and verifying artifacts. Each error names the
//! file or URL and says what to do; none of them is raised for a file that is merely absent
//! (preflight names those per host).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum ArtifactError {
    #[error("cannot read artifact {}", path.display())]
    #[diagnostic(help("check the file's permissions"))]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{file} does not match its sha256: expected {expected} ({against}), found {found}")]
    #[diagnostic(help("{remedy}"))]
    Checksum {
        file: String,
        expected: String,
        found: String,
        /// Where `expected` comes from.
        against: &'static str,
        remedy: String,
    },

    /// `dir:` files that neither the catalog nor `SHA256SUMS` vouches for.
    #[error(
        "{} artifact file(s) in {} cannot be verified: neither the built-in catalog nor {} has a sha256 for {}",
        files.len(),
        dir.display(),
        sums.display(),
        files.join(", ")
    )]
    #[diagnostic(help(
        "check each file against its publisher's checksum, then record it: `cd {} && sha256sum {} >> SHA256SUMS`; \
         or, to push them as they are, pass --allow-unverified-artifacts to plan/apply (the plan then marks each push unverified)",
        dir.display(),
        files.join(" ")
    ))]
    Unverified { dir: PathBuf, files: Vec<String>, sums: PathBuf },

    #[error("{} is not a valid SHA256SUMS file: {detail}", path.display())]
    #[diagnostic(help(
        "write it with `sha256sum <component>/<version>/<file> ... > SHA256SUMS` from the artifact directory"
    ))]
    Sums { path: PathBuf, detail: String },

    /// `what` is `<component> <version>`.
    #[error("cannot download {what} from {url}: {detail}")]
    #[diagnostic(help("{remedy}"))]
    Download { what: String, url: String, detail: String, remedy: String },

    #[error("cannot unpack {archive} ({component} {version}): {detail}")]
    #[diagnostic(help(
        "the archive does not have the expected layout; report it, or provide the files with `artifacts.source: dir:<path>`"
    ))]
    Unpack { component: String, version: String, archive: String, detail: String },

    #[error("cannot {action} {} in the artifact cache", path.display())]
    #[diagnostic(help(
        "check that the cache directory is writable, or point {} elsewhere",
        super::CACHE_ENV
    ))]
    Cache {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "no download cache directory: neither {} nor XDG_CACHE_HOME nor HOME is set",
        super::CACHE_ENV
    )]
    #[diagnostic(help("set {} to a writable directory", super::CACHE_ENV))]
    NoCacheDir,

    #[error("{var}={value:?} is not valid: {detail}")]
    #[diagnostic(help("{remedy}"))]
    BadEnv { var: &'static str, value: String, detail: String, remedy: String },

    #[error("artifacts.source is upstream but no download options were given")]
    NoOptions,
}
