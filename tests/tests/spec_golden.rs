//! Golden files pin the exact diagnostics for every broken spec under `tests/fixtures/specs/`:
//! the rendered report (`<name>.txt`, as `kubeforge validate` prints it, without colour) and the
//! JSON list (`<name>.json`, as `kubeforge validate -o json` prints it). Regenerate after an
//! intended change with `KUBEFORGE_BLESS=1 cargo test -p kubeforge-tests --test spec_golden`
//! and review the diff.

use std::path::{Path, PathBuf};

use miette::{GraphicalReportHandler, GraphicalTheme};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn render(d: &kubeforge_playbooks::spec::Diagnostics) -> String {
    let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .with_links(false);
    let mut out = String::new();
    handler.render_report(&mut out, d).unwrap();
    // Trailing spaces differ between miette versions and editors strip them.
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n") + "\n"
}

#[test]
fn broken_specs_match_golden_diagnostics() {
    let bless = kubeforge_tests::bless();
    let fixtures = root().join("fixtures/specs");
    let golden = root().join("golden/spec");
    let mut names: Vec<String> = std::fs::read_dir(&fixtures)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "fixtures missing: {names:?}");
    let mut failures = Vec::new();
    for name in &names {
        let bytes = std::fs::read(fixtures.join(name)).unwrap();
        let diagnostics = match kubeforge_playbooks::spec::load_bytes(&bytes, name) {
            Ok(_) => {
                failures.push(format!("{name}: validated, but every fixture is broken"));
                continue;
            }
            Err(d) => d,
        };
        for p in &diagnostics.problems {
            assert!(!p.message.is_empty() && !p.help.is_empty(), "{name}: {p:?}");
            assert!(p.line >= 1 && p.column >= 1, "{name}: {p:?}");
        }
        let stem = name.trim_end_matches(".yaml");
        for (ext, got) in [("txt", render(&diagnostics)), ("json", diagnostics.to_json() + "\n")] {
            let path = golden.join(format!("{stem}.{ext}"));
            if bless {
                std::fs::create_dir_all(&golden).unwrap();
                std::fs::write(&path, &got).unwrap();
                continue;
            }
            let want = std::fs::read_to_string(&path).unwrap_or_default();
            if want != got {
                failures.push(format!("{}:\n--- want\n{want}\n--- got\n{got}", path.display()));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden mismatches (KUBEFORGE_BLESS=1 to regenerate):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The most common mistakes must name the field and suggest the fix, whatever the wording.
#[test]
fn typos_get_did_you_mean_hints() {
    let bytes = std::fs::read(root().join("fixtures/specs/typo-fields.yaml")).unwrap();
    let d = kubeforge_playbooks::spec::load_bytes(&bytes, "typo-fields.yaml").unwrap_err();
    let hints: Vec<(&str, &str)> =
        d.problems.iter().map(|p| (p.path.as_str(), p.help.as_str())).collect();
    assert!(
        hints.contains(&("spec.kubernetesVerison", "did you mean `kubernetesVersion`?")),
        "{hints:?}"
    );
    assert!(hints.contains(&("spec.netwrok", "did you mean `network`?")), "{hints:?}");
    assert!(hints.contains(&("spec.hosts[0].adress", "did you mean `address`?")), "{hints:?}");
}
