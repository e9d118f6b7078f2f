//! `kubeforge plan` is read-only: whatever the spec asks for, it never writes a certificate, key
//! or secret into the state dir (issue 10 item 4). It says what `apply` would issue or reissue
//! and why; `apply` does it. Driven through the CLI library with a real state dir; the hosts are
//! loopback addresses on a closed port, so nothing leaves this machine and every host is simply
//! unreachable (the plan is still made for the state dir's part).

mod pki_common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kubeforge::commands::{certs, plan};
use kubeforge::context::{Global, OutputFormat};
use kubeforge::state::StateDir;
use pki_common::example;

/// Every file under `dir` → its bytes (missing dir: empty).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The stacked example with every host on a loopback address and a closed SSH port.
fn spec(extra_san: &str) -> String {
    let port = closed_port();
    example("stacked")
        .replace("10.88.0.", "127.0.88.")
        .replace("port: 22\n", &format!("port: {port}\n"))
        .replace("ssh: {user: admin, port: 2222}", &format!("ssh: {{user: admin, port: {port}}}"))
        .replace("api.prod-eu1.example.com", extra_san)
}

#[test]
fn plan_never_writes_certificates_keys_or_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let spec_path = tmp.path().join("cluster.yaml");
    let state = tmp.path().join("state");
    let global = Global {
        file: spec_path.clone(),
        state: Some(state.clone()),
        output: OutputFormat::Human,
        verbose: 0,
        yes: false,
    };
    let args = |until: &str| plan::Args {
        until: Some(until.parse().unwrap()),
        skip_phases: Vec::new(),
        concurrency: 4,
        allow_unverified_artifacts: false,
    };

    // No state dir yet: plan creates no PKI and no secrets.json.
    std::fs::write(&spec_path, spec("api.one.example.com")).unwrap();
    let _ = plan::run(&global, args("pki")).unwrap();
    let files = snapshot(&state);
    assert!(
        files.keys().all(|p| !p.starts_with(state.join("pki")) && !p.ends_with("secrets.json")),
        "plan wrote key material: {:?}",
        files.keys().collect::<Vec<_>>()
    );

    // With a PKI in place, a spec change that reissues the apiserver's certificate leaves the
    // state dir byte for byte as it was.
    let _ = certs::run(&global, certs::Command::Generate).unwrap();
    let before = snapshot(&state.join("pki"));
    assert!(!before.is_empty());
    std::fs::write(&spec_path, spec("api.two.example.com")).unwrap();
    let _ = plan::run(&global, args("pki")).unwrap();
    assert_eq!(snapshot(&state.join("pki")), before, "plan replaced files in the state dir");
    assert!(!state.join("pki-replaced").exists(), "plan must not move anything aside");

    // What apply would do to the state dir is computed, not saved.
    let prepared = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(plan::prepare(&global, &args("pki")))
        .unwrap();
    let described = prepared.pending.describe();
    assert!(described.contains("apiserver.crt"), "the reissue is shown: {described}");
    assert!(!prepared.pending.is_empty());
    // And saving it is what apply does: then the state dir holds the new certificate.
    let dir = StateDir::open(&state).unwrap();
    prepared.pending.save(&dir).unwrap();
    assert_ne!(snapshot(&state.join("pki")), before);
    assert!(state.join("pki-replaced").exists(), "replaced files are kept");
}
