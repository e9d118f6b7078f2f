//! The human form of a Plan: per phase and host, files to create or change (with unified diffs,
//! secrets shown as `(redacted)`), artifacts to push, commands, unit actions and gates; then the
//! blocked hosts with their remedies, and a one-line summary. "No changes." when converged.
//! Plain ASCII and deterministic, so golden files pin it.

use std::fmt::Write;

use super::types::{DiffText, FileReason, Plan, Step};

/// Renders a plan for people.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let names: Vec<&str> = plan.phases.iter().map(|p| p.phase.name()).collect();
    let _ = writeln!(out, "Plan for cluster {} (phases: {})", plan.cluster, names.join(", "));
    let (mut creates, mut changes, mut commands, mut units, mut pushes) = (0, 0, 0, 0, 0);
    for phase in &plan.phases {
        if !phase.built {
            let _ = writeln!(
                out,
                "\n{}: not built in this version of kubeforge; nothing planned",
                phase.phase
            );
            continue;
        }
        if phase.hosts.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{}:", phase.phase);
        for (host, steps) in &phase.hosts {
            let _ = writeln!(out, "  {host}:");
            for step in steps {
                match step {
                    Step::PutFile(f) => {
                        let meta =
                            format!("{:04o} {}:{}, {} bytes", f.mode, f.owner, f.group, f.size);
                        match &f.reason {
                            FileReason::Create => {
                                creates += 1;
                                let _ = writeln!(
                                    out,
                                    "    + create {} ({meta}{})",
                                    f.path,
                                    secret_note(f.secret)
                                );
                            }
                            FileReason::Metadata { from } => {
                                changes += 1;
                                let _ =
                                    writeln!(out, "    ~ mode/owner {} ({from} -> {meta})", f.path);
                            }
                            FileReason::Change { diff } => {
                                changes += 1;
                                let _ = writeln!(
                                    out,
                                    "    ~ change {} ({meta}{})",
                                    f.path,
                                    secret_note(f.secret)
                                );
                                match diff {
                                    DiffText::Unified(d) => {
                                        for line in d.lines() {
                                            let _ = writeln!(out, "        {line}");
                                        }
                                    }
                                    DiffText::Redacted => {
                                        let _ = writeln!(out, "        (redacted)");
                                    }
                                    DiffText::Unavailable(why) => {
                                        let _ = writeln!(out, "        (no diff: {why})");
                                    }
                                }
                            }
                        }
                    }
                    Step::PushArtifact(a) => {
                        pushes += 1;
                        let _ = writeln!(
                            out,
                            "    + push {} -> {} ({:04o}, sha256 {})",
                            a.name, a.dest, a.mode, a.sha256
                        );
                    }
                    Step::Run(r) => {
                        commands += 1;
                        let _ = writeln!(out, "    $ {}    # {}", r.argv.join(" "), r.why);
                    }
                    Step::Unit(u) => {
                        units += 1;
                        let _ = writeln!(out, "    * {}    # {}", u.argv().join(" "), u.why);
                    }
                    Step::Gate(g) => {
                        let _ = writeln!(
                            out,
                            "    ? wait until {} (up to {} x {} ms)",
                            g.what, g.attempts, g.interval_ms
                        );
                    }
                }
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
            "Plan: {creates} file(s) to create, {changes} to change, {pushes} artifact(s) to push, \
             {commands} command(s), {units} unit action(s) on {} host(s).",
            plan.hosts_with_steps().len()
        );
    }
    out
}

fn secret_note(secret: bool) -> &'static str {
    if secret { ", secret" } else { "" }
}
