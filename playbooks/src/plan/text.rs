//! The human form of a Plan: per phase and host, files to create or change (with unified diffs,
//! secrets shown as `(redacted)`), artifacts to push, commands, unit actions and gates; then a
//! phase's ordered steps (etcd membership changes and their health gates); then the
//! blocked hosts with their remedies, and a one-line summary. "No changes." when converged.
//! Deterministic (plain ASCII but for the en dash of host ranges), so golden files pin it.
//!
//! At scale the same steps repeat on every worker, so hosts of a phase whose steps have the
//! same shape (same kinds, paths and commands, in the same order) are shown once, under a
//! compact host list (`w1–w11`, `w1, w3`; [`compact_hosts`]): a step identical on all of them
//! is printed once, and a step that differs is printed once per distinct form, tagged with the
//! hosts it is for. The JSON form of the plan is not grouped: it keeps one entry per host.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::types::{DiffText, FileReason, Plan, Step};

/// Hosts that left the spec since the last apply, and what this run does about each.
fn departed_lines(out: &mut String, plan: &Plan) {
    use crate::applied::Cleanup;
    if plan.departed.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nHosts no longer in the spec (reached at their last applied address):");
    for d in &plan.departed {
        let gave = if d.services.is_empty() {
            "no kubeforge service".to_string()
        } else {
            d.services.join(", ")
        };
        let _ = writeln!(
            out,
            "  {} ({}, {}; applied in generation {}: {gave}, {} managed file(s))",
            d.name,
            d.address,
            d.roles.join(","),
            d.generation,
            d.managed_files
        );
        let line = match &d.cleanup {
            Cleanup::Undecided => "not looked at by this plan".to_string(),
            Cleanup::Cleaned => {
                "cleaned by this run (steps above); it then leaves the record".into()
            }
            Cleanup::AlreadyClean => {
                "nothing of kubeforge is left on it; it leaves the record".to_string()
            }
            Cleanup::Unreachable { reason, left } => format!(
                "NOT REACHED ({reason}); nothing is done on it{}. Left on it: {}. Bring it \
                 back and apply again, or clean it by hand",
                if d.services.iter().any(|s| s == "etcd") {
                    " but its removal from etcd"
                } else {
                    ""
                },
                left.join(", ")
            ),
            Cleanup::Deferred { why } => format!("not cleaned by this run: {why}"),
        };
        let _ = writeln!(out, "      {line}");
    }
}

