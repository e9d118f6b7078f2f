//! `artifacts.source: upstream`: each needed release file is downloaded once into the
//! operator's cache, verified against the catalog's sha256, unpacked into the layout
//! (`<cache>/<arch>/<component>/<version>/<file>`, the same layout as `dir:`, so a cache folder
//! can be copied to an offline machine and used as `dir:<cache>/<arch>`), and reused on later
//! runs without network.
//!
//! Nothing half-done ever sits under a final name: the download goes to a `.part` file and is
//! unpacked into a temporary folder, which is renamed into place only after the sha256 matched
//! and every expected file was extracted; its `SHA256SUMS` (first line: the release file's
//! sha256) is what marks a cached version complete. A cached version whose files no longer
//! match that list, or whose release hash differs from the catalog's, is downloaded again.
//!
//! Downloads run on a thread of their own with a single-threaded tokio runtime, so this works
//! whether or not the caller is inside a runtime (`plan`/`apply` are).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use kubeforge_playbooks::artifacts::catalog::CatalogEntry;
use kubeforge_playbooks::artifacts::needs::Need;
use kubeforge_playbooks::artifacts::{
    Arch, ArtifactRef, Location, Packaging, layout, upstream_ref,
};
use kubeforge_playbooks::plan::{ArtifactInventory, LocalArtifact};

use super::error::ArtifactError;
use super::hash::{Sha256, file_sha256};

/// Where downloads go and come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// The cache root; files land in `<cache_dir>/<arch>/<component>/<version>/`.
    pub cache_dir: PathBuf,
    /// A base URL serving `<mirror>/<component>/<version>/<release file name>`.
    pub mirror: Option<String>,
    /// The nodes' architecture.
    pub arch: Arch,
}

impl Options {
    /// From `KUBEFORGE_ARTIFACT_CACHE`, `KUBEFORGE_ARTIFACT_MIRROR` (which overrides the spec's
    /// `spec_mirror`, already validated) and `KUBEFORGE_ARTIFACT_ARCH`.
    pub fn from_env(spec_mirror: Option<&str>) -> Result<Options, ArtifactError> {
        let cache_dir = match std::env::var_os(super::CACHE_ENV).filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => super::default_cache_dir().ok_or(ArtifactError::NoCacheDir)?,
        };
        let mirror = match std::env::var(super::MIRROR_ENV).ok().filter(|v| !v.is_empty()) {
            Some(m) if m.starts_with("http://") || m.starts_with("https://") => Some(m),
            Some(value) => {
                return Err(ArtifactError::BadEnv {
                    var: super::MIRROR_ENV,
                    value,
                    detail: "not an http:// or https:// URL".into(),
                    remedy:
                        "set it to the mirror's base URL, e.g. https://mirror.example/kubeforge"
                            .into(),
                });
            }
            None => spec_mirror.map(str::to_string),
        };
        let arch = match std::env::var(super::ARCH_ENV).ok().filter(|v| !v.is_empty()) {
            None => Arch::Amd64,
            Some(value) => super::parse_arch(&value).ok_or_else(|| ArtifactError::BadEnv {
                var: super::ARCH_ENV,
                value,
                detail: "not an architecture kubeforge has artifacts for".into(),
                remedy: "use amd64 or arm64".into(),
            })?,
        };
        Ok(Options { cache_dir, mirror, arch })
    }

    /// Where `r` is fetched from: the mirror when one is set, else the release URL.
    pub fn url_of(&self, r: &ArtifactRef) -> Option<String> {
        let Location::Url(release) = &r.location else { return None };
        Some(match &self.mirror {
            Some(base) => format!(
                "{}/{}/{}/{}",
                base.trim_end_matches('/'),
                r.component.name(),
                r.version,
                r.file_name
            ),
            None => release.clone(),
        })
    }
}

/// The cached files for `needed` (downloading what the cache lacks). Component versions the
/// catalog does not know are left out: preflight names them.
pub fn inventory(
    options: &Options,
    entries: &[CatalogEntry],
    needed: &[Need],
) -> Result<ArtifactInventory, ArtifactError> {
    let mut groups: Vec<(ArtifactRef, Vec<&Need>)> = Vec::new();
    for need in needed {
        if let Some((_, group)) = groups
            .iter_mut()
            .find(|(r, _)| r.component == need.component && r.version == need.version)
        {
            group.push(need);
            continue;
        }
        let Some(r) = upstream_ref(entries, need.component, &need.version, options.arch) else {
            continue;
        };
        if matches!(r.packaging, Packaging::RegistryPull { .. }) {
            continue;
        }
        groups.push((r, vec![need]));
    }
    if groups.is_empty() {
        return Ok(ArtifactInventory::new());
    }
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|source| ArtifactError::Cache {
                        action: "start the downloader for",
                        path: options.cache_dir.clone(),
                        source,
                    })?;
                runtime.block_on(fill(options, &groups))
            })
            .join()
            .unwrap_or_else(|_| {
                Err(ArtifactError::Cache {
                    action: "download into",
                    path: options.cache_dir.clone(),
                    source: std::io::Error::other("the download thread panicked"),
                })
            })
    })
}

