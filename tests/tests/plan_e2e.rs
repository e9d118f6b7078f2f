//! End-to-end test of plan/apply on lab machines: `apply --until runtime` on four machines,
//! then a re-plan says "No changes."; with one machine powered off, plan and apply name it as
//! unreachable while the others are unaffected (still converged, still reachable). Needs root
//! and the lab's tools; runs only with KUBEFORGE_E2E=1 and prints why it skipped otherwise.

use std::path::PathBuf;

use kubeforge_tests::lab::{kubeforge, text};

const LAB: &str = "kfplane2e";

/// Brings the lab down however the test ends.
struct LabGuard(PathBuf);

impl Drop for LabGuard {
    fn drop(&mut self) {
        let _ = kubeforge(&self.0, &["lab", "down", "--name", LAB]);
    }
}

#[test]
fn apply_until_runtime_converges_and_an_unreachable_machine_is_named() {
    if !kubeforge_tests::lab::enabled() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let spec = d.join("lab.cluster.yaml");
    let spec_arg = spec.to_str().unwrap();
    let up = kubeforge(d, &["lab", "up", "--name", LAB, "--spec-out", spec_arg]);
    let _guard = LabGuard(d.to_path_buf());
    assert!(up.status.success(), "{}", text(&up));

    let apply = kubeforge(d, &["apply", "-f", spec_arg, "--until", "runtime", "--yes"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let plan = kubeforge(d, &["plan", "-f", spec_arg, "--until", "runtime"]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(String::from_utf8_lossy(&plan.stdout).ends_with("No changes.\n"), "{}", text(&plan));

    let stop = kubeforge(d, &["lab", "stop", "--name", LAB, "w1"]);
    assert!(stop.status.success(), "{}", text(&stop));
    let apply = kubeforge(d, &["apply", "-f", spec_arg, "--until", "runtime", "--yes"]);
    let shown = text(&apply);
    assert!(!apply.status.success(), "{shown}");
    assert!(shown.contains("w1 [preflight/reachable]"), "{shown}");
    assert!(shown.contains("host:    w1"), "{shown}");
    for other in ["cp1", "cp2", "cp3"] {
        assert!(
            !shown.contains(&format!("host:    {other}")),
            "{other} must be unaffected: {shown}"
        );
    }
    let plan = kubeforge(d, &["-o", "json", "plan", "-f", spec_arg, "--until", "runtime"]);
    let json: serde_json::Value = serde_json::from_slice(&plan.stdout).expect("plan json");
    assert_eq!(
        json["blocked"].as_object().map(|b| b.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["w1".to_string()])
    );
    let phases = json["phases"].as_array().unwrap();
    assert!(
        phases.iter().all(|p| p["hosts"].as_object().is_some_and(|h| h.is_empty())),
        "others converged: {json}"
    );
}
