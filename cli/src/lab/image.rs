//! The lab image: a Debian bookworm root built once with debootstrap (mirror taken from the
//! host's apt sources) and cached under `<cache>/images/`. The build happens in a temporary
//! directory renamed into place only when complete, under a lock, so an interrupted build is
//! never taken as cached. Machines never write to the image: each gets an overlay on top.

use std::fs;
use std::path::{Path, PathBuf};

use super::error::LabError;
use super::layout::fnv1a;
use super::state::{Paths, lock};
use super::{machine, sys};

pub const SUITE: &str = "bookworm";

/// Packages baked into the image (etcd is not: it comes from the artifact source).
pub const PACKAGES: &[&str] = &[
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "iproute2",
    "haproxy",
    "keepalived",
    "containerd",
    "runc",
    "conntrack",
    "socat",
    "ca-certificates",
    // Only so that the plan benchmark can time Ansible against the same machines.
    "python3",
];

/// sshd settings of every machine: root by key only, one host key (made per machine).
pub const SSHD_CONFIG: &str = "\
# Written by kubeforge lab: root logs in with the lab key only.
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
HostKey /etc/ssh/ssh_host_ed25519_key
UseDNS no
";

/// Bumped whenever the steps in [`customize`] change, so that old images are not reused.
const RECIPE_REVISION: u32 = 1;

/// The image directory name: the suite plus a hash of everything that shapes the image.
pub fn image_id() -> String {
    let recipe = format!("{SUITE} {} {RECIPE_REVISION} {SSHD_CONFIG}", PACKAGES.join(","));
    format!("{SUITE}-{:08x}", fnv1a(recipe.as_bytes()) & 0xffff_ffff)
}

/// The Debian mirror for `suite` from apt sources: deb822 `.sources` texts and one-line
/// `sources.list` texts. The first `deb` entry that lists exactly `suite` wins.
pub fn mirror_from_sources(deb822: &[String], one_line: &[String], suite: &str) -> Option<String> {
    for text in deb822 {
        for stanza in text.split("\n\n") {
            let field = |name: &str| {
                stanza.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let enabled = field("Enabled").is_none_or(|v| v != "no");
            let is_deb = field("Types").is_some_and(|t| t.split_whitespace().any(|t| t == "deb"));
            let has_suite =
                field("Suites").is_some_and(|s| s.split_whitespace().any(|s| s == suite));
            if enabled
                && is_deb
                && has_suite
                && let Some(uri) =
                    field("URIs").and_then(|u| u.split_whitespace().next().map(str::to_string))
            {
                return Some(uri);
            }
        }
    }
    for text in one_line {
        for line in text.lines().map(str::trim) {
            let mut words = line.split_whitespace().peekable();
            if words.next() != Some("deb") {
                continue;
            }
            if words.peek().is_some_and(|w| w.starts_with('[')) {
                // Options: skip up to the word closing the bracket.
                for w in words.by_ref() {
                    if w.ends_with(']') {
                        break;
                    }
                }
            }
            if let (Some(uri), Some(s)) = (words.next(), words.next())
                && s == suite
            {
                return Some(uri.to_string());
            }
        }
    }
    None
}

/// The mirror to build from: `KUBEFORGE_LAB_MIRROR`, else the host's apt sources.
pub fn host_mirror() -> Result<String, LabError> {
    if let Some(m) = std::env::var_os("KUBEFORGE_LAB_MIRROR") {
        return Ok(m.to_string_lossy().into_owned());
    }
    let mut deb822 = Vec::new();
    let mut one_line = Vec::new();
    let dir = Path::new("/etc/apt/sources.list.d");
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|e| e.filter_map(|e| Some(e.ok()?.path())).collect())
        .unwrap_or_default();
    files.sort();
    for f in files {
        let Ok(text) = fs::read_to_string(&f) else { continue };
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => deb822.push(text),
            Some("list") => one_line.push(text),
            _ => {}
        }
    }
    if let Ok(text) = fs::read_to_string("/etc/apt/sources.list") {
        one_line.push(text);
    }
    mirror_from_sources(&deb822, &one_line, SUITE).ok_or_else(|| LabError::NoMirror {
        searched: "/etc/apt/sources.list.d/*.sources, *.list and /etc/apt/sources.list".into(),
    })
}

/// The cached image directory, building it first if needed. Returns its path.
pub fn ensure(paths: &Paths) -> Result<PathBuf, LabError> {
    let images = paths.cache.join("images");
    let final_dir = images.join(image_id());
    if is_complete(&final_dir) {
        return Ok(final_dir);
    }
    let _lock = lock(&images.join(".lock"))?;
    if is_complete(&final_dir) {
        return Ok(final_dir); // another process built it while we waited
    }
    remove_stale_builds(&images)?;
    let mirror = host_mirror()?;
    let tmp = images.join(format!(".tmp-{}-{}", image_id(), std::process::id()));
    eprintln!("Building the lab image {} from {mirror} (once; about two minutes)…", image_id());
    let mut cmd = sys::command("debootstrap");
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", PACKAGES.join(",")))
        .arg(SUITE)
        .arg(&tmp)
        .arg(&mirror);
    sys::run(
        "building the lab image with debootstrap",
        &mut cmd,
        "check that the mirror is reachable; the partial image is removed on the next try",
    )?;
    customize(&tmp, &mirror)?;
    if final_dir.exists() {
        // An incomplete directory without the marker (should not happen: only renames create it).
        fs::remove_dir_all(&final_dir)
            .map_err(|e| LabError::io("remove the incomplete image", &final_dir, e))?;
    }
    fs::rename(&tmp, &final_dir)
        .map_err(|e| LabError::io("move the built image into place at", &final_dir, e))?;
    Ok(final_dir)
}