async fn fill(
    options: &Options,
    groups: &[(ArtifactRef, Vec<&Need>)],
) -> Result<ArtifactInventory, ArtifactError> {
    let mut client = None;
    let mut inventory = ArtifactInventory::new();
    for (r, group) in groups {
        let dir = version_dir(options, r);
        let sums = match cached(&dir, r)? {
            Some(sums) => sums,
            None => {
                let fetched = match &mut client {
                    Some(c) => download(c, options, r, &dir).await,
                    None => match http_client() {
                        Ok(c) => download(client.insert(c), options, r, &dir).await,
                        Err(e) => Err(download_error(options, r, e)),
                    },
                };
                match fetched {
                    Ok(sums) => sums,
                    // The runtime's binaries may come from the hosts' packages, which only the
                    // facts (gathered later) tell: preflight names this file for the hosts that
                    // lack the binary. A wrong checksum is never soft.
                    Err(e @ ArtifactError::Download { .. })
                        if group.iter().all(|n| n.host_may_provide) =>
                    {
                        eprintln!(
                            "warning: {e}; hosts with {} installed from packages do not need it",
                            r.component
                        );
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            }
        };
        for need in group {
            let path = dir.join(need.file);
            let Some(sha256) = sums.get(need.file) else {
                return Err(ArtifactError::Unpack {
                    component: r.component.to_string(),
                    version: r.version.clone(),
                    archive: r.file_name.clone(),
                    detail: format!("`{}` is not among the unpacked files", need.file),
                });
            };
            inventory.insert(
                need.key.clone(),
                LocalArtifact {
                    path: path.display().to_string(),
                    sha256: sha256.clone(),
                    unverified: false,
                },
            );
        }
    }
    Ok(inventory)
}

/// `<cache>/<arch>/<component>/<version>`.
pub fn version_dir(options: &Options, r: &ArtifactRef) -> PathBuf {
    options.cache_dir.join(r.arch.as_str()).join(layout::relative_path(r.component, &r.version, ""))
}

const SUMS: &str = "SHA256SUMS";

fn source_line(r: &ArtifactRef) -> String {
    format!("# source {} {}", r.sha256.as_deref().unwrap_or("-"), r.file_name)
}

/// The cached files' hashes when the version folder is complete, from this release file, and
/// intact; `None` means download (a damaged folder is removed first).
fn cached(dir: &Path, r: &ArtifactRef) -> Result<Option<BTreeMap<String, String>>, ArtifactError> {
    let sums_path = dir.join(SUMS);
    let text = match std::fs::read_to_string(&sums_path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            remove_stale(dir)?;
            return Ok(None);
        }
        Err(source) => return Err(ArtifactError::Read { path: sums_path, source }),
    };
    let same_source = text.lines().next() == Some(source_line(r).as_str());
    let intact = layout::parse_sha256sums(&text).ok().filter(|sums| {
        same_source
            && r.layout_files().iter().all(|f| {
                sums.get(f)
                    .is_some_and(|want| file_sha256(&dir.join(f)).is_ok_and(|found| found == *want))
            })
    });
    match intact {
        Some(sums) => Ok(Some(sums)),
        None => {
            remove_stale(dir)?;
            Ok(None)
        }
    }
}

fn remove_stale(dir: &Path) -> Result<(), ArtifactError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => {
            Err(ArtifactError::Cache { action: "remove the damaged", path: dir.into(), source })
        }
    }
}

fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .user_agent(concat!("kubeforge/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {}", error_chain(&e)))
}

fn download_error(options: &Options, r: &ArtifactRef, detail: String) -> ArtifactError {
    let url = options.url_of(r).unwrap_or_default();
    let remedy = format!(
        "check that this machine reaches {url} (proxies: HTTPS_PROXY/NO_PROXY); or set {} to a \
         mirror serving <mirror>/{}/{}/{}; or provide the unpacked files offline with \
         `artifacts.source: dir:<dir>` at <dir>/{}/{}/<file>",
        super::MIRROR_ENV,
        r.component,
        r.version,
        r.file_name,
        r.component,
        r.version
    );
    ArtifactError::Download { what: format!("{} {}", r.component, r.version), url, detail, remedy }
}

fn cache_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let path = path.to_path_buf();
    move |source| ArtifactError::Cache { action, path, source }
}

