//! The artifact inventory for a run: the files the selected phases need
//! ([`kubeforge_playbooks::artifacts::needs`]), found in the spec's artifact source, verified and
//! hashed on the operator's machine. The planner only sees the resulting `ArtifactInventory`
//! (key → local path and sha256; the keys are documented in `needs`), pushes from it, and the
//! executor checks the sha256 again on every node after the upload.
//!
//! * `dir:<path>` ([`dir`]): the offline layout `<dir>/<component>/<version>/<file>`, checked
//!   against the catalog or the directory's `SHA256SUMS`; a file neither vouches for is refused
//!   unless the operator passed `--allow-unverified-artifacts` (it is then marked unverified
//!   and the plan says so on every push of it).
//! * `upstream` ([`upstream`]): each needed release file is downloaded once into a local cache
//!   (unpacked into the same layout), verified against the catalog's sha256, and reused on later
//!   runs without network.
//!
//! A file that is simply absent (not in the directory, a version the catalog lacks, or a
//! containerd/runc download that failed: hosts may have those from their packages) is left out
//! of the inventory: preflight names it, per host and phase, with the path or URL and how to
//! provide it. A file that is present but wrong (hash mismatch, damaged download) and any
//! other failed download are errors here, before any host is touched.

mod dir;
mod error;
mod hash;
mod upstream;

use std::path::{Path, PathBuf};

use kubeforge_playbooks::artifacts::{self, Arch, catalog, needs};
use kubeforge_playbooks::model::{ArtifactSource, Cluster};
use kubeforge_playbooks::plan::{ArtifactInventory, PhaseSelection};

pub use error::ArtifactError;
pub use upstream::Options;

/// Overrides the download cache directory (default `$XDG_CACHE_HOME/kubeforge/artifacts`, else
/// `~/.cache/kubeforge/artifacts`).
pub const CACHE_ENV: &str = "KUBEFORGE_ARTIFACT_CACHE";
/// A mirror base URL for `upstream`: files are fetched from
/// `<mirror>/<component>/<version>/<release file name>` instead of the projects' release sites.
pub const MIRROR_ENV: &str = "KUBEFORGE_ARTIFACT_MIRROR";
/// The nodes' architecture for `upstream` downloads (`amd64`, the default, or `arm64`).
pub const ARCH_ENV: &str = "KUBEFORGE_ARTIFACT_ARCH";

/// The files available for the selected phases. `allow_unverified` is the operator's
/// `--allow-unverified-artifacts`: without it a `dir:` file that neither the catalog nor the
/// directory's `SHA256SUMS` vouches for is refused; with it the file is taken and marked
/// unverified (the plan shows it on each push).
pub fn inventory(
    cluster: &Cluster,
    spec_dir: &Path,
    selection: &PhaseSelection,
    allow_unverified: bool,
) -> miette::Result<ArtifactInventory> {
    let options = match &cluster.artifacts {
        ArtifactSource::Dir(_) => None,
        ArtifactSource::Upstream => Some(Options::from_env(cluster.artifact_mirror.as_deref())?),
    };
    Ok(inventory_with_policy(
        cluster,
        spec_dir,
        selection,
        options.as_ref(),
        catalog::ENTRIES,
        allow_unverified,
    )?)
}

/// The spec's etcd release on the operator's machine, from the artifact source (downloaded and
/// verified like any artifact): `etcd` and the tool that restores a snapshot of that release
/// (`etcdctl` for 3.4, `etcdutl` from 3.5). Used to verify backups in a throwaway etcd (`backup
/// verify`, `restore`, the snapshot before `upgrade apply`).
pub fn etcd_tools(cluster: &Cluster, spec_dir: &Path) -> miette::Result<crate::backup::EtcdTools> {
    use kubeforge_playbooks::plan::Phase;
    let selection = PhaseSelection::new(
        Some(Phase::Etcd),
        &[Phase::Preflight, Phase::Os, Phase::Runtime, Phase::Pki],
    );
    let found = inventory(cluster, spec_dir, &selection, false)?;
    let version = &cluster.etcd.version;
    let tool = kubeforge_playbooks::plan::restore_tool(version);
    match (found.get("etcd"), found.get(tool)) {
        (Some(etcd), Some(t)) => Ok(crate::backup::EtcdTools {
            etcd: PathBuf::from(&etcd.path),
            restore_tool: PathBuf::from(&t.path),
        }),
        _ => Err(miette::miette!(
            help = format!(
                "provide etcd {version} (etcd and {tool}) in the spec's artifact source, or pass \
                 --etcd-dir DIR where the command has it"
            ),
            "the artifact source has no etcd {version} binaries (etcd and {tool}) to verify a \
             snapshot with; nothing was changed"
        )),
    }
}

/// [`inventory`] with explicit download options and catalog (tests serve fake files from a
/// loopback mirror with their own catalog), refusing unverified files. `options` is only read
/// for `upstream`.
pub fn inventory_with(
    cluster: &Cluster,
    spec_dir: &Path,
    selection: &PhaseSelection,
    options: Option<&Options>,
    entries: &[catalog::CatalogEntry],
) -> Result<ArtifactInventory, ArtifactError> {
    inventory_with_policy(cluster, spec_dir, selection, options, entries, false)
}

/// [`inventory_with`], taking unverified `dir:` files (marked so) when `allow_unverified`.
pub fn inventory_with_policy(
    cluster: &Cluster,
    spec_dir: &Path,
    selection: &PhaseSelection,
    options: Option<&Options>,
    entries: &[catalog::CatalogEntry],
    allow_unverified: bool,
) -> Result<ArtifactInventory, ArtifactError> {
    let needed = needs::selected(cluster, selection);
    match &cluster.artifacts {
        ArtifactSource::Dir(dir) => dir::inventory(
            &artifacts::dir_relative_to(spec_dir, dir),
            &needed,
            entries,
            allow_unverified,
        ),
        ArtifactSource::Upstream => match options {
            // Every upstream file is checked against the catalog: nothing is unverified.
            Some(options) => upstream::inventory(options, entries, &needed),
            None => Err(ArtifactError::NoOptions),
        },
    }
}

/// The default download cache: `$XDG_CACHE_HOME/kubeforge/artifacts` or
/// `$HOME/.cache/kubeforge/artifacts`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("kubeforge").join("artifacts"))
}

/// Parses an architecture name as the release files spell it.
pub fn parse_arch(name: &str) -> Option<Arch> {
    match name.trim() {
        "amd64" | "x86_64" => Some(Arch::Amd64),
        "arm64" | "aarch64" => Some(Arch::Arm64),
        _ => None,
    }
}
