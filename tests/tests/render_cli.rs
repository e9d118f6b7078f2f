//! `kubeforge render` and `kubeforge certs` end to end through the CLI library (spec file on
//! disk, real state dir, real output dir): node paths and modes on disk, least privilege per
//! host, refusal to write into a foreign directory, byte-identical reruns, renew and
//! check-expiration exit statuses.

mod pki_common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kubeforge::commands::{certs, render};
use kubeforge::context::{Global, OutputFormat};
use kubeforge::state::StateDir;
use pki_common::*;

struct Env {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    global: Global,
}

fn env(example_name: &str) -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let spec = root.join("cluster.yaml");
    std::fs::write(&spec, example(example_name)).unwrap();
    let global = Global {
        file: spec,
        state: Some(root.join("state")),
        output: OutputFormat::Human,
        verbose: 0,
        yes: false,
    };
    Env { _tmp: tmp, root, global }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode()
        & 0o777
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn run_render(e: &Env, out: &Path) -> miette::Result<ExitCode> {
    render::run(&e.global, render::Args { out: out.to_path_buf() })
}

#[test]
fn render_writes_each_host_tree_with_node_modes_and_least_privilege() {
    let e = env("stacked");
    let out = e.root.join("rendered");
    assert_eq!(run_render(&e, &out).unwrap(), ExitCode::SUCCESS);
    let state = e.root.join("state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("pki/ca.key")), 0o600);
    assert_eq!(mode(&state.join("pki/ca.crt")), 0o644);
    assert_eq!(mode(&state.join("pki/super-admin.conf")), 0o600);

    let cp1 = out.join("cp1");
    // The output root is private; folders inside mirror the nodes.
    assert_eq!(mode(&out), 0o700);
    assert_eq!(mode(&cp1.join("etc/kubernetes/pki")), 0o755);
    assert_eq!(mode(&cp1.join("etc/kubernetes/pki/ca.key")), 0o600);
    assert_eq!(mode(&cp1.join("etc/kubernetes/pki/ca.crt")), 0o644);
    assert_eq!(mode(&cp1.join("etc/kubernetes/pki/etcd/server.key")), 0o600);
    assert_eq!(mode(&cp1.join("etc/kubernetes/admin.conf")), 0o600);
    assert_eq!(
        std::fs::read(cp1.join("etc/kubernetes/pki/apiserver.crt")).unwrap(),
        std::fs::read(state.join("pki/nodes/cp1/apiserver.crt")).unwrap()
    );
    for worker in ["worker1", "worker2"] {
        let files = files_under(&out.join(worker));
        let keys: Vec<String> = files
            .iter()
            .map(|p| p.strip_prefix(out.join(worker)).unwrap().display().to_string())
            .filter(|p| p.ends_with(".key"))
            .collect();
        assert_eq!(keys, ["var/lib/kubelet/pki/kubelet.key"], "{worker} keys");
        assert!(files.iter().all(|p| !p.display().to_string().contains("/pki/etcd/")), "{worker}");
        assert_eq!(mode(&out.join(worker).join("etc/kubernetes/kubelet.conf")), 0o600);
    }
    assert!(!files_under(&out).iter().any(|p| p.ends_with("super-admin.conf")));
}

#[test]
fn render_refuses_a_foreign_directory_and_replaces_its_own_output() {
    let e = env("stacked");
    let foreign = e.root.join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "keep me").unwrap();
    let err = run_render(&e, &foreign).unwrap_err().to_string();
    assert!(err.contains("is not empty and was not written by `kubeforge render`"), "{err}");
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "keep me");

    let out = e.root.join("rendered");
    run_render(&e, &out).unwrap();
    let first: Vec<(PathBuf, Vec<u8>)> = files_under(&out)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    std::fs::write(out.join("stale-file"), "from an old render").unwrap();
    run_render(&e, &out).unwrap();
    let second: Vec<(PathBuf, Vec<u8>)> = files_under(&out)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    assert_eq!(first, second, "a second render gives the same tree, stale files gone");
}

#[test]
fn certs_generate_twice_is_byte_identical_then_renew_changes_every_leaf_serial() {
    let e = env("external");
    assert_eq!(certs::run(&e.global, certs::Command::Generate).unwrap(), ExitCode::SUCCESS);
    let state = StateDir::open(&e.root.join("state")).unwrap();
    let first = state.load_pki().unwrap();
    certs::run(&e.global, certs::Command::Generate).unwrap();
    assert_eq!(state.load_pki().unwrap(), first);

    let args = certs::RenewArgs { all: true, names: vec![] };
    certs::run(&e.global, certs::Command::Renew(args)).unwrap();
    let renewed = state.load_pki().unwrap();
    for path in leaf_paths(&first) {
        let (a, b) = (
            kubeforge_pki::inspect_pem(&cert_of(&first, &path)).unwrap(),
            kubeforge_pki::inspect_pem(&cert_of(&renewed, &path)).unwrap(),
        );
        assert_ne!(a.serial_hex, b.serial_hex, "{path}");
        assert_eq!(
            (a.subject(), a.dns_names, a.ip_addresses),
            (b.subject(), b.dns_names, b.ip_addresses),
            "{path}"
        );
    }
    assert_eq!(renewed["ca.crt"], first["ca.crt"]);
    // The previous versions are kept, not lost.
    let kept = std::fs::read_dir(e.root.join("state/pki-replaced")).unwrap().count();
    assert_eq!(kept, 1);

    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        certs::check_expiration(&state, OutputFormat::Json, now).unwrap(),
        ExitCode::SUCCESS
    );
    let expired =
        certs::check_expiration(&state, OutputFormat::Human, now + time::Duration::days(400))
            .unwrap();
    assert_eq!(expired, ExitCode::from(1));
}

#[test]
fn rotate_ca_dry_run_and_status_change_nothing() {
    let e = env("stacked");
    certs::run(&e.global, certs::Command::Generate).unwrap();
    let state = StateDir::open(&e.root.join("state")).unwrap();
    let before = state.load_pki().unwrap();
    let args = |dry_run: bool, status: bool| certs::RotateCaArgs {
        dry_run,
        status,
        ca: kubeforge_pki::Rotated::Ca(kubeforge_pki::CaId::Etcd),
        concurrency: 1,
    };
    let dry = certs::Command::RotateCa(args(true, false));
    assert_eq!(certs::run(&e.global, dry).unwrap(), ExitCode::SUCCESS);
    let status = certs::Command::RotateCa(args(false, true));
    assert_eq!(certs::run(&e.global, status).unwrap(), ExitCode::SUCCESS);
    assert_eq!(state.load_pki().unwrap(), before);
    assert!(!e.root.join("state/rotation.json").exists());
}
