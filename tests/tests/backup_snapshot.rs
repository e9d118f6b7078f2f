//! Backups against real etcd (3.4.23 and 3.5.1) with mutual TLS on loopback: the snapshot is
//! streamed from a follower, compressed, checked and stored with its sidecar; `verify`
//! restores it into a throwaway etcd and finds the keys written; a flipped byte or a truncated
//! file is refused with the reason; `backup run` writes its status file, keeps N, and fails
//! visibly (non-zero, one line) without touching earlier backups when it cannot write.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kubeforge::backup::source::{self, Origin};
use kubeforge::backup::verify::{self, EtcdTools, VerifyError};
use kubeforge::backup::{self, Sidecar, retention, store};
use kubeforge::etcd::{Endpoint, EtcdClient, Timeouts};
use kubeforge_tests::etcd::{EtcdCluster, etcd_binary, etcd35_binary};
use kubeforge_tests::lab::kubeforge_bin;

fn endpoints(cluster: &EtcdCluster) -> Vec<Endpoint> {
    cluster.members.iter().map(|m| Endpoint::new(m.name.clone(), m.client_url())).collect()
}

/// The restore tools beside an etcd binary (etcdutl or etcdctl), else Debian's etcdctl.
fn tools_for(etcd: &Path) -> EtcdTools {
    let dir = etcd.parent().unwrap();
    EtcdTools::from_dir(dir).unwrap_or_else(|| EtcdTools {
        etcd: etcd.to_path_buf(),
        restore_tool: PathBuf::from("/usr/bin/etcdctl"),
    })
}

async fn write_keys(cluster: &EtcdCluster, n: usize) {
    let ep = &endpoints(cluster)[0];
    let client =
        EtcdClient::connect(ep, Some(&cluster.client_tls()), Timeouts::default()).await.unwrap();
    for i in 0..n {
        client.put(&format!("/test/key-{i:04}"), format!("value-{i}").as_bytes()).await.unwrap();
    }
}

