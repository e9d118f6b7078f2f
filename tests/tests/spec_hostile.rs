//! Hostile and malformed input: every case must end in a clear error (or a valid cluster) —
//! never a panic, a stack overflow or unbounded memory. The budgets that make this true are in
//! `kubeforge_playbooks::spec::yaml`; speed is measured by `cargo bench -p kubeforge-playbooks`.

use std::io::Write;

use kubeforge_playbooks::spec::{self, MAX_SPEC_BYTES};

fn refused(bytes: &[u8]) -> spec::Diagnostics {
    match spec::load_bytes(bytes, "hostile.yaml") {
        Ok(_) => panic!("hostile input was accepted"),
        Err(d) => {
            assert!(!d.problems.is_empty());
            d
        }
    }
}

fn first_message(d: &spec::Diagnostics) -> String {
    format!("{} / {}", d.problems[0].message, d.problems[0].help)
}

#[test]
fn billion_laughs_is_refused() {
    let mut src = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 9].join(",");
        src.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
    }
    let d = refused(src.as_bytes());
    assert!(first_message(&d).to_lowercase().contains("alias"), "{}", first_message(&d));
}

#[test]
fn deep_flow_nesting_is_refused_without_stack_overflow() {
    let src = format!("a: {}{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let d = refused(src.as_bytes());
    assert!(d.problems[0].help.contains("nests"), "{}", first_message(&d));
}

#[test]
fn deep_block_nesting_is_refused() {
    let mut src = String::new();
    for i in 0..2_000 {
        src.push_str(&" ".repeat(i));
        src.push_str("k:\n");
    }
    let d = refused(src.as_bytes());
    assert_eq!(d.problems.len(), 1, "{}", d.to_plain());
}

#[test]
fn oversized_input_is_refused_before_parsing() {
    let huge = vec![b'#'; MAX_SPEC_BYTES + 1];
    let d = refused(&huge);
    assert!(d.problems[0].message.contains("more than"), "{}", first_message(&d));
}

#[test]
fn oversized_file_is_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("huge.yaml");
    let file = std::fs::File::create(&path).unwrap();
    // Sparse: 4 GiB on paper, nothing on disk; reading it whole would exhaust memory.
    file.set_len(4 << 30).unwrap();
    let err = kubeforge::spec_file::check(&path).unwrap_err();
    assert!(
        err.diagnostics().problems[0].message.contains("larger than"),
        "{}",
        err.diagnostics().to_plain()
    );
}

#[test]
fn missing_file_and_directory_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let err = kubeforge::spec_file::check(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(err.diagnostics().problems[0].help.contains("kubeforge init"));
    let err = kubeforge::spec_file::check(dir.path()).unwrap_err();
    assert!(err.diagnostics().problems[0].message.contains("is a directory"));
}

#[test]
fn invalid_utf8_names_the_position() {
    let d = refused(b"apiVersion: kubeforge.dev/v1alpha1\nkind: Clu\xffster\n");
    let p = &d.problems[0];
    assert_eq!((p.line, p.column), (2, 10));
    assert!(p.message.contains("not valid UTF-8") && p.message.contains("0xFF"), "{}", p.message);
}

#[test]
fn many_documents_are_refused() {
    let docs = "a: 1\n---\n".repeat(20_000);
    let d = refused(docs.as_bytes());
    assert!(d.problems[0].message.contains("more than one YAML document"), "{}", first_message(&d));
}

#[test]
fn structural_problems_are_capped() {
    let mut src = String::from(
        "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  kubernetesVersion: v1.33.1\n  hosts:\n",
    );
    for i in 0..5_000 {
        src.push_str(&format!(
            "    - {{name: h{i}, address: 10.0.0.1, roles: [worker], bogus: 1}}\n"
        ));
    }
    let d = refused(src.as_bytes());
    assert!(d.problems.len() <= 201, "{}", d.problems.len());
    assert!(
        d.problems.iter().any(|p| p.message.contains("more structural problems are not shown"))
    );
}

#[test]
fn semantic_problems_are_capped() {
    let mut src = String::from(
        "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  kubernetesVersion: v1.33.1\n  network: {podSubnet: 10.0.0.0/8, serviceSubnet: 192.168.0.0/16}\n  hosts:\n    - {name: cp, address: 172.16.0.1, roles: [control-plane]}\n",
    );
    for i in 0..5_000 {
        src.push_str(&format!("    - {{name: w{i}, address: 172.16.0.2, roles: [worker]}}\n"));
    }
    let d = refused(src.as_bytes());
    assert_eq!(d.problems.len(), 201);
}

#[test]
fn garbage_never_panics() {
    // A fixed xorshift stream: the same bytes on every run.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let alphabet = b"ab:-[]{}&*!|>'\"#\n\t ,?%@`\\01.~";
    for round in 0..300 {
        let mut buf = Vec::new();
        for _ in 0..(50 + round * 7) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            buf.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        let _ = spec::load_bytes(&buf, "garbage.yaml");
        let mut spec_like =
            b"apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nspec:\n  ".to_vec();
        spec_like.extend_from_slice(&buf);
        let _ = spec::load_bytes(&spec_like, "garbage.yaml");
    }
}

#[test]
fn long_scalars_are_shortened_in_messages() {
    let long = "x".repeat(1_000_000);
    let src = format!(
        "apiVersion: {long}\nkind: Cluster\nmetadata: {{name: a}}\nspec:\n  kubernetesVersion: v1.33.1\n  hosts: [{{name: a, address: 10.0.0.1, roles: [control-plane]}}]\n"
    );
    let d = refused(src.as_bytes());
    assert!(d.problems[0].message.len() < 200, "{}", d.problems[0].message.len());
}

#[test]
fn fifty_thousand_hosts_validate() {
    let mut out = Vec::new();
    writeln!(out, "apiVersion: kubeforge.dev/v1alpha1\nkind: Cluster\nmetadata: {{name: big}}\nspec:\n  kubernetesVersion: v1.33.1\n  network: {{podSubnet: 10.0.0.0/8, serviceSubnet: 192.168.0.0/16}}\n  loadBalancer: {{mode: node-local}}\n  hosts:").unwrap();
    for i in 0..50_000u32 {
        let role = if i < 3 { "control-plane" } else { "worker" };
        writeln!(
            out,
            "    - {{name: n{i}, address: 172.16.{}.{}, roles: [{role}]}}",
            i / 250,
            i % 250 + 1
        )
        .unwrap();
    }
    let cluster = spec::load_bytes(&out, "big.yaml").unwrap_or_else(|d| panic!("{}", d.to_plain()));
    assert_eq!(cluster.hosts.len(), 50_000);
    assert_eq!(cluster.control_planes().count(), 3);
}
