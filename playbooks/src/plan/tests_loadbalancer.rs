//! The loadbalancer phase on the examples' real render trees and Debian machines: what a fresh
//! control plane and a node-local worker get, convergence, reload versus restart on changed
//! files, and a change in the set of control planes reaching every backend list.

use std::collections::BTreeMap;

use super::tests::present_file;
use super::tests_phases::*;
use super::*;
use crate::facts::UnitState;

const LB: &[Phase] = &[Phase::LoadBalancer];

fn lb_plan(cluster: &Cluster, tree: &RenderTree, facts: &BTreeMap<String, HostProbe>) -> Plan {
    plan_phases(cluster, tree, facts, &ArtifactInventory::new(), LB)
}

fn diff_of<'a>(plan: &'a Plan, host: &str, path: &str) -> &'a str {
    let put = steps(plan, Phase::LoadBalancer, host).iter().find_map(|s| match s {
        Step::PutFile(p) if p.path == path => Some(p),
        _ => None,
    });
    match put.map(|p| &p.reason) {
        Some(FileReason::Change { diff: DiffText::Unified(d) }) => d,
        other => panic!("{host} {path}: no unified diff but {other:?}"),
    }
}

#[test]
fn fresh_control_planes_get_haproxy_checked_and_reloaded_and_keepalived_started() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    let first = lb_plan(&cluster, &tree, &facts);
    assert!(first.blocked.is_empty(), "{:?}", first.blocked);
    assert!(first.phases[0].is_rolling(), "control planes holding the VIP change one at a time");
    assert_eq!(
        labels(&first, Phase::LoadBalancer, "cp2"),
        [
            "create /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "haproxy -c -q -f /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "change /etc/haproxy/haproxy.cfg",
            "rm -f -- /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "systemctl reload haproxy.service",
            "wait: haproxy is active and listening on 10.88.0.100:6443",
            "create /var/lib/kubeforge/loaded/haproxy.service",
            "create /etc/keepalived/keepalived.conf",
            "create /etc/systemd/system/keepalived.service.d/10-kubeforge.conf",
            "create /usr/local/lib/kubeforge/keepalived-interface",
            "systemctl daemon-reload",
            "systemctl start keepalived.service",
            "wait: keepalived is active",
            "create /var/lib/kubeforge/loaded/keepalived.service",
        ]
    );
    // The phase is done when exactly one control plane holds the VIP and the endpoint accepts
    // connections through it (keepalived takes the VIP seconds after it starts, and haproxy
    // binds it non-locally, so haproxy's own gate passes before anyone holds it).
    let sequence = &first.phases[0].sequence;
    let Step::Gate(holder) = &sequence[0].step else { panic!("a VIP gate expected") };
    let across = holder.across.as_ref().expect("asked of every control plane");
    assert_eq!(
        (across.hosts.clone(), across.exactly),
        (vec!["cp1".into(), "cp2".into(), "cp3".into()], 1)
    );
    assert_eq!(holder.argv[2], "test -n \"$(ip -o addr show to 10.88.0.100)\"");
    let Step::Gate(connects) = &sequence[1].step else { panic!("an endpoint gate expected") };
    assert_eq!(connects.argv[4], "exec 3<>/dev/tcp/10.88.0.100/6443");
    assert_eq!(sequence.len(), 2);
    // The gate is an exact command: haproxy's bind address in ss's local-address column.
    let Some(Step::Gate(gate)) = steps(&first, Phase::LoadBalancer, "cp1").get(5) else {
        panic!("gate expected")
    };
    assert_eq!(
        gate.argv[2],
        "systemctl is-active --quiet haproxy.service && ss -Hltn | awk '{print $4}' | grep -qxF '10.88.0.100:6443'"
    );
    // keepalived.conf holds the VRRP password: planned as a secret, never shown.
    let text = render_text(&first);
    assert!(text.contains("+ create /etc/keepalived/keepalived.conf (0600 root:root"), "{text}");
    assert!(!text.contains("auth_pass"), "{text}");
    // Workers get no load balancer in keepalived-haproxy mode.
    assert!(labels(&first, Phase::LoadBalancer, "worker1").is_empty());

    simulate(&first, &mut facts, "v1.33.1");
    let again = lb_plan(&cluster, &tree, &facts);
    assert!(again.is_converged(), "{}", render_text(&again));
    assert!(render_text(&again).ends_with("No changes.\n"));
    // The checked copy was removed, not left behind.
    let Some(Ok(cp1)) = facts.get("cp1") else { panic!() };
    assert!(!cp1.files.contains_key(loadbalancer::HAPROXY_CHECK_COPY));
}

