//! `artifacts.source: dir:<path>`: the inventory the cli builds from an offline directory laid
//! out as `<dir>/<component>/<version>/<file>` (the lab's layout), checked against the
//! directory's SHA256SUMS and the built-in catalog; then preflight on captured lab facts names
//! what a later phase would miss.

use std::fs;
use std::path::{Path, PathBuf};

use kubeforge::artifacts::{ArtifactError, inventory_with, inventory_with_policy};
use kubeforge_playbooks::artifacts::catalog;
use kubeforge_playbooks::plan::{Phase, PhaseSelection};
use sha2::Digest as _;

fn sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

fn spec(source: &str, kubernetes: &str, etcd: &str) -> kubeforge_playbooks::model::Cluster {
    let text = format!(
        "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata:
  name: art
spec:
  kubernetesVersion: {kubernetes}
  etcd:
    version: {etcd}
  loadBalancer:
    mode: none
  artifacts:
    source: \"{source}\"
  hosts:
    - name: cp1
      address: 10.202.255.11
      roles: [control-plane]
    - name: w1
      address: 10.202.255.51
      roles: [worker]
"
    );
    kubeforge_playbooks::spec::load_str(&text, "cluster.yaml").unwrap()
}

/// Writes `files` (relative path → contents) and a SHA256SUMS covering them, as the lab does.
fn lab_dir(root: &Path, files: &[(&str, &[u8])]) {
    let mut sums = String::new();
    for (rel, bytes) in files {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, bytes).unwrap();
        sums.push_str(&format!("{}  {rel}\n", sha256(bytes)));
    }
    fs::write(root.join("SHA256SUMS"), sums).unwrap();
}

const LAB_ETCD: [(&str, &[u8]); 5] = [
    ("etcd/v3.5.1/etcd", b"etcd 3.5.1"),
    ("etcd/v3.5.1/etcdctl", b"etcdctl 3.5.1"),
    ("etcd/v3.5.1/etcdutl", b"etcdutl 3.5.1"),
    ("etcd/v3.4.23/etcd", b"etcd 3.4.23"),
    ("etcd/v3.4.23/etcdctl", b"etcdctl 3.4.23"),
];

fn until(phase: Phase) -> PhaseSelection {
    PhaseSelection::new(Some(phase), &[])
}

#[test]
fn lab_dir_gives_etcd_keys_with_local_hashes() {
    let dir = tempfile::tempdir().unwrap();
    lab_dir(dir.path(), &LAB_ETCD);
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.5.1");
    let inv = inventory_with(
        &cluster,
        Path::new("/nonexistent"),
        &until(Phase::LoadBalancer),
        None,
        catalog::ENTRIES,
    )
    .unwrap();
    assert_eq!(inv.keys().collect::<Vec<_>>(), ["etcd", "etcdctl", "etcdutl"]);
    assert_eq!(inv["etcd"].sha256, sha256(b"etcd 3.5.1"));
    assert_eq!(inv["etcdutl"].path, dir.path().join("etcd/v3.5.1/etcdutl").display().to_string());

    // Before the etcd phase nothing is needed from the directory.
    let inv = inventory_with(&cluster, Path::new("/"), &until(Phase::Pki), None, catalog::ENTRIES)
        .unwrap();
    assert!(inv.is_empty(), "{inv:?}");

    // etcd 3.4 has no etcdutl; the spec's version picks the folder.
    let old = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.4.23");
    let inv =
        inventory_with(&old, Path::new("/"), &until(Phase::Etcd), None, catalog::ENTRIES).unwrap();
    assert_eq!(inv.keys().collect::<Vec<_>>(), ["etcd", "etcdctl"]);
    assert_eq!(inv["etcdctl"].sha256, sha256(b"etcdctl 3.4.23"));
}

#[test]
fn relative_dir_is_taken_from_the_spec_folder() {
    let spec_dir = tempfile::tempdir().unwrap();
    lab_dir(&spec_dir.path().join("bundle"), &LAB_ETCD);
    let cluster = spec("dir:bundle", "v1.33.1", "v3.5.1");
    let inv =
        inventory_with(&cluster, spec_dir.path(), &until(Phase::Etcd), None, catalog::ENTRIES)
            .unwrap();
    assert_eq!(PathBuf::from(&inv["etcd"].path), spec_dir.path().join("bundle/etcd/v3.5.1/etcd"));
}

#[test]
fn a_file_that_differs_from_sha256sums_is_refused_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    lab_dir(dir.path(), &LAB_ETCD);
    fs::write(dir.path().join("etcd/v3.5.1/etcdctl"), b"tampered").unwrap();
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.5.1");
    let err = inventory_with(&cluster, Path::new("/"), &until(Phase::Etcd), None, catalog::ENTRIES)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Checksum { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{} does not match its sha256: expected {} (SHA256SUMS in the artifact directory), \
             found {}",
            dir.path().join("etcd/v3.5.1/etcdctl").display(),
            sha256(b"etcdctl 3.5.1"),
            sha256(b"tampered")
        )
    );
    // Files of phases that are not selected are not read.
    inventory_with(&cluster, Path::new("/"), &until(Phase::Pki), None, catalog::ENTRIES).unwrap();
}