async fn wait_leader(cluster: &EtcdCluster) {
    for _ in 0..100 {
        let ok = async {
            let c = EtcdClient::connect(
                &endpoints(cluster)[0],
                Some(&cluster.client_tls()),
                Timeouts::default(),
            )
            .await?;
            c.linearizable_get("x").await
        };
        if ok.await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("no leader");
}

async fn snapshot_verify_and_refuse(etcd: PathBuf) {
    let cluster = EtcdCluster::start(3, &etcd);
    wait_leader(&cluster).await;
    write_keys(&cluster, 200).await;
    let dir = tempfile::tempdir().unwrap();
    let chosen =
        source::pick_member(&endpoints(&cluster), Some(&cluster.client_tls()), Timeouts::default())
            .await
            .unwrap();
    assert!(!chosen.is_leader, "a follower is preferred");
    let origin =
        Origin { cluster: Some("test"), spec_sha256: None, created_by: "test", prefix: "test" };
    let taken = source::take(&chosen, dir.path(), origin, |_, _| {}).await.unwrap();

    // Stored atomically: only the snapshot and its sidecar, no temporary files.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].ends_with(".db.zst") && names[1].ends_with(".json"), "{names:?}");
    let sidecar = Sidecar::load(&taken.sidecar_path).unwrap();
    assert_eq!(sidecar.member, chosen.client.endpoint().name);
    assert_eq!(sidecar.members.len(), 3);
    assert!(sidecar.key_count >= 200, "{}", sidecar.key_count);
    assert_eq!(sidecar.db_size % 512, 0);
    assert!(sidecar.etcd_version.starts_with("3."), "{}", sidecar.etcd_version);
    let text = std::fs::read_to_string(&taken.sidecar_path).unwrap();
    assert!(!text.contains("PRIVATE KEY") && !text.contains("value-1"), "{text}");

    // The raw snapshot inside is exactly what etcd sent: etcd's own tool reads it.
    let tools = tools_for(&etcd);
    let verified = verify::verify(&taken.snapshot.path, &tools).await.unwrap();
    assert!(verified.checked_against_sidecar);
    assert_eq!(verified.key_count, sidecar.key_count, "no writes happened in between");
    assert!(verified.revision >= sidecar.revision, "{verified:?}");
    assert!(verified.revision >= 200);

    // A flipped byte: refused by the checksum, before any restore.
    let flipped = dir.path().join("flipped.db.zst");
    let mut bytes = std::fs::read(&taken.snapshot.path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&flipped, &bytes).unwrap();
    let mut side = sidecar.clone();
    side.file = "flipped.db.zst".into();
    side.save_beside(&flipped).unwrap();
    let err = verify::verify(&flipped, &tools).await.unwrap_err();
    assert!(matches!(err, VerifyError::Checksum { .. }), "{err}");
    assert!(err.to_string().contains("does not match its sidecar"), "{err}");
    // Without a sidecar, the damage is found by zstd or by etcd's own trailer.
    std::fs::remove_file(backup::sidecar::sidecar_path(&flipped)).unwrap();
    let err = verify::verify(&flipped, &tools).await.unwrap_err();
    assert!(matches!(err, VerifyError::Decompress { .. } | VerifyError::Integrity { .. }), "{err}");

    // Truncated: refused (size against the sidecar; without one, zstd's end of frame).
    let truncated = dir.path().join("truncated.db.zst");
    std::fs::write(&truncated, &std::fs::read(&taken.snapshot.path).unwrap()[..mid]).unwrap();
    let err = verify::verify(&truncated, &tools).await.unwrap_err();
    assert!(matches!(err, VerifyError::Decompress { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    // A database byte flipped before compression (a well-formed zstd file): etcd's trailer.
    let raw = dir.path().join("raw.db");
    verify::check_and_decompress(&taken.snapshot.path, &raw).unwrap();
    let mut db = std::fs::read(&raw).unwrap();
    db[5000] ^= 1;
    let bad = dir.path().join("bad-db.db.zst");
    std::fs::write(&bad, zstd_compress(&db)).unwrap();
    let err = verify::verify(&bad, &tools).await.unwrap_err();
    assert!(err.to_string().contains("sha256 trailer does not match"), "{err}");
    // The same with the trailer cut off.
    let cut = dir.path().join("cut.db.zst");
    std::fs::write(&cut, zstd_compress(&std::fs::read(&raw).unwrap()[..db.len() - 32])).unwrap();
    let err = verify::verify(&cut, &tools).await.unwrap_err();
    assert!(err.to_string().contains("truncated or not an etcd snapshot"), "{err}");
}

fn zstd_compress(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_verify_and_refuse_etcd34() {
    snapshot_verify_and_refuse(etcd_binary()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_verify_and_refuse_etcd35() {
    let Some(bin) = etcd35_binary() else {
        assert!(std::env::var_os("CI").is_none(), "etcd 3.5 missing under CI");
        eprintln!("skipped: no etcd 3.5 binary");
        return;
    };
    snapshot_verify_and_refuse(bin).await;
}

struct Contained {
    rc: i32,
    stderr: String,
    /// `ls -a` of the directory inside the namespace, after the run.
    listing: String,
}

/// Runs `setup`, then `argv`, in a private mount namespace (`unshare -m`), as root.
fn in_private_mount(setup: &str, argv: &[String], dir: &Path) -> Contained {
    let quoted: Vec<String> = argv.iter().map(|a| format!("'{a}'")).collect();
    let script = format!(
        "{setup} || exit 99; {}; rc=$?; ls -a {} 1>&3; exit $rc",
        quoted.join(" "),
        dir.display()
    );
    let listing = tempfile::NamedTempFile::new().unwrap();
    let out = Command::new("unshare")
        .args(["-m", "sh", "-c", &format!("exec 3>{}; {script}", listing.path().display())])
        .output()
        .expect("run unshare (util-linux)");
    let rc = out.status.code().unwrap_or(-1);
    assert_ne!(rc, 99, "setup failed: {}", String::from_utf8_lossy(&out.stderr));
    Contained {
        rc,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        listing: std::fs::read_to_string(listing.path()).unwrap(),
    }
}

fn run_argv(cluster: &EtcdCluster, destination: &Path, retention: usize) -> Vec<String> {
    let eps: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    vec![
        kubeforge_bin().display().to_string(),
        "backup".into(),
        "run".into(),
        format!("--etcd-endpoints={}", eps.join(",")),
        format!("--etcd-cacert={}", cluster.ca.cert.display()),
        format!("--etcd-cert={}", cluster.client.cert.display()),
        format!("--etcd-key={}", cluster.client.key.display()),
        format!("--destination={}", destination.display()),
        format!("--retention={retention}"),
    ]
}

fn run_backup(cluster: &EtcdCluster, destination: &Path, retention: usize) -> std::process::Output {
    let eps: Vec<String> = cluster.members.iter().map(|m| m.client_url()).collect();
    Command::new(kubeforge_bin())
        .args(["backup", "run"])
        .arg(format!("--etcd-endpoints={}", eps.join(",")))
        .arg(format!("--etcd-cacert={}", cluster.ca.cert.display()))
        .arg(format!("--etcd-cert={}", cluster.client.cert.display()))
        .arg(format!("--etcd-key={}", cluster.client.key.display()))
        .arg(format!("--destination={}", destination.display()))
        .arg(format!("--retention={retention}"))
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_keeps_n_writes_status_and_fails_visibly() {
    let cluster = EtcdCluster::start(1, &etcd_binary());
    wait_leader(&cluster).await;
    write_keys(&cluster, 20).await;
    let dest = tempfile::tempdir().unwrap();
    let dest = dest.path().join("backups");
    for _ in 0..3 {
        let out = run_backup(&cluster, &dest, 2);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.starts_with("kubeforge backup run: saved "), "{stdout}");
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
    }
    let entries = store::list(&dest).unwrap();
    assert_eq!(entries.len(), 2, "retention keeps 2: {entries:?}");
    let status = store::RunStatus::load(&dest);
    assert_eq!(status.last_result.as_deref(), Some("success"));
    assert!(status.last_success.is_some() && status.last_failure.is_none());
    let tools = tools_for(&etcd_binary());
    verify::verify(&entries[0].path, &tools).await.unwrap();

    // The destination not writable: non-zero, one clear line, earlier backups kept.
    let before: Vec<_> = store::list(&dest).unwrap().into_iter().map(|e| e.path).collect();
    let blocked = dest.join("blocked");
    std::fs::write(&blocked, b"not a directory").unwrap();
    let out = run_backup(&cluster, &blocked.join("sub"), 2);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("kubeforge backup run failed: cannot create the directory"),
        "{stderr}"
    );
    let after: Vec<_> = store::list(&dest).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(before, after);

    // The destination read-only, and full, with earlier backups in it (a private mount
    // namespace: a read-only bind mount, a 256 KiB tmpfs filled up).
    let ro = in_private_mount(
        &format!("mount --bind -o ro {d} {d}", d = dest.display()),
        &run_argv(&cluster, &dest, 1),
        &dest,
    );
    assert_ne!(ro.rc, 0);
    assert_eq!(ro.stderr.lines().count(), 1, "{}", ro.stderr);
    assert!(ro.stderr.contains("Read-only file system"), "{}", ro.stderr);
    let full_dir = dest.parent().unwrap().join("full");
    std::fs::create_dir(&full_dir).unwrap();
    let earlier = &before[0];
    let setup = format!(
        "mount -t tmpfs -o size=256k tmpfs {d} && cp {snap} {side} {d}/ && \
         (head -c 10M /dev/zero > {d}/filler 2>/dev/null || true)",
        d = full_dir.display(),
        snap = earlier.display(),
        side = backup::sidecar::sidecar_path(earlier).display(),
    );
    let full = in_private_mount(&setup, &run_argv(&cluster, &full_dir, 1), &full_dir);
    assert_ne!(full.rc, 0);
    assert_eq!(full.stderr.lines().count(), 1, "{}", full.stderr);
    assert!(full.stderr.contains("No space left on device"), "{}", full.stderr);
    let name = earlier.file_name().unwrap().to_string_lossy().into_owned();
    let mut expected = vec![name.clone(), name.replace(".db.zst", ".json"), "filler".into()];
    expected.sort();
    let mut left: Vec<String> = full.listing.lines().map(str::to_string).collect();
    left.retain(|l| l != "." && l != ".." && l != "kubeforge-backup-status.json");
    left.sort();
    assert_eq!(left, expected, "no temporary file left, the earlier backup kept");

    // A member down: non-zero, the status file records the failure, backups kept.
    let mut cluster = cluster;
    cluster.stop("m1");
    let out = run_backup(&cluster, &dest, 1);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no healthy etcd member"), "{stderr}");
    let status = store::RunStatus::load(&dest);
    assert_eq!(status.last_result.as_deref(), Some("failure"));
    assert!(status.last_success.is_some(), "the last success stays recorded");
    let kept: Vec<_> = store::list(&dest).unwrap().into_iter().map(|e| e.path).collect();
    assert_eq!(kept, before, "a failed run deletes nothing, even with --retention=1");
}

#[test]
fn prune_keeps_newest_and_newest_verified() {
    let dir = tempfile::tempdir().unwrap();
    let mk = |name: &str, created: &str, verified: bool| {
        let path = dir.path().join(format!("{name}.db.zst"));
        std::fs::write(&path, name).unwrap();
        let sidecar = Sidecar {
            format: 1,
            cluster: None,
            cluster_id: "1".into(),
            member: "m".into(),
            member_id: "1".into(),
            endpoint: "e".into(),
            etcd_version: "3.4.23".into(),
            revision: 1,
            key_count: 1,
            members: vec![],
            spec_sha256: None,
            file: format!("{name}.db.zst"),
            file_size: 1,
            file_sha256: "x".into(),
            compression: "zstd".into(),
            db_size: 512,
            db_sha256: "y".into(),
            created_at: created.into(),
            created_by: "test".into(),
            verified: verified.then(|| backup::sidecar::VerifyRecord {
                at: created.into(),
                revision: 1,
                key_count: 1,
                etcd_version: "3.4.23".into(),
            }),
        };
        sidecar.save_beside(&path).unwrap();
    };
    mk("a", "2026-01-01T00:00:00Z", true);
    mk("b", "2026-01-02T00:00:00Z", false);
    mk("c", "2026-01-03T00:00:00Z", false);
    mk("d", "2026-01-04T00:00:00Z", false);
    std::fs::write(dir.path().join("orphan.db.zst"), b"x").unwrap();
    assert!(retention::prune(dir.path(), 0).is_err());
    let deleted = retention::prune(dir.path(), 2).unwrap();
    let names: Vec<String> =
        deleted.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["b.db.zst"]);
    assert!(!dir.path().join("b.json").exists(), "snapshot and sidecar go together");
    let left: Vec<String> = store::list(dir.path()).unwrap().into_iter().map(|e| e.name).collect();
    assert_eq!(left, ["d", "c", "a", "orphan"]);
}