#[test]
fn node_local_workers_get_a_loopback_haproxy_and_control_planes_nothing() {
    let cluster = load(example_text("node-local"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    let first = lb_plan(&cluster, &tree, &facts);
    let hosts: Vec<&String> = first.phases[0].hosts.keys().collect();
    assert!(!first.phases[0].is_rolling(), "each worker's haproxy serves only itself");
    let workers: Vec<&String> = cluster.workers().map(|h| &h.name).collect();
    assert_eq!(hosts, workers, "only the non-control-plane kubelet hosts");
    let worker = workers[0];
    let labels = labels(&first, Phase::LoadBalancer, worker);
    assert_eq!(
        labels[labels.len() - 2..],
        [
            "wait: haproxy is active and listening on 127.0.0.1:6443",
            "create /var/lib/kubeforge/loaded/haproxy.service"
        ]
    );
    assert!(first.phases[0].sequence.is_empty(), "no VIP in node-local mode");
    assert!(!labels.iter().any(|l| l.contains("keepalived")), "{labels:?}");
    simulate(&first, &mut facts, "v1.33.1");
    assert!(lb_plan(&cluster, &tree, &facts).is_converged());
}

#[test]
fn a_stopped_haproxy_is_started_and_a_disabled_one_enabled_without_touching_files() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&lb_plan(&cluster, &tree, &facts), &mut facts, "v1.33.1");
    if let Some(Ok(f)) = facts.get_mut("cp3") {
        f.units.insert(
            "haproxy.service".into(),
            UnitState { active: "failed".into(), enabled: "disabled".into() },
        );
    }
    let plan = lb_plan(&cluster, &tree, &facts);
    assert_eq!(
        labels(&plan, Phase::LoadBalancer, "cp3"),
        [
            "systemctl enable haproxy.service",
            "systemctl reset-failed haproxy.service",
            "systemctl start haproxy.service",
            "wait: haproxy is active and listening on 10.88.0.100:6443",
        ]
    );
    assert!(labels(&plan, Phase::LoadBalancer, "cp1").is_empty());
}

#[test]
fn edited_configs_are_reloaded_for_haproxy_and_restarted_for_keepalived() {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate(&lb_plan(&cluster, &tree, &facts), &mut facts, "v1.33.1");
    if let Some(Ok(f)) = facts.get_mut("cp1") {
        let edited = |path: &str, from: &str, to: &str| {
            let text = String::from_utf8(tree.hosts["cp1"][path].contents.clone()).unwrap();
            assert!(text.contains(from), "{path} has no {from:?}");
            present_file(text.replace(from, to).as_bytes(), tree.hosts["cp1"][path].mode)
        };
        f.files.insert(
            "/etc/haproxy/haproxy.cfg".into(),
            edited("/etc/haproxy/haproxy.cfg", "retries 3", "retries 9"),
        );
        f.files.insert(
            "/etc/keepalived/keepalived.conf".into(),
            edited("/etc/keepalived/keepalived.conf", "advert_int 1", "advert_int 3"),
        );
        // Mode drift alone is fixed without a restart.
        f.files.insert(
            "/usr/local/lib/kubeforge/keepalived-interface".into(),
            present_file(
                &tree.hosts["cp1"]["/usr/local/lib/kubeforge/keepalived-interface"].contents,
                0o644,
            ),
        );
    }
    let plan = lb_plan(&cluster, &tree, &facts);
    assert_eq!(
        labels(&plan, Phase::LoadBalancer, "cp1"),
        [
            "create /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "haproxy -c -q -f /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "change /etc/haproxy/haproxy.cfg",
            "rm -f -- /etc/haproxy/.haproxy.cfg.kubeforge-check",
            "systemctl reload haproxy.service",
            "wait: haproxy is active and listening on 10.88.0.100:6443",
            "change /etc/keepalived/keepalived.conf",
            "fix mode/owner of /usr/local/lib/kubeforge/keepalived-interface",
            "systemctl restart keepalived.service",
            "wait: keepalived is active",
        ]
    );
    let diff = diff_of(&plan, "cp1", "/etc/haproxy/haproxy.cfg");
    assert!(diff.contains("-    retries 9\n+    retries 3\n"), "{diff}");
    // The secret keepalived.conf's change is redacted.
    let text = render_text(&plan);
    assert!(!text.contains("advert_int"), "{text}");

    // Only the mode drift: fixed, and keepalived keeps running.
    if let Some(Ok(f)) = facts.get_mut("cp2") {
        f.files.insert(
            "/usr/local/lib/kubeforge/keepalived-interface".into(),
            present_file(
                &tree.hosts["cp2"]["/usr/local/lib/kubeforge/keepalived-interface"].contents,
                0o700,
            ),
        );
    }
    let plan = lb_plan(&cluster, &tree, &facts);
    assert_eq!(
        labels(&plan, Phase::LoadBalancer, "cp2"),
        [
            "fix mode/owner of /usr/local/lib/kubeforge/keepalived-interface",
            "wait: keepalived is active",
        ]
    );
}