fn marker(dir: &Path) -> PathBuf {
    dir.join("etc/kubeforge-lab-image")
}

fn is_complete(dir: &Path) -> bool {
    marker(dir).is_file()
}

/// Removes `.tmp-*` leftovers of interrupted builds. The lock guarantees no kubeforge is
/// building, but an orphaned debootstrap may still run there: it is stopped first, and what it
/// mounted (proc, sys, bind-mounted devices) is unmounted before anything is deleted, so that
/// removal never reaches into the host's file systems.
pub fn remove_stale_builds(dir: &Path) -> Result<(), LabError> {
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            remove_build_dir(&e.path())?;
        }
    }
    Ok(())
}

fn remove_build_dir(p: &Path) -> Result<(), LabError> {
    for sig in ["TERM", "KILL"] {
        let pids = sys::pids_mentioning(p);
        if pids.is_empty() {
            break;
        }
        let mut kill = sys::command("kill");
        kill.arg(format!("-{sig}")).args(pids.iter().map(u32::to_string));
        let _ = sys::run("stopping an orphaned image build", &mut kill, "");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !sys::pids_mentioning(p).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    machine::unmount_all_under(p)?;
    if let Some(point) = machine::mount_points_under(&machine::read_mountinfo()?, p).first() {
        return Err(LabError::Command {
            what: "cleaning up an interrupted build".into(),
            argv: format!("umount {}", point.display()),
            status: "still mounted".into(),
            stderr_tail: String::new(),
            help: "unmount it by hand, then try again".into(),
        });
    }
    fs::remove_dir_all(p).map_err(|err| LabError::io("remove the interrupted build", p, err))
}

/// Turns a fresh debootstrap root into the shared lab image.
fn customize(root: &Path, mirror: &str) -> Result<(), LabError> {
    let chroot = |what: &str, args: &[&str]| {
        let mut cmd = sys::command("chroot");
        cmd.arg(root).args(args);
        sys::run(what, &mut cmd, "the partial image is removed on the next try").map(|_| ())
    };
    chroot(
        "enabling systemd-networkd in the lab image",
        &["systemctl", "enable", "systemd-networkd"],
    )?;
    // kubeforge configures and starts these; unconfigured they would only fail at boot.
    chroot(
        "disabling haproxy and keepalived in the lab image",
        &["systemctl", "disable", "haproxy", "keepalived"],
    )?;
    chroot("cleaning apt's cache in the lab image", &["apt-get", "clean"])?;
    // Per-machine identity is made at machine creation, never shared through the image.
    for entry in fs::read_dir(root.join("etc/ssh"))
        .map_err(|e| LabError::io("read", root.join("etc/ssh"), e))?
        .flatten()
    {
        if entry.file_name().to_string_lossy().starts_with("ssh_host_") {
            fs::remove_file(entry.path()).map_err(|e| LabError::io("remove", entry.path(), e))?;
        }
    }
    let _ = fs::remove_file(root.join("var/lib/dbus/machine-id"));
    sys::write_atomic(&root.join("etc/machine-id"), b"", 0o444)?;
    sys::write_atomic(
        &root.join("etc/ssh/sshd_config.d/10-kubeforge-lab.conf"),
        SSHD_CONFIG.as_bytes(),
        0o644,
    )?;
    let about = format!(
        "image {}\nsuite {SUITE}\nmirror {mirror}\npackages {}\n",
        image_id(),
        PACKAGES.join(" ")
    );
    sys::write_atomic(&marker(root), about.as_bytes(), 0o644)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_sources_give_the_bookworm_mirror_not_security() {
        let text = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb-src deb\n# a comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            mirror_from_sources(&[text.into()], &[], "bookworm").as_deref(),
            Some("http://mirror.example/debian")
        );
    }

    #[test]
    fn disabled_and_source_only_stanzas_are_skipped() {
        let text = "Types: deb\nEnabled: no\nURIs: http://off.example/\nSuites: bookworm\n\n\
                    Types: deb-src\nURIs: http://src.example/\nSuites: bookworm\n";
        assert_eq!(mirror_from_sources(&[text.into()], &[], "bookworm"), None);
    }

    #[test]
    fn one_line_sources_with_options_work() {
        let text = "# comment\ndeb-src http://src.example/ bookworm main\n\
                    deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n";
        assert_eq!(
            mirror_from_sources(&[], &[text.into()], "bookworm").as_deref(),
            Some("http://one.example/debian")
        );
        assert_eq!(mirror_from_sources(&[], &[text.into()], "trixie"), None);
    }

    #[test]
    fn only_a_marked_image_counts_and_interrupted_builds_are_swept() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path();
        let built = images.join(image_id());
        fs::create_dir_all(built.join("etc")).unwrap();
        assert!(!is_complete(&built), "a root without the marker is not a finished image");
        fs::write(marker(&built), "image").unwrap();
        assert!(is_complete(&built));
        let partial = images.join(format!(".tmp-{}-123", image_id()));
        fs::create_dir_all(partial.join("usr/bin")).unwrap();
        remove_stale_builds(images).unwrap();
        assert!(!partial.exists());
        assert!(is_complete(&built), "the finished image stays");
    }

    #[test]
    fn image_id_names_the_suite_and_changes_with_the_recipe() {
        let id = image_id();
        assert!(id.starts_with("bookworm-") && id.len() == "bookworm-".len() + 8, "{id}");
    }
}
