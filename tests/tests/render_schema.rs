//! Every rendered Kubernetes API object (static pods, the backup CronJob, each document of the
//! add-on manifests) of every example and every supported minor is checked against the official
//! OpenAPI schema of its version with
//! PyPI's `kubernetes-validate --strict` (unknown fields rejected), offline. The venv comes from
//! tests/tools/kubernetes-validate-venv.sh (tests/setup.sh runs it); if it cannot be made, the
//! test fails under CI/KUBEFORGE_E2E and elsewhere says so and skips (`kubeforge_tests::require`). Component configs (KubeletConfiguration, EncryptionConfiguration,
//! AuthenticationConfiguration, audit Policy) have no published schema; the golden and CIS tests
//! pin them.

#[path = "render_support.rs"]
mod support;

use std::path::PathBuf;
use std::process::Command;

/// Kinds with an official schema; everything else we render must be one of `NO_SCHEMA`.
const API_KINDS: [&str; 10] = [
    "Pod",
    "CronJob",
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "ConfigMap",
    "Deployment",
    "DaemonSet",
    "Service",
];
const NO_SCHEMA: [&str; 4] =
    ["KubeletConfiguration", "EncryptionConfiguration", "AuthenticationConfiguration", "Policy"];

fn validator() -> Option<PathBuf> {
    let script = support::repo_root().join("tests/tools/kubernetes-validate-venv.sh");
    let output = Command::new("bash").arg(&script).output().ok()?;
    if !output.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    let bin = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim().to_string());
    Some(bin.join("kubernetes-validate")).filter(|p| p.exists())
}

fn kind(text: &str) -> Option<String> {
    let value: serde_json::Value = serde_saphyr::from_str(text).ok()?;
    value.get("kind")?.as_str().map(String::from)
}

/// The documents of a YAML stream separated by `---` lines (our templates write no other
/// document markers).
fn documents(text: &str) -> Vec<&str> {
    text.split("\n---\n").filter(|d| !d.trim().is_empty()).collect()
}

fn validate(tool: &PathBuf, version: &str, files: &[PathBuf]) -> (bool, String) {
    let output = Command::new(tool)
        .args(["--strict", "--no-warn", "-k", version])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success() && !text.contains("ERROR"), text)
}

#[test]
fn every_rendered_object_matches_the_official_schema() {
    let Some(tool) = validator() else {
        let what = "the kubernetes-validate venv (tests/tools/kubernetes-validate-venv.sh, run \
                    by tests/setup.sh; needs python3-venv and PyPI)";
        kubeforge_tests::require(false, what);
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    let mut kinds = std::collections::BTreeSet::new();
    for example in support::EXAMPLES {
        for minor in 31..=34 {
            let mut cluster = support::example(example);
            cluster.kubernetes_version.minor = minor;
            let release =
                kubeforge_playbooks::versions::release(cluster.kubernetes_version).unwrap();
            cluster.etcd.version = release.etcd.to_string();
            let tree = support::render_configs(&cluster);
            let mut files = Vec::new();
            for (host, host_files) in &tree.hosts {
                for (path, file) in host_files.iter().filter(|(p, _)| p.ends_with(".yaml")) {
                    let text = std::str::from_utf8(&file.contents).unwrap();
                    // Add-on manifests hold several documents: each is checked on its own.
                    for (index, doc) in documents(text).into_iter().enumerate() {
                        let Some(kind) = kind(doc) else {
                            assert!(
                                !path.contains("/addons/"),
                                "{host}{path}: document {index} has no kind"
                            );
                            continue;
                        };
                        if NO_SCHEMA.contains(&kind.as_str()) {
                            continue;
                        }
                        assert!(
                            API_KINDS.contains(&kind.as_str()),
                            "{host}{path}: unexpected kind {kind}"
                        );
                        kinds.insert(kind);
                        let name = format!(
                            "{example}-{minor}-{host}-{}-{index}.yaml",
                            path.replace('/', "_")
                        );
                        let target = dir.path().join(name);
                        std::fs::write(&target, doc).unwrap();
                        files.push(target);
                    }
                }
            }
            checked += files.len();
            let (ok, out) = validate(&tool, &format!("1.{minor}.0"), &files);
            assert!(ok, "{example} v1.{minor}: schema violations:\n{out}");
        }
    }
    assert!(checked > 0);
    // Every kind the add-ons use was seen, so none slipped through unchecked.
    for kind in API_KINDS {
        assert!(kinds.contains(kind), "no rendered {kind} was checked");
    }
    // node-local with an endpoint port other than the apiserver's splits kube-proxy in two
    // DaemonSets with node affinity; the examples do not reach that shape, so check it here.
    let mut split = support::example("node-local");
    let first = split.hosts[0].address;
    split.control_plane_endpoint = Some(kubeforge_playbooks::model::Endpoint::ip(first, 8443));
    let tree = support::render_configs(&split);
    let proxy = support::text(&tree, "cp1", "/etc/kubernetes/addons/kube-proxy.yaml");
    let docs = documents(proxy);
    let daemon_sets = docs.iter().filter(|d| kind(d).as_deref() == Some("DaemonSet")).count();
    assert_eq!(daemon_sets, 2, "{proxy}");
    let mut files = Vec::new();
    for (index, doc) in docs.into_iter().enumerate() {
        let target = dir.path().join(format!("split-kube-proxy-{index}.yaml"));
        std::fs::write(&target, doc).unwrap();
        files.push(target);
    }
    let (ok, out) = validate(&tool, "1.32.0", &files);
    assert!(ok, "node-local split kube-proxy: schema violations:\n{out}");

    // The check can fail: an unknown field and a mistyped port are refused in strict mode.
    let bad = dir.path().join("bad.yaml");
    let pod = support::text(
        &support::render_configs(&support::example("stacked")),
        "cp1",
        "/etc/kubernetes/manifests/kube-scheduler.yaml",
    )
    .replace("imagePullPolicy: IfNotPresent", "imagePullPolicy: IfNotPresent\n    resouces: {}");
    std::fs::write(&bad, pod).unwrap();
    let (ok, out) = validate(&tool, "1.33.0", &[bad]);
    assert!(!ok, "strict validation accepted an unknown field:\n{out}");
    // And an add-on document with a misspelled field is refused too.
    let bad_addon = dir.path().join("bad-addon.yaml");
    let addons = support::render_configs(&support::example("stacked"));
    let proxy = support::text(&addons, "cp1", "/etc/kubernetes/addons/kube-proxy.yaml");
    let daemon_set = documents(proxy)
        .into_iter()
        .find(|d| kind(d).as_deref() == Some("DaemonSet"))
        .unwrap()
        .replace("hostNetwork: true", "hostNetwrk: true");
    std::fs::write(&bad_addon, daemon_set).unwrap();
    let (ok, out) = validate(&tool, "1.33.0", &[bad_addon]);
    assert!(!ok, "strict validation accepted a misspelled DaemonSet field:\n{out}");
}