/// The stacked example with two more control planes, `cp4` and `cp5` (etcd wants an odd count).
fn stacked_with_five() -> Cluster {
    let text = example_text("stacked").replace(
        "    - name: worker1\n",
        "    - name: cp4\n      address: 10.88.0.14\n      roles: [control-plane]\n    \
         - name: cp5\n      address: 10.88.0.15\n      roles: [control-plane]\n    - name: worker1\n",
    );
    load(&text)
}

/// The +/- lines of a unified diff.
fn changed_lines(diff: &str) -> Vec<&str> {
    diff.lines()
        .filter(|l| l.starts_with(['+', '-']) && !l.starts_with("+++") && !l.starts_with("---"))
        .collect()
}

#[test]
fn new_control_planes_reach_every_backend_list_and_every_keepalived_peer_list() {
    let three = load(example_text("stacked"));
    let mut facts = facts_for(&three);
    simulate(&lb_plan(&three, &render(&three), &facts), &mut facts, "v1.33.1");

    let five = stacked_with_five();
    for new in ["cp4", "cp5"] {
        facts.insert(new.into(), Ok(debian_facts(new)));
    }
    let tree = render(&five);
    let plan = lb_plan(&five, &tree, &facts);
    for cp in ["cp1", "cp2", "cp3"] {
        let diff = diff_of(&plan, cp, "/etc/haproxy/haproxy.cfg");
        assert_eq!(
            changed_lines(diff),
            [
                "+    server cp4 10.88.0.14:6443 check check-ssl verify none",
                "+    server cp5 10.88.0.15:6443 check check-ssl verify none"
            ],
            "{cp}"
        );
        let labels = labels(&plan, Phase::LoadBalancer, cp);
        assert!(labels.contains(&"systemctl reload haproxy.service".to_string()), "{labels:?}");
        // keepalived.conf gains the new unicast peers: restarted, as its files changed.
        assert!(
            labels.contains(&"change /etc/keepalived/keepalived.conf".to_string()),
            "{labels:?}"
        );
        assert!(labels.contains(&"systemctl restart keepalived.service".to_string()), "{labels:?}");
        let conf = &tree.hosts[cp]["/etc/keepalived/keepalived.conf"].contents;
        let text = String::from_utf8_lossy(conf);
        assert!(text.contains("        10.88.0.14\n        10.88.0.15\n"), "{cp}: {text}");
    }
    assert_eq!(
        labels(&plan, Phase::LoadBalancer, "cp5")[0],
        "create /etc/haproxy/.haproxy.cfg.kubeforge-check"
    );
    assert!(labels(&plan, Phase::LoadBalancer, "worker1").is_empty());
    simulate(&plan, &mut facts, "v1.33.1");
    assert!(lb_plan(&five, &tree, &facts).is_converged());

    // And back to three: cp4 and cp5 leave every list again.
    facts.remove("cp4");
    facts.remove("cp5");
    let plan = lb_plan(&three, &render(&three), &facts);
    for cp in ["cp1", "cp2", "cp3"] {
        let diff = diff_of(&plan, cp, "/etc/haproxy/haproxy.cfg");
        assert_eq!(
            changed_lines(diff),
            [
                "-    server cp4 10.88.0.14:6443 check check-ssl verify none",
                "-    server cp5 10.88.0.15:6443 check check-ssl verify none"
            ],
            "{cp}"
        );
    }
}

