//! Golden files pin every rendered config and manifest of the three example clusters, byte for
//! byte, plus each file's node mode and secret flag (`MODES`). Regenerate after an intended
//! change with `KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test render_golden` and review
//! the diff.

#[path = "render_support.rs"]
mod support;

use std::collections::BTreeMap;
use std::path::Path;

fn modes(tree: &kubeforge_playbooks::render::RenderTree) -> String {
    let mut out = String::from("# host path mode secret (owner is always root:root)\n");
    for (host, files) in &tree.hosts {
        for (path, file) in files {
            out.push_str(&format!("{host} {path} {:04o} {}\n", file.mode, file.secret));
        }
    }
    out
}

fn read_dir_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn rendered_configs_match_golden_files() {
    let bless = kubeforge_tests::bless();
    let mut failures = Vec::new();
    for example in support::EXAMPLES {
        let tree = support::render_configs(&support::example(example));
        let golden = support::repo_root().join("tests/golden/render").join(example);
        let fresh = tempfile::tempdir().unwrap();
        support::write_tree(&tree, fresh.path());
        std::fs::write(fresh.path().join("MODES"), modes(&tree)).unwrap();
        let want = read_dir_files(&golden);
        let got = read_dir_files(fresh.path());
        if bless {
            let _ = std::fs::remove_dir_all(&golden);
            for (rel, bytes) in &got {
                let target = golden.join(rel);
                std::fs::create_dir_all(target.parent().unwrap()).unwrap();
                std::fs::write(target, bytes).unwrap();
            }
            continue;
        }
        for (rel, bytes) in &got {
            match want.get(rel) {
                None => failures.push(format!("{example}/{rel}: new file, not in the golden set")),
                Some(w) if w != bytes => failures.push(format!(
                    "{example}/{rel} differs from the golden file:\n--- golden\n{}\n--- rendered\n{}",
                    String::from_utf8_lossy(w),
                    String::from_utf8_lossy(bytes)
                )),
                Some(_) => {}
            }
        }
        for rel in want.keys().filter(|rel| !got.contains_key(*rel)) {
            failures.push(format!("{example}/{rel}: golden file no longer rendered"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nIf the change is intended: KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test render_golden",
        failures.join("\n")
    );
}

#[test]
fn rendering_is_deterministic() {
    for example in support::EXAMPLES {
        let cluster = support::example(example);
        assert_eq!(support::render_configs(&cluster), support::render_configs(&cluster));
    }
}
