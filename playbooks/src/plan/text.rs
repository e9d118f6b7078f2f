//! The human form of a Plan: per phase and host, files to create or change (with unified diffs,
//! secrets shown as `(redacted)`), artifacts to push, commands, unit actions and gates; then a
//! phase's ordered steps (etcd membership changes and their health gates); then the
//! blocked hosts with their remedies, and a one-line summary. "No changes." when converged.
//! Plain ASCII and deterministic, so golden files pin it.

use std::fmt::Write;

use super::types::{DiffText, FileReason, Plan, Step};

/// Renders a plan for people.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let names: Vec<&str> = plan.phases.iter().map(|p| p.phase.name()).collect();
    let _ = writeln!(out, "Plan for cluster {} (phases: {})", plan.cluster, names.join(", "));
    let mut counts = Counts::default();
    for phase in &plan.phases {
        if !phase.built {
            let _ = writeln!(
                out,
                "\n{}: not built in this version of kubeforge; nothing planned",
                phase.phase
            );
            continue;
        }
        if phase.hosts.is_empty() && phase.sequence.is_empty() {
            continue;
        }
        if phase.is_rolling() && phase.hosts.len() > 1 {
            let _ = writeln!(out, "\n{} (one host at a time, in this order):", phase.phase);
        } else {
            let _ = writeln!(out, "\n{}:", phase.phase);
        }
        for (host, steps) in &phase.hosts {
            let _ = writeln!(out, "  {host}:");
            for step in steps {
                step_lines(&mut out, step, "    ", &mut counts);
            }
        }
        if !phase.sequence.is_empty() {
            let _ = writeln!(out, "  then, one step at a time:");
            for (i, s) in phase.sequence.iter().enumerate() {
                let _ = writeln!(out, "  {:>3}. on {}:", i + 1, s.host);
                step_lines(&mut out, &s.step, "      ", &mut counts);
            }
        }
    }
    if !plan.blocked.is_empty() {
        let _ = writeln!(out, "\nBlocked hosts (nothing will be done on them):");
        for (host, problems) in &plan.blocked {
            for p in problems {
                let _ = writeln!(out, "  {host} [{}/{}]: {}", p.phase, p.check, p.message);
                let _ = writeln!(out, "      what to do: {}", p.remedy);
            }
        }
    }
    out.push('\n');
    if plan.is_converged() {
        out.push_str("No changes.\n");
    } else if plan.has_no_steps() {
        out.push_str("No changes on the reachable hosts; blocked hosts listed above.\n");
    } else {
        let _ = writeln!(
            out,
            "Plan: {} file(s) to create, {} to change, {} artifact(s) to push, {} command(s), {} \
             unit action(s){} on {} host(s).",
            counts.creates,
            counts.changes,
            counts.pushes,
            counts.commands,
            counts.units,
            if counts.etcd > 0 {
                format!(", {} etcd operation(s)", counts.etcd)
            } else {
                String::new()
            },
            plan.hosts_with_steps().len()
        );
    }
    out
}

#[derive(Default)]
struct Counts {
    creates: usize,
    changes: usize,
    pushes: usize,
    commands: usize,
    units: usize,
    etcd: usize,
}

/// One step's lines, each starting with `indent`.
fn step_lines(out: &mut String, step: &Step, indent: &str, counts: &mut Counts) {
    match step {
        Step::PutFile(f) => {
            let meta = format!("{:04o} {}:{}, {} bytes", f.mode, f.owner, f.group, f.size);
            match &f.reason {
                FileReason::Create => {
                    counts.creates += 1;
                    let _ = writeln!(
                        out,
                        "{indent}+ create {} ({meta}{})",
                        f.path,
                        secret_note(f.secret)
                    );
                }
                FileReason::Metadata { from } => {
                    counts.changes += 1;
                    let _ = writeln!(out, "{indent}~ mode/owner {} ({from} -> {meta})", f.path);
                }
                FileReason::Change { diff } => {
                    counts.changes += 1;
                    let _ = writeln!(
                        out,
                        "{indent}~ change {} ({meta}{})",
                        f.path,
                        secret_note(f.secret)
                    );
                    match diff {
                        DiffText::Unified(d) => {
                            for line in d.lines() {
                                let _ = writeln!(out, "{indent}    {line}");
                            }
                        }
                        DiffText::Redacted => {
                            let _ = writeln!(out, "{indent}    (redacted)");
                        }
                        DiffText::Unavailable(why) => {
                            let _ = writeln!(out, "{indent}    (no diff: {why})");
                        }
                    }
                }
            }
        }
        Step::PushArtifact(a) => {
            counts.pushes += 1;
            let _ = writeln!(
                out,
                "{indent}+ push {} -> {} ({:04o}, sha256 {})",
                a.name, a.dest, a.mode, a.sha256
            );
        }
        Step::Run(r) => {
            counts.commands += 1;
            let _ = writeln!(out, "{indent}$ {}    # {}", r.argv.join(" "), r.why);
        }
        Step::Unit(u) => {
            counts.units += 1;
            let _ = writeln!(out, "{indent}* {}    # {}", u.argv().join(" "), u.why);
        }
        Step::Gate(g) => {
            let _ = writeln!(
                out,
                "{indent}? wait until {} (up to {} x {} ms)",
                g.what, g.attempts, g.interval_ms
            );
        }
        Step::Etcd(op) => {
            if !op.action.is_gate() {
                counts.etcd += 1;
            }
            let marker = if op.action.is_gate() { "?" } else { "@" };
            let _ = writeln!(out, "{indent}{marker} etcd {}    # {}", op.action, op.why);
            let _ = writeln!(
                out,
                "{indent}    (through 127.0.0.1:{} over SSH, client certificate {})",
                op.client_port, op.tls.cert
            );
        }
    }
}

fn secret_note(secret: bool) -> &'static str {
    if secret { ", secret" } else { "" }
}