#[test]
fn node_local_backends_follow_the_control_planes_too() {
    let text = example_text("node-local");
    let cluster = load(text);
    let mut facts = facts_for(&cluster);
    simulate(&lb_plan(&cluster, &render(&cluster), &facts), &mut facts, "v1.33.1");
    let five = load(&text.replace(
        "    - {name: worker1,",
        "    - {name: cp4, address: 192.168.10.14, roles: [control-plane]}\n    \
         - {name: cp5, address: 192.168.10.15, roles: [control-plane]}\n    - {name: worker1,",
    ));
    assert_eq!(five.control_planes().count(), 5);
    for new in ["cp4", "cp5"] {
        facts.insert(new.into(), Ok(debian_facts(new)));
    }
    let plan = lb_plan(&five, &render(&five), &facts);
    let worker = "worker1";
    assert_eq!(
        changed_lines(diff_of(&plan, worker, "/etc/haproxy/haproxy.cfg")),
        [
            "+    server cp4 192.168.10.14:6443 check check-ssl verify none",
            "+    server cp5 192.168.10.15:6443 check check-ssl verify none"
        ]
    );
    let labels = labels(&plan, Phase::LoadBalancer, worker);
    assert!(labels.contains(&"systemctl reload haproxy.service".to_string()), "{labels:?}");
    // Control planes in node-local mode run no load balancer, old or new.
    for cp in ["cp1", "cp4"] {
        assert!(super::tests_phases::labels(&plan, Phase::LoadBalancer, cp).is_empty());
    }
}

#[test]
fn bind_address_is_read_from_the_config() {
    assert_eq!(
        loadbalancer::bind_address(b"frontend x\n    bind [::1]:6443\n").as_deref(),
        Some("[::1]:6443")
    );
    assert_eq!(loadbalancer::bind_address(b"global\n"), None);
}

// ---------------------------------------------------------------------------------------------
// Changing modes (issue 14 item 4): the new path up and gated from every host before the old
// mode's services are stopped, disabled and their files removed.

/// The stacked example switched to node-local (the VIP and its endpoint gone).
fn node_local_of_stacked() -> Cluster {
    let text = example_text("stacked")
        .replace("  controlPlaneEndpoint: 10.88.0.100:6443", "")
        .replace("mode: keepalived-haproxy", "mode: node-local")
        .replace("    vip: 10.88.0.100", "");
    let cluster = load(&text);
    assert_eq!(cluster.load_balancer.mode, crate::model::LoadBalancerMode::NodeLocal);
    cluster
}

/// Applies host steps (the shared host model) and then the sequences' unit and `rm` steps.
fn simulate_run(plan: &Plan, facts: &mut BTreeMap<String, HostProbe>) {
    simulate(plan, facts, "v1.33.1");
    for phase in &plan.phases {
        for s in &phase.sequence {
            let Some(Ok(f)) = facts.get_mut(&s.host) else { continue };
            match &s.step {
                Step::Unit(u) => super::tests::simulate_unit(&mut f.units, u),
                Step::Run(r) if r.argv[..3] == ["rm", "-f", "--"] => {
                    for p in &r.argv[3..] {
                        f.files.remove(p);
                    }
                }
                Step::Gate(_) => {}
                other => panic!("unexpected sequenced step {other:?}"),
            }
        }
    }
}

