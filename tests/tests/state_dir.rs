//! The state dir's hygiene, through the commands an operator runs: the default state dir
//! (beside the spec, holding CA keys) ignores itself for git, checked with the real `git`; and
//! every command that writes it (`certs generate`, `certs renew`, `render`) refuses to run
//! while another process holds the state lock, naming that process's pid and the lock file,
//! then works once the holder is gone. The holder is a real other process (`flock(1)`, which
//! takes the same flock(2) lock kubeforge takes).

mod pki_common;

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};

use kubeforge::commands::{certs, render};
use kubeforge::context::{Global, OutputFormat};
use kubeforge_tests::require_tool;
use pki_common::example;

fn global(spec: &Path, state: Option<PathBuf>) -> Global {
    Global { file: spec.to_path_buf(), state, output: OutputFormat::Human, verbose: 0, yes: false }
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git").current_dir(dir).args(args).output().expect("run git");
    assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_default_state_dir_is_never_committed_with_the_spec() {
    if !require_tool("git", "git (the spec repository a state dir must stay out of)") {
        return;
    }
    let repo = tempfile::tempdir().unwrap();
    let spec = repo.path().join("cluster.yaml");
    std::fs::write(&spec, example("stacked")).unwrap();
    git(repo.path(), &["init", "-q"]);
    let g = global(&spec, None);
    assert_eq!(certs::run(&g, certs::Command::Generate).unwrap(), ExitCode::SUCCESS);
    let state = repo.path().join(".kubeforge/prod-eu1");
    assert!(state.join("pki/ca.key").is_file(), "the default state dir is beside the spec");

    git(repo.path(), &["add", "-A"]);
    let staged = git(repo.path(), &["diff", "--cached", "--name-only"]);
    assert_eq!(staged, "cluster.yaml\n", "only the spec is committed");
    // Even a file added later to the state dir (git asked to add it by name) stays out.
    let out = Command::new("git")
        .current_dir(repo.path())
        .args(["add", ".kubeforge/prod-eu1/pki/ca.key"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "git refuses to add an ignored CA key without -f");
}

/// Another process holding the state lock of `state`, its pid written in the lock file as
/// kubeforge writes it.
struct Holder {
    child: Child,
}

impl Holder {
    fn start(state: &Path) -> Holder {
        std::fs::create_dir_all(state).unwrap();
        let lock = state.join("state.lock");
        // Its own process group, so that dropping the holder ends flock and its `sleep`.
        let child = Command::new("sh")
            .process_group(0)
            .arg("-c")
            .arg(r#"echo $$ > "$1" && exec flock "$1" sleep 300"#)
            .arg("sh")
            .arg(&lock)
            .spawn()
            .expect("spawn flock");
        // Owned (and so killed on drop) before anything can panic.
        let holder = Holder { child };
        // Wait until flock(1) really holds the lock.
        for _ in 0..200 {
            if let Ok(f) = std::fs::File::open(&lock) {
                match f.try_lock() {
                    Err(std::fs::TryLockError::WouldBlock) => return holder,
                    Ok(()) => {
                        let _ = f.unlock();
                    }
                    Err(_) => {}
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("flock never took {}", lock.display());
    }
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

#[test]
fn every_state_writer_is_refused_while_another_process_holds_the_lock() {
    if !require_tool("flock", "flock(1) from util-linux (stands for another kubeforge)") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let spec = tmp.path().join("cluster.yaml");
    std::fs::write(&spec, example("external")).unwrap();
    let state = tmp.path().join("state");
    let g = global(&spec, Some(state.clone()));
    // A PKI to renew later.
    certs::run(&g, certs::Command::Generate).unwrap();
    let before = std::fs::read(state.join("pki/ca.crt")).unwrap();

    let holder = Holder::start(&state);
    let lock = state.canonicalize().unwrap().join("state.lock");
    let out = tmp.path().join("rendered");
    let attempts: Vec<(&str, miette::Result<ExitCode>)> = vec![
        ("certs generate", certs::run(&g, certs::Command::Generate)),
        (
            "certs renew",
            certs::run(&g, certs::Command::Renew(certs::RenewArgs { all: true, names: vec![] })),
        ),
        ("render", render::run(&g, render::Args { out: out.clone() })),
    ];
    for (what, result) in attempts {
        let err = match result {
            Ok(code) => panic!("{what} ran ({code:?}) while another process held the lock"),
            Err(e) => format!("{e:?}"),
        };
        assert!(err.contains(&format!("(pid {})", holder.pid())), "{what}: {err}");
        assert!(err.contains(&lock.display().to_string()), "{what}: {err}");
    }
    assert!(!out.exists(), "render wrote nothing");
    assert_eq!(std::fs::read(state.join("pki/ca.crt")).unwrap(), before);

    drop(holder);
    assert_eq!(render::run(&g, render::Args { out: out.clone() }).unwrap(), ExitCode::SUCCESS);
    let renew = certs::RenewArgs { all: true, names: vec![] };
    assert_eq!(certs::run(&g, certs::Command::Renew(renew)).unwrap(), ExitCode::SUCCESS);
}