/// Renders a plan for people.
pub fn render_text(plan: &Plan) -> String {
    let mut out = String::new();
    let names: Vec<&str> = plan.phases.iter().map(|p| p.phase.name()).collect();
    let _ = writeln!(out, "Plan for cluster {} (phases: {})", plan.cluster, names.join(", "));
    let mut counts = Counts::default();
    for phase in &plan.phases {
        if phase.hosts.is_empty() && phase.sequence.is_empty() {
            continue;
        }
        if phase.is_rolling() && phase.hosts.len() > 1 {
            let _ = writeln!(out, "\n{} (one host at a time, in this order):", phase.phase);
        } else {
            let _ = writeln!(out, "\n{}:", phase.phase);
        }
        for steps in phase.hosts.values() {
            steps.iter().for_each(|s| counts.add(s));
        }
        for group in shape_groups(&phase.hosts) {
            group_lines(&mut out, &phase.hosts, &group);
        }
        if !phase.sequence.is_empty() {
            let _ = writeln!(out, "  then, one step at a time:");
            for (i, s) in phase.sequence.iter().enumerate() {
                let _ = writeln!(out, "  {:>3}. on {}:", i + 1, s.host);
                counts.add(&s.step);
                step_lines(&mut out, &s.step, "      ");
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
    departed_lines(&mut out, plan);
    if !plan.deferred.is_empty() {
        let _ = writeln!(out, "\nLeft for a later run:");
        for why in &plan.deferred {
            let _ = writeln!(out, "  - {why}");
        }
    }
    out.push('\n');
    if plan.is_converged() {
        out.push_str("No changes.\n");
    } else if plan.has_no_steps() && plan.blocked.is_empty() {
        out.push_str("No changes in this run; what is left for a later run is listed above.\n");
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

impl Counts {
    fn add(&mut self, step: &Step) {
        match step {
            Step::PutFile(f) => match f.reason {
                FileReason::Create => self.creates += 1,
                FileReason::Metadata { .. } | FileReason::Change { .. } => self.changes += 1,
            },
            Step::PushArtifact(_) => self.pushes += 1,
            Step::Run(_) => self.commands += 1,
            Step::Unit(_) => self.units += 1,
            Step::Gate(_) | Step::Guarded(_) => {}
            Step::Etcd(op) => {
                if !op.action.is_gate() {
                    self.etcd += 1;
                }
            }
        }
    }
}

/// What makes two hosts' step lists "the same shape": the kind of each step and what it acts
/// on, without the host-specific details (file contents, gate targets, command arguments).
type Shape = (u8, String);

fn shape(step: &Step) -> Shape {
    match step {
        Step::PutFile(f) => (0, f.path.clone()),
        Step::PushArtifact(a) => (1, a.dest.clone()),
        Step::Run(r) => (2, r.argv.first().cloned().unwrap_or_default()),
        Step::Unit(u) => (3, u.argv().join(" ")),
        Step::Gate(_) | Step::Guarded(_) => (4, String::new()),
        Step::Etcd(_) => (5, String::new()),
    }
}

/// The phase's hosts grouped by the shape of their step lists, each group in host order and
/// the groups in the order of their first host.
fn shape_groups(hosts: &BTreeMap<String, Vec<Step>>) -> Vec<Vec<&str>> {
    let mut groups: Vec<(Vec<Shape>, Vec<&str>)> = Vec::new();
    for (host, steps) in hosts {
        let key: Vec<Shape> = steps.iter().map(shape).collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(host),
            None => groups.push((key, vec![host])),
        }
    }
    groups.into_iter().map(|(_, members)| members).collect()
}

/// One group of same-shaped hosts: a step identical on all of them once, a step that differs
/// once per distinct form, its first line tagged `[hosts]`.
fn group_lines(out: &mut String, hosts: &BTreeMap<String, Vec<Step>>, group: &[&str]) {
    let _ = writeln!(out, "  {}:", compact_hosts(group));
    let Some(first) = group.first() else { return };
    for (i, _) in hosts[*first].iter().enumerate() {
        // Distinct renderings of step i, in host order, with the hosts showing each.
        // A diff names its host in its header (`--- /etc/hosts (on w1)`): compared without it.
        let mut forms: Vec<(String, Vec<&str>)> = Vec::new();
        for host in group {
            let mut text = String::new();
            step_lines(&mut text, &hosts[*host][i], "    ");
            let text = unhost_diff_headers(&text, host);
            match forms.iter_mut().find(|(t, _)| *t == text) {
                Some((_, members)) => members.push(host),
                None => forms.push((text, vec![host])),
            }
        }
        if let [(text, members)] = forms.as_slice() {
            out.push_str(&text.replace(HOSTS, &compact_hosts(members)));
            continue;
        }
        for (text, members) in forms {
            let text = text.replace(HOSTS, &compact_hosts(&members));
            let tag = format!("    [{}] ", compact_hosts(&members));
            let mut lines = text.lines();
            if let Some(head) = lines.next() {
                let _ = writeln!(out, "{tag}{}", head.trim_start());
            }
            for line in lines {
                let _ = writeln!(out, "{line}");
            }
        }
    }
}

/// Stands for the host list in a diff header while same-shaped hosts' steps are compared.
const HOSTS: &str = "\u{0}hosts\u{0}";

/// `text` with `(on HOST)` in diff header lines (`--- path (on HOST)`) replaced by [`HOSTS`].
fn unhost_diff_headers(text: &str, host: &str) -> String {
    let own = format!("(on {host})");
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with("--- ") {
            out.push_str(&line.replace(&own, &format!("(on {HOSTS})")));
        } else {
            out.push_str(line);
        }
    }
    out
}

/// A compact list of host names: names that differ only in a trailing number form runs, and a
/// run of three or more is written `w1–w11` (en dash); everything else is listed, `, `-separated.
/// Names are put in natural order (`w2` before `w10`) first. Zero-padded numbers (`w01`) run
/// only with numbers of the same width.
pub fn compact_hosts(hosts: &[&str]) -> String {
    struct Name<'a> {
        full: &'a str,
        prefix: &'a str,
        digits: &'a str,
        number: Option<u64>,
    }
    let mut names: Vec<Name<'_>> = hosts
        .iter()
        .map(|full| {
            let prefix = full.trim_end_matches(|c: char| c.is_ascii_digit());
            let digits = &full[prefix.len()..];
            Name { full, prefix, digits, number: digits.parse().ok() }
        })
        .collect();
    names.sort_by(|a, b| (a.prefix, a.number, a.full).cmp(&(b.prefix, b.number, b.full)));
    names.dedup_by(|a, b| a.full == b.full);
    let unpadded = |n: &Name<'_>| !n.digits.starts_with('0') || n.digits == "0";
    let follows = |prev: &Name<'_>, next: &Name<'_>| {
        prev.prefix == next.prefix
            && matches!((prev.number, next.number), (Some(p), Some(n)) if p.checked_add(1) == Some(n))
            && (prev.digits.len() == next.digits.len() || unpadded(prev) && unpadded(next))
    };
    let mut parts: Vec<String> = Vec::new();
    let mut i = 0;
    while i < names.len() {
        let mut j = i;
        while j + 1 < names.len() && follows(&names[j], &names[j + 1]) {
            j += 1;
        }
        if j - i >= 2 {
            parts.push(format!("{}\u{2013}{}", names[i].full, names[j].full));
        } else {
            parts.extend(names[i..=j].iter().map(|n| n.full.to_string()));
        }
        i = j + 1;
    }
    parts.join(", ")
}

/// One step's lines, each starting with `indent`.
fn step_lines(out: &mut String, step: &Step, indent: &str) {
    match step {
        Step::PutFile(f) => {
            let meta = format!("{:04o} {}:{}, {} bytes", f.mode, f.owner, f.group, f.size);
            match &f.reason {
                FileReason::Create => {
                    let _ = writeln!(
                        out,
                        "{indent}+ create {} ({meta}{})",
                        f.path,
                        secret_note(f.secret)
                    );
                }
                FileReason::Metadata { from } => {
                    let _ = writeln!(out, "{indent}~ mode/owner {} ({from} -> {meta})", f.path);
                }
                FileReason::Change { diff } => {
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
            let _ = writeln!(
                out,
                "{indent}+ push {} -> {} ({:04o}, sha256 {}{})",
                a.name,
                a.dest,
                a.mode,
                a.sha256,
                if a.unverified {
                    ", UNVERIFIED: not checked against the catalog or SHA256SUMS"
                } else {
                    ""
                }
            );
        }
        Step::Run(r) => {
            let _ = writeln!(out, "{indent}$ {}    # {}", r.argv.join(" "), r.why);
        }
        Step::Unit(u) => {
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
            let marker = if op.action.is_gate() { "?" } else { "@" };
            let _ = writeln!(out, "{indent}{marker} etcd {}    # {}", op.action, op.why);
            let _ = writeln!(
                out,
                "{indent}    (through 127.0.0.1:{} over SSH, client certificate {})",
                op.client_port, op.tls.cert
            );
        }
        Step::Guarded(g) => {
            let _ = writeln!(
                out,
                "{indent}? wait until {} (up to {} x {} ms)",
                g.gate.what, g.gate.attempts, g.gate.interval_ms
            );
            let _ = writeln!(out, "{indent}  if it does not, {}, then stop:", g.why);
            let deeper = format!("{indent}    ");
            for step in &g.on_failure {
                step_lines(out, step, &deeper);
            }
        }
    }
}

fn secret_note(secret: bool) -> &'static str {
    if secret { ", secret" } else { "" }
}

#[cfg(test)]
mod tests {
    use super::super::Phase;
    use super::super::types::{Gate, PhasePlan, PutFile};
    use super::*;

    fn change(host: &str, new: &str) -> Step {
        Step::PutFile(PutFile {
            path: "/etc/x.conf".into(),
            contents: new.as_bytes().to_vec(),
            sha256: "00".repeat(32),
            size: new.len(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            secret: false,
            reason: FileReason::Change {
                diff: DiffText::Unified(format!(
                    "--- /etc/x.conf (on {host})\n+++ /etc/x.conf (planned)\n@@ -1 +1 @@\n-old\n+{new}\n"
                )),
            },
        })
    }

    fn gate(host: &str) -> Step {
        Step::Gate(Gate {
            what: format!("node {host} is ready"),
            argv: vec!["true".into()],
            across: None,
            attempts: 3,
            interval_ms: 1000,
        })
    }

    #[test]
    fn alike_hosts_are_shown_once_and_their_differences_tagged() {
        let mut hosts = BTreeMap::new();
        for i in 1..=11 {
            let host = format!("w{i}");
            let new = if i == 3 { "odd" } else { "new" };
            hosts.insert(host.clone(), vec![change(&host, new), gate(&host)]);
        }
        // A host of another shape is shown on its own, as before. Per-host forms come in the
        // plan's (execution) order.
        hosts.insert("cp1".into(), vec![gate("cp1")]);
        let plan = Plan {
            cluster: "c".into(),
            operation: crate::plan::Operation::Apply,
            phases: vec![PhasePlan { phase: Phase::Workers, hosts, sequence: vec![], batch: None }],
            blocked: BTreeMap::new(),
            departed: Vec::new(),
            deferred: Vec::new(),
        };
        let text = render_text(&plan);
        let expected = "Plan for cluster c (phases: workers)

workers:
  cp1:
    ? wait until node cp1 is ready (up to 3 x 1000 ms)
  w1\u{2013}w11:
    [w1, w2, w4\u{2013}w11] ~ change /etc/x.conf (0644 root:root, 3 bytes)
        --- /etc/x.conf (on w1, w2, w4\u{2013}w11)
        +++ /etc/x.conf (planned)
        @@ -1 +1 @@
        -old
        +new
    [w3] ~ change /etc/x.conf (0644 root:root, 3 bytes)
        --- /etc/x.conf (on w3)
        +++ /etc/x.conf (planned)
        @@ -1 +1 @@
        -old
        +odd
    [w1] ? wait until node w1 is ready (up to 3 x 1000 ms)
    [w10] ? wait until node w10 is ready (up to 3 x 1000 ms)
    [w11] ? wait until node w11 is ready (up to 3 x 1000 ms)
    [w2] ? wait until node w2 is ready (up to 3 x 1000 ms)
    [w3] ? wait until node w3 is ready (up to 3 x 1000 ms)
    [w4] ? wait until node w4 is ready (up to 3 x 1000 ms)
    [w5] ? wait until node w5 is ready (up to 3 x 1000 ms)
    [w6] ? wait until node w6 is ready (up to 3 x 1000 ms)
    [w7] ? wait until node w7 is ready (up to 3 x 1000 ms)
    [w8] ? wait until node w8 is ready (up to 3 x 1000 ms)
    [w9] ? wait until node w9 is ready (up to 3 x 1000 ms)

Plan: 0 file(s) to create, 11 to change, 0 artifact(s) to push, 0 command(s), 0 unit action(s) on 12 host(s).
";
        assert_eq!(text, expected, "{text}");
    }

    #[test]
    fn a_plan_with_nothing_to_do_but_a_deferral_is_not_no_changes() {
        let mut plan = Plan {
            cluster: "c".into(),
            operation: crate::plan::Operation::Apply,
            phases: vec![],
            blocked: BTreeMap::new(),
            departed: Vec::new(),
            deferred: Vec::new(),
        };
        assert!(render_text(&plan).ends_with("\nNo changes.\n"));
        plan.deferred.push("the old load-balancer mode stays (haproxy on w1): why".into());
        let text = render_text(&plan);
        assert!(!plan.is_converged());
        assert!(
            text.ends_with(
                "\nLeft for a later run:\n  - the old load-balancer mode stays (haproxy on w1): \
                 why\n\nNo changes in this run; what is left for a later run is listed above.\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn numeric_runs_are_ranges_and_the_rest_is_listed() {
        assert_eq!(compact_hosts(&[]), "");
        assert_eq!(compact_hosts(&["cp1"]), "cp1");
        let workers: Vec<String> = (1..=11).map(|i| format!("w{i}")).collect();
        let mut names: Vec<&str> = workers.iter().map(String::as_str).collect();
        names.sort(); // w1, w10, w11, w2, ...: the plan's (BTreeMap) order
        assert_eq!(compact_hosts(&names), "w1\u{2013}w11");
        assert_eq!(compact_hosts(&["w1", "w3"]), "w1, w3");
        assert_eq!(compact_hosts(&["w1", "w2"]), "w1, w2");
        assert_eq!(
            compact_hosts(&["w1", "w2", "w3", "w5", "w7", "w8", "w9"]),
            "w1\u{2013}w3, w5, w7\u{2013}w9"
        );
        assert_eq!(compact_hosts(&["db", "w2", "w1", "w3", "cp1"]), "cp1, db, w1\u{2013}w3");
        // Different prefixes never join, nor do names without a number.
        assert_eq!(compact_hosts(&["a1", "b2", "c3"]), "a1, b2, c3");
        assert_eq!(compact_hosts(&["node-a", "node-b", "node-c"]), "node-a, node-b, node-c");
        // Zero-padded names run with their own width only.
        assert_eq!(compact_hosts(&["w08", "w09", "w10", "w11"]), "w08\u{2013}w11");
        assert_eq!(compact_hosts(&["w09", "w10", "w8"]), "w8, w09, w10");
        // Duplicates are listed once.
        assert_eq!(compact_hosts(&["w1", "w1", "w2", "w3"]), "w1\u{2013}w3");
    }
}