#[test]
fn catalogued_plain_files_are_checked_against_the_catalog() {
    let dir = tempfile::tempdir().unwrap();
    // kubelet v1.33.8 is catalogued as a plain file: a directory copy must be the real one,
    // whatever SHA256SUMS says.
    lab_dir(dir.path(), &[("kubelet/v1.33.8/kubelet", b"not the real kubelet")]);
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.8", "v3.5.21");
    let err =
        inventory_with(&cluster, Path::new("/"), &until(Phase::Workers), None, catalog::ENTRIES)
            .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("kubelet/v1.33.8/kubelet does not match its sha256"), "{text}");
    assert!(
        text.contains(
            "expected 1caa69c5328cfa774218f75f0621a6f10a1b97e095af85015f468aeb8fdf956a or \
             e835f15be6d8b7b27b963a46c4a054f7663c26741f17e003bfcb8271350cf882 (the built-in \
             catalog)"
        ),
        "{text}"
    );
}

#[test]
fn files_nothing_vouches_for_are_refused_unless_the_operator_allows_them() {
    let dir = tempfile::tempdir().unwrap();
    lab_dir(dir.path(), &LAB_ETCD);
    fs::remove_file(dir.path().join("SHA256SUMS")).unwrap();
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.5.1");
    let err = inventory_with(&cluster, Path::new("/"), &until(Phase::Etcd), None, catalog::ENTRIES)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Unverified { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "3 artifact file(s) in {} cannot be verified: neither the built-in catalog nor {} has \
             a sha256 for etcd/v3.5.1/etcd, etcd/v3.5.1/etcdctl, etcd/v3.5.1/etcdutl",
            dir.path().display(),
            dir.path().join("SHA256SUMS").display()
        )
    );
    let help = miette::Diagnostic::help(&err).unwrap().to_string();
    assert!(help.contains("sha256sum etcd/v3.5.1/etcd etcd/v3.5.1/etcdctl"), "{help}");
    assert!(help.contains("--allow-unverified-artifacts"), "{help}");

    // A SHA256SUMS that lacks one of them still leaves that one refused.
    let sums = format!(
        "{}  etcd/v3.5.1/etcd\n{}  etcd/v3.5.1/etcdctl\n",
        sha256(b"etcd 3.5.1"),
        sha256(b"etcdctl 3.5.1")
    );
    fs::write(dir.path().join("SHA256SUMS"), &sums).unwrap();
    let err = inventory_with(&cluster, Path::new("/"), &until(Phase::Etcd), None, catalog::ENTRIES)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("1 artifact file(s)") && err.ends_with("for etcd/v3.5.1/etcdutl"),
        "{err}"
    );

    // Allowed explicitly: taken, and only the one nothing vouches for is marked.
    let inv = inventory_with_policy(
        &cluster,
        Path::new("/"),
        &until(Phase::Etcd),
        None,
        catalog::ENTRIES,
        true,
    )
    .unwrap();
    let marked: Vec<(&str, bool)> = inv.iter().map(|(k, a)| (k.as_str(), a.unverified)).collect();
    assert_eq!(marked, [("etcd", false), ("etcdctl", false), ("etcdutl", true)]);
    // Allowing unverified files never lets a wrong one through.
    fs::write(dir.path().join("etcd/v3.5.1/etcd"), b"tampered").unwrap();
    let err = inventory_with_policy(
        &cluster,
        Path::new("/"),
        &until(Phase::Etcd),
        None,
        catalog::ENTRIES,
        true,
    )
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Checksum { .. }), "{err:?}");
}

#[test]
fn image_archives_and_unpacked_binaries_need_a_sums_line() {
    // What the review found pushed unverified: containerd, crictl, the CNI plugins and image
    // archives (the catalog only knows their release archives).
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = [
        "kubelet/v1.33.1/kubelet",
        "crictl/v1.33.0/crictl",
        "cni-plugins/v1.8.0/bridge",
        "cni-plugins/v1.8.0/host-local",
        "cni-plugins/v1.8.0/loopback",
        "cni-plugins/v1.8.0/portmap",
        "pause/3.10/pause.tar",
    ]
    .iter()
    .map(|rel| (rel.to_string(), format!("contents of {rel}").into_bytes()))
    .collect();
    let refs: Vec<(&str, &[u8])> = files.iter().map(|(r, b)| (r.as_str(), b.as_slice())).collect();
    lab_dir(dir.path(), &refs);
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.5.1");
    let selection = PhaseSelection::new(Some(Phase::Workers), &[Phase::Etcd, Phase::ControlPlane]);
    let inv = inventory_with(&cluster, Path::new("/"), &selection, None, catalog::ENTRIES).unwrap();
    assert!(inv.values().all(|a| !a.unverified), "{inv:?}");
    assert_eq!(inv.len(), 7, "{inv:?}");

    // Without their SHA256SUMS lines every one of them is named.
    fs::write(dir.path().join("SHA256SUMS"), "").unwrap();
    let err = inventory_with(&cluster, Path::new("/"), &selection, None, catalog::ENTRIES)
        .unwrap_err()
        .to_string();
    for (rel, _) in &files {
        assert!(err.contains(rel.as_str()), "{rel} not named: {err}");
    }
}

#[test]
fn a_broken_sums_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    lab_dir(dir.path(), &LAB_ETCD);
    let cluster = spec(&format!("dir:{}", dir.path().display()), "v1.33.1", "v3.5.1");
    fs::write(dir.path().join("SHA256SUMS"), "garbage\n").unwrap();
    let err = inventory_with(&cluster, Path::new("/"), &until(Phase::Etcd), None, catalog::ENTRIES)
        .unwrap_err();
    assert!(err.to_string().contains("SHA256SUMS is not a valid SHA256SUMS file: line 1"), "{err}");
}