/// Downloads `r` into a `.part` file, checks its sha256, unpacks it into the version folder
/// and returns the unpacked files' hashes.
async fn download(
    client: &reqwest::Client,
    options: &Options,
    r: &ArtifactRef,
    dir: &Path,
) -> Result<BTreeMap<String, String>, ArtifactError> {
    let url = options.url_of(r).unwrap_or_default();
    let parent = dir.parent().unwrap_or(dir);
    std::fs::create_dir_all(parent).map_err(cache_error("create", parent))?;
    // Unique per process and per download, so concurrent runs never share a temporary name.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQUENCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tag = format!("{}.{}.{n}", r.version, std::process::id());
    let part = parent.join(format!(".{tag}.{}.part", r.file_name));
    let staging = parent.join(format!(".{tag}.tmp"));
    eprintln!("Downloading {} {} (linux/{}) from {url}", r.component, r.version, r.arch);
    let result = async {
        let found = fetch(client, &url, &part).await.map_err(|e| download_error(options, r, e))?;
        let expected = r.sha256.clone().unwrap_or_default();
        if found != expected {
            return Err(ArtifactError::Checksum {
                file: url.clone(),
                expected,
                found,
                against: "the built-in catalog",
                remedy: format!(
                    "the download is damaged or the server sent another file; nothing was \
                     cached. Run again; with a mirror ({}), make it serve the genuine {}",
                    super::MIRROR_ENV,
                    r.file_name
                ),
            });
        }
        let sums = unpack(r, &part, &staging)?;
        // Another kubeforge run may have finished the same version meanwhile: keep its
        // verified copy rather than replacing it under a reader (`cached` removes a damaged one).
        if let Some(theirs) = cached(dir, r)? {
            return Ok(theirs);
        }
        match std::fs::rename(&staging, dir) {
            Ok(()) => Ok(sums),
            // ... or finished it just now.
            Err(e) => match cached(dir, r)? {
                Some(theirs) => Ok(theirs),
                None => Err(cache_error("move into place", dir)(e)),
            },
        }
    }
    .await;
    let _ = std::fs::remove_file(&part);
    let _ = std::fs::remove_dir_all(&staging);
    result
}

/// Streams `url` into `dest`, returning the sha256 of what arrived.
async fn fetch(client: &reqwest::Client, url: &str, dest: &Path) -> Result<String, String> {
    // reqwest's messages repeat the URL, which the error already names.
    let mut response = client.get(url).send().await.map_err(|e| error_chain(&e.without_url()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("HTTP {status}"));
    }
    let mut file =
        std::fs::File::create(dest).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    let mut hasher = Sha256::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| error_chain(&e.without_url()))? {
        hasher.update(&chunk);
        file.write_all(&chunk).map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    file.sync_all().map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    Ok(hasher.finish())
}

/// An error with its causes (reqwest's own message omits them: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Unpacks a verified release file into `staging` as layout files (mode 0755) plus the
/// `SHA256SUMS` that marks the folder complete.
fn unpack(
    r: &ArtifactRef,
    file: &Path,
    staging: &Path,
) -> Result<BTreeMap<String, String>, ArtifactError> {
    let _ = std::fs::remove_dir_all(staging);
    std::fs::create_dir_all(staging).map_err(cache_error("create", staging))?;
    let unpack_error = |detail: String| ArtifactError::Unpack {
        component: r.component.to_string(),
        version: r.version.clone(),
        archive: r.file_name.clone(),
        detail,
    };
    match &r.packaging {
        Packaging::Plain => {
            let name = layout::plain_layout_name(r.component, &r.file_name);
            std::fs::copy(file, staging.join(&name)).map_err(cache_error("copy", staging))?;
        }
        Packaging::TarGz(members) => {
            let wanted: BTreeMap<&str, &str> =
                members.iter().map(|m| (m.member.as_str(), m.layout_name.as_str())).collect();
            let archive = std::fs::File::open(file).map_err(cache_error("open", file))?;
            let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive));
            let entries = tar.entries().map_err(|e| unpack_error(e.to_string()))?;
            for entry in entries {
                let mut entry = entry.map_err(|e| unpack_error(e.to_string()))?;
                let path = entry.path().map_err(|e| unpack_error(e.to_string()))?;
                let member = path.to_string_lossy();
                let member = member.trim_start_matches("./").to_string();
                let Some(&layout_name) = wanted.get(member.as_str()) else { continue };
                if !entry.header().entry_type().is_file() {
                    return Err(unpack_error(format!("`{member}` is not a regular file")));
                }
                // Written by name, never with the archive's own path: no traversal, no links.
                let dest = staging.join(layout_name);
                let mut out = std::fs::File::create(&dest).map_err(cache_error("create", &dest))?;
                std::io::copy(&mut entry, &mut out).map_err(|e| unpack_error(e.to_string()))?;
            }
        }
        Packaging::ImageArchive { .. } | Packaging::RegistryPull { .. } => {}
    }
    let mut sums = BTreeMap::new();
    let mut text = format!("{}\n", source_line(r));
    for name in r.layout_files() {
        let path = staging.join(&name);
        if !path.is_file() {
            return Err(unpack_error(format!("the archive has no `{name}`")));
        }
        set_executable(&path)?;
        let sha256 = file_sha256(&path).map_err(cache_error("read", &path))?;
        text.push_str(&format!("{sha256}  {name}\n"));
        sums.insert(name, sha256);
    }
    let sums_path = staging.join(SUMS);
    std::fs::write(&sums_path, text).map_err(cache_error("write", &sums_path))?;
    Ok(sums)
}

fn set_executable(path: &Path) -> Result<(), ArtifactError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .map_err(cache_error("chmod", path))
}