/// Converged keepalived-haproxy hosts of the stacked example, with the applied record of it.
fn converged_keepalived() -> (Cluster, BTreeMap<String, HostProbe>, crate::applied::Applied) {
    let cluster = load(example_text("stacked"));
    let tree = render(&cluster);
    let mut facts = facts_for(&cluster);
    simulate_run(&lb_plan(&cluster, &tree, &facts), &mut facts);
    assert!(lb_plan(&cluster, &tree, &facts).is_converged());
    // The os phase's part: the sysctl that lets haproxy bind the VIP.
    let sysctl = crate::render::configs::loadbalancer::NONLOCAL_BIND_SYSCTL;
    for (host, files) in &tree.hosts {
        if let (Some(file), Some(Ok(f))) = (files.get(sysctl), facts.get_mut(host)) {
            f.files.insert(sysctl.into(), present_file(&file.contents, file.mode));
        }
    }
    let applied = crate::applied::Applied::next(
        None,
        &cluster,
        &tree,
        "apply",
        &[],
        "t".into(),
        super::files::sha256_hex,
    );
    (cluster, facts, applied)
}

fn plan_with(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    applied: Option<&crate::applied::Applied>,
    phases: &[Phase],
) -> Plan {
    try_plan(cluster, tree, facts, applied, phases).unwrap()
}

fn try_plan(
    cluster: &Cluster,
    tree: &RenderTree,
    facts: &BTreeMap<String, HostProbe>,
    applied: Option<&crate::applied::Applied>,
    phases: &[Phase],
) -> Result<Plan, PlanError> {
    try_plan_phases(cluster, tree, facts, &ArtifactInventory::new(), applied, phases)
}

/// The labels of a phase's sequence as `host: label`.
fn sequence_labels(plan: &Plan, phase: Phase) -> Vec<String> {
    let phase = plan.phases.iter().find(|p| p.phase == phase).expect("phase selected");
    phase.sequence.iter().map(|s| format!("{}: {}", s.host, s.step.label())).collect()
}

/// Every gate of the sequence comes before the first step that stops, disables or removes.
fn assert_gated_before_removed(labels: &[String]) {
    let first_removal = labels
        .iter()
        .position(|l| l.contains("systemctl stop") || l.contains("disable") || l.contains("rm -f"))
        .expect("a removal");
    let last_gate = labels.iter().rposition(|l| l.contains("wait: ")).expect("a gate");
    assert!(last_gate < first_removal, "a gate after a removal: {labels:#?}");
}

#[test]
fn keepalived_haproxy_to_node_local_brings_up_local_haproxy_then_retires_the_vip() {
    let (_, mut facts, applied) = converged_keepalived();
    let local = node_local_of_stacked();
    let tree = render(&local);
    let plan = plan_with(&local, &tree, &facts, Some(&applied), LB);
    assert!(plan.blocked.is_empty(), "{:?}", plan.blocked);
    // The new path: every worker's loopback haproxy, started and gated in the phase's host
    // steps (which run before any sequenced step).
    let w1 = labels(&plan, Phase::LoadBalancer, "worker1");
    assert!(w1.contains(&"wait: haproxy is active and listening on 127.0.0.1:6443".to_string()));
    assert!(labels(&plan, Phase::LoadBalancer, "cp1").is_empty(), "control planes get nothing new");
    let seq = sequence_labels(&plan, Phase::LoadBalancer);
    assert_gated_before_removed(&seq);
    // Each worker reaches the API through its own haproxy before anything goes.
    assert!(
        seq.contains(
            &"worker1: wait: worker1 reaches the API through the new path (127.0.0.1:6443)"
                .to_string()
        ),
        "{seq:#?}"
    );
    // Then each control plane's keepalived (first: the VIP is released) and haproxy go, with
    // every file of theirs and the restart records.
    let cp1: Vec<&str> = seq
        .iter()
        .filter_map(|l| l.strip_prefix("cp1: "))
        .filter(|l| !l.starts_with("wait"))
        .collect();
    assert_eq!(
        cp1,
        [
            "systemctl stop keepalived.service",
            "systemctl stop haproxy.service",
            "systemctl disable keepalived.service",
            "systemctl disable haproxy.service",
            "rm -f -- /etc/keepalived/keepalived.conf \
             /etc/systemd/system/keepalived.service.d/10-kubeforge.conf \
             /usr/local/lib/kubeforge/keepalived-interface \
             /etc/sysctl.d/99-kubeforge-loadbalancer.conf \
             /var/lib/kubeforge/loaded/keepalived.service /etc/haproxy/haproxy.cfg \
             /var/lib/kubeforge/loaded/haproxy.service",
            "systemctl daemon-reload",
        ]
    );
    // Workers' distribution haproxy was never kubeforge's in keepalived mode: nothing of it is
    // retired (the worker's haproxy is now kubeforge's, reconfigured in place).
    assert!(!seq.iter().any(|l| l.starts_with("worker1: systemctl")), "{seq:#?}");

    simulate_run(&plan, &mut facts);
    let again = plan_with(&local, &tree, &facts, Some(&applied), LB);
    assert!(again.is_converged(), "{}", render_text(&again));
    let cp1 = match &facts["cp1"] {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(cp1.units["keepalived.service"].active, "inactive");
    assert_eq!(cp1.units["haproxy.service"].enabled, "disabled");
    assert!(!cp1.files.contains_key("/etc/keepalived/keepalived.conf"));
}

#[test]
fn node_local_back_to_keepalived_haproxy_gates_the_vip_then_retires_local_haproxy() {
    let (stacked, mut facts, _) = converged_keepalived();
    let local = node_local_of_stacked();
    let local_tree = render(&local);
    simulate_run(&plan_with(&local, &local_tree, &facts, None, LB), &mut facts);
    // Known from the hosts alone (no applied record): kubeforge's restart record of haproxy.
    let applied = None;
    let tree = render(&stacked);
    let plan = plan_with(&stacked, &tree, &facts, applied, LB);
    let seq = sequence_labels(&plan, Phase::LoadBalancer);
    assert_gated_before_removed(&seq);
    // The phase's own VIP gates come first, then every node reaches the VIP.
    assert!(seq[0].contains("exactly one control plane holds the VIP 10.88.0.100"), "{seq:#?}");
    assert!(
        seq.contains(
            &"worker2: wait: worker2 reaches the API through the new path (10.88.0.100:6443)"
                .to_string()
        )
    );
    let worker1: Vec<&str> = seq
        .iter()
        .filter_map(|l| l.strip_prefix("worker1: "))
        .filter(|l| !l.starts_with("wait"))
        .collect();
    assert_eq!(
        worker1,
        [
            "systemctl stop haproxy.service",
            "systemctl disable haproxy.service",
            "rm -f -- /etc/haproxy/haproxy.cfg /var/lib/kubeforge/loaded/haproxy.service",
        ]
    );
    assert!(!seq.iter().any(|l| l.starts_with("cp1: systemctl")), "control planes keep theirs");
    simulate_run(&plan, &mut facts);
    assert!(plan_with(&stacked, &tree, &facts, None, LB).is_converged());
}

#[test]
fn the_old_path_stays_while_a_kubeconfig_still_names_it_or_a_host_is_not_in_the_run() {
    let (_, mut facts, applied) = converged_keepalived();
    let local = node_local_of_stacked();
    let tree = render(&local);
    // worker2's kubelet.conf still names the VIP (it differs from the node-local tree) and the
    // workers phase is not selected: retiring the VIP now would cut worker2 off.
    if let Some(Ok(f)) = facts.get_mut("worker2") {
        f.files.insert("/etc/kubernetes/kubelet.conf".into(), present_file(b"server: vip", 0o600));
    }
    let plan = plan_with(&local, &tree, &facts, Some(&applied), LB);
    assert!(sequence_labels(&plan, Phase::LoadBalancer).is_empty(), "nothing retired");
    assert!(!labels(&plan, Phase::LoadBalancer, "worker2").is_empty(), "the new path still comes");
    // The plan says what stays and why, and is not converged while it does.
    assert_eq!(plan.deferred.len(), 1, "{:#?}", plan.deferred);
    let deferred = &plan.deferred[0];
    for named in ["keepalived and haproxy on cp1, cp2, cp3", "worker2's /etc/kubernetes/kubelet"] {
        assert!(deferred.contains(named), "{named} in: {deferred}");
    }
    let text = crate::plan::render_text(&plan);
    assert!(
        text.contains("\nLeft for a later run:\n  - the old load-balancer mode stays"),
        "{text}"
    );
    assert!(!plan.is_converged());
    // With the phases that rewrite it selected, the retirement moves to the end of the run.
    let all = [Phase::Pki, Phase::LoadBalancer, Phase::ControlPlane, Phase::Workers, Phase::Addons];
    let plan = plan_with(&local, &tree, &facts, Some(&applied), &all);
    assert!(sequence_labels(&plan, Phase::LoadBalancer).is_empty());
    assert!(plan.deferred.is_empty(), "retired in this run: {:#?}", plan.deferred);
    let end = sequence_labels(&plan, Phase::Addons);
    assert_gated_before_removed(&end);
    assert!(end.contains(&"cp2: systemctl stop keepalived.service".to_string()), "{end:#?}");
    assert!(!end.iter().any(|l| l.contains("rollout")), "no Kubernetes runs: {end:#?}");
    // A running kubelet loaded the old path: a run that does not restart Kubernetes onto the
    // new path keeps the old one; a full run restarts kube-proxy (which reads its server at
    // start only) and waits for it before anything goes.
    if let Some(Ok(f)) = facts.get_mut("worker1") {
        f.units.insert(
            "kubelet.service".into(),
            UnitState { active: "active".into(), enabled: "enabled".into() },
        );
    }
    let lb_and_pki = [Phase::Pki, Phase::LoadBalancer];
    let plan = plan_with(&local, &tree, &facts, Some(&applied), &lb_and_pki);
    assert!(sequence_labels(&plan, Phase::LoadBalancer).is_empty());
    let plan = plan_with(&local, &tree, &facts, Some(&applied), &all);
    let end = sequence_labels(&plan, Phase::Addons);
    assert_gated_before_removed(&end);
    let restart = end.iter().position(|l| l.contains("rollout restart daemonset/kube-proxy"));
    let first_stop = end.iter().position(|l| l.contains("systemctl stop"));
    assert!(restart.is_some() && restart < first_stop, "{end:#?}");
    assert!(end.iter().any(|l| l.contains("wait: kube-proxy restarted on every node")));
    if let Some(Ok(f)) = facts.get_mut("worker1") {
        f.units.remove("kubelet.service");
    }
    // A host that is not in the run (unreachable) may still use the old path.
    if let Some(Ok(f)) = facts.get_mut("worker2") {
        f.files.remove("/etc/kubernetes/kubelet.conf");
    }
    facts.insert("worker1".into(), Err("connection refused".into()));
    let plan = plan_with(&local, &tree, &facts, Some(&applied), LB);
    assert!(sequence_labels(&plan, Phase::LoadBalancer).is_empty());
    assert!(
        plan.deferred[0].contains("worker1 does not take part in this run"),
        "{:#?}",
        plan.deferred
    );
}

#[test]
fn a_haproxy_kubeforge_never_ran_is_left_alone() {
    // Fresh Debian hosts run the distribution's haproxy; switching an empty record's cluster
    // to node-local retires nothing on the control planes.
    let local = node_local_of_stacked();
    let tree = render(&local);
    let facts = facts_for(&local);
    let plan = plan_with(&local, &tree, &facts, None, LB);
    assert!(sequence_labels(&plan, Phase::LoadBalancer).is_empty());
}

#[test]
fn an_etcd_topology_change_is_refused_and_plans_nothing() {
    let (stacked, facts, applied) = converged_keepalived();
    let text = example_text("external");
    let external = load(text);
    let tree = render(&external);
    let mut facts_ext = facts_for(&external);
    // Known from the applied record…
    let err = try_plan(&external, &tree, &facts_ext, Some(&applied), &Phase::ALL).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("etcd topology change refused (stacked → external"), "{text}");
    assert!(text.contains("generation 1"), "{text}");
    assert!(text.contains("Set `spec.etcd.topology` back to `stacked`"), "{text}");
    // …or, without one, from a control plane running etcd while the spec says external.
    let cp = external.control_planes().next().unwrap().name.clone();
    if let Some(Ok(f)) = facts_ext.get_mut(&cp) {
        f.units.insert(
            "etcd.service".into(),
            UnitState { active: "active".into(), enabled: "enabled".into() },
        );
    }
    let err = try_plan(&external, &tree, &facts_ext, None, &Phase::ALL).unwrap_err();
    assert!(err.to_string().contains(&format!("control plane {cp} runs etcd")), "{err}");
    // The same topology plans as before.
    let stacked_tree = render(&stacked);
    assert!(plan_with(&stacked, &stacked_tree, &facts, Some(&applied), LB).is_converged());
}
