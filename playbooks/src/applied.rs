//! What the last successful run put on the hosts (`<state>/applied.json`): the generation
//! number, when and by which operation, every host with its roles and SSH address, the
//! component versions, the load-balancer mode, the etcd topology and, per host, the sha256 of
//! every file kubeforge manages there. It is how a later plan knows what a host that left the
//! spec still runs. Pure data and its derivation from the model and the render tree: reading
//! and writing the file (atomically, under the state lock) is `cli::applied_store`'s job.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{Cluster, EtcdTopology, LoadBalancerMode};
use crate::render::RenderTree;

/// The schema version written into the file; a reader refuses newer ones.
pub const FORMAT: u32 = 1;

/// One applied generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Applied {
    pub format: u32,
    /// 1 for the first successful run, then one more per successful run.
    pub generation: u64,
    /// RFC 3339, UTC.
    pub applied_at: String,
    /// The operation that wrote it (`apply`).
    pub operation: String,
    pub cluster: String,
    pub kubernetes_version: String,
    pub etcd_version: String,
    /// `keepalived-haproxy`, `node-local`, `external` or `none`.
    pub load_balancer: String,
    /// `stacked` or `external`.
    pub etcd_topology: String,
    /// The phases the run covered (`apply --until loadbalancer` covers fewer than all).
    pub phases: Vec<String>,
    pub hosts: BTreeMap<String, AppliedHost>,
    /// Hosts an earlier generation applied that later left the spec, kept with what they were
    /// last given until an apply has cleaned them (`apply` reaches them at this address) or
    /// they are back in the spec.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub departed: BTreeMap<String, LeftHost>,
}

/// A host that left the spec, as it was last applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeftHost {
    /// The last generation it was applied in.
    pub last_generation: u64,
    pub host: AppliedHost,
}

/// One host as it was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedHost {
    pub address: String,
    pub ssh_port: u16,
    pub ssh_user: String,
    /// `control-plane`, `worker`, `etcd`, in that order.
    pub roles: Vec<String>,
    /// Node path → sha256 of every managed file (the render tree's files for the host).
    pub files: BTreeMap<String, String>,
}

impl AppliedHost {
    /// The kubeforge-managed services whose files this host received, in name order: what
    /// still runs there if nobody cleaned it.
    pub fn services(&self) -> Vec<&'static str> {
        let has = |p: &str| self.files.keys().any(|f| f == p || f.starts_with(p));
        let mut out = Vec::new();
        if has("/etc/systemd/system/etcd.service") {
            out.push("etcd");
        }
        if has("/etc/haproxy/") {
            out.push("haproxy");
        }
        if has("/etc/keepalived/") {
            out.push("keepalived");
        }
        if has("/etc/systemd/system/kubelet.service") {
            out.push("kubelet");
        }
        if has("/etc/systemd/system/kubeforge-backup.timer") {
            out.push("kubeforge-backup.timer");
        }
        out
    }
}

/// A host that left the spec since the last applied generation, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepartedHost {
    pub name: String,
    pub address: String,
    pub roles: Vec<String>,
    /// The generation the host was last applied in.
    pub generation: u64,
    /// What kubeforge put there (its services, from the files it was given).
    pub services: Vec<String>,
    pub managed_files: usize,
    /// What this plan does about it.
    pub cleanup: Cleanup,
}

/// What a plan does about a host that left the spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Cleanup {
    /// Not decided (a plan made without the departed hosts' facts).
    #[serde(rename = "none")]
    Undecided,
    /// Cleaned by this run (steps planned); it leaves the record once the run succeeds.
    Cleaned,
    /// Reached, and nothing of kubeforge is left on it: it leaves the record.
    AlreadyClean,
    /// Not reached at its last address: nothing is done on it but its removal from etcd;
    /// `left` is what still runs or lies there.
    Unreachable { reason: String, left: Vec<String> },
    /// Reached, but this run does not clean it (`why`); a later apply does.
    Deferred { why: String },
}

impl Cleanup {
    /// The host holds nothing of kubeforge once the run succeeds.
    pub fn leaves_record(&self) -> bool {
        matches!(self, Cleanup::Cleaned | Cleanup::AlreadyClean)
    }
}

fn load_balancer_name(mode: LoadBalancerMode) -> &'static str {
    match mode {
        LoadBalancerMode::KeepalivedHaproxy => "keepalived-haproxy",
        LoadBalancerMode::NodeLocal => "node-local",
        LoadBalancerMode::External => "external",
        LoadBalancerMode::None => "none",
    }
}

fn topology_name(topology: EtcdTopology) -> &'static str {
    match topology {
        EtcdTopology::Stacked => "stacked",
        EtcdTopology::External => "external",
    }
}

impl Applied {
    /// The generation after `previous` (the first is 1), recording `cluster` as rendered into
    /// `tree` with the file digests `sha256` computes (the caller's hash, so this module stays
    /// free of how files are hashed elsewhere).
    pub fn next(
        previous: Option<&Applied>,
        cluster: &Cluster,
        tree: &RenderTree,
        operation: &str,
        phases: &[String],
        applied_at: String,
        sha256: impl Fn(&[u8]) -> String,
    ) -> Applied {
        let hosts = cluster
            .hosts
            .iter()
            .map(|h| {
                let files = tree
                    .hosts
                    .get(&h.name)
                    .map(|files| {
                        files.iter().map(|(p, f)| (p.clone(), sha256(&f.contents))).collect()
                    })
                    .unwrap_or_default();
                let host = AppliedHost {
                    address: h.address.to_string(),
                    ssh_port: h.ssh.port,
                    ssh_user: h.ssh.user.clone(),
                    roles: h.roles.iter().map(|r| r.to_string()).collect(),
                    files,
                };
                (h.name.clone(), host)
            })
            .collect();
        let mut departed: BTreeMap<String, LeftHost> = BTreeMap::new();
        if let Some(p) = previous {
            departed.extend(p.departed.iter().map(|(n, l)| (n.clone(), l.clone())));
            for (name, host) in &p.hosts {
                let left = LeftHost { last_generation: p.generation, host: host.clone() };
                departed.insert(name.clone(), left);
            }
        }
        departed.retain(|name, _| cluster.host(name).is_none());
        Applied {
            format: FORMAT,
            generation: previous.map_or(1, |p| p.generation + 1),
            applied_at,
            operation: operation.to_string(),
            cluster: cluster.name.clone(),
            kubernetes_version: cluster.kubernetes_version.to_string(),
            etcd_version: cluster.etcd.version.clone(),
            load_balancer: load_balancer_name(cluster.load_balancer.mode).to_string(),
            etcd_topology: topology_name(cluster.etcd.topology).to_string(),
            phases: phases.to_vec(),
            hosts,
            departed,
        }
    }

    /// The next generation after a reset of `hosts`: they hold nothing of kubeforge any more,
    /// so they are neither applied nor departed hosts.
    pub fn without_hosts(&self, hosts: &[String], operation: &str, applied_at: String) -> Applied {
        let mut next = self.clone();
        next.generation += 1;
        next.operation = operation.to_string();
        next.applied_at = applied_at;
        next.hosts.retain(|name, _| !hosts.contains(name));
        next.departed.retain(|name, _| !hosts.contains(name));
        next
    }

    /// Every host this record knows, applied in this generation or departed earlier, with
    /// what it was last given.
    pub fn hosts_and_departed(&self) -> impl Iterator<Item = (&str, &AppliedHost)> {
        let now = self.hosts.iter().map(|(n, h)| (n.as_str(), h));
        now.chain(self.departed.iter().map(|(n, l)| (n.as_str(), &l.host)))
    }

    /// Forgets departed hosts that a successful run cleaned (`names`).
    pub fn forget_departed(&mut self, names: &[String]) {
        self.departed.retain(|name, _| !names.contains(name));
    }

    /// Hosts applied in this or an earlier generation that `cluster` no longer has, in name
    /// order (their cleanup not yet decided: the planner decides it from their facts).
    pub fn departed(&self, cluster: &Cluster) -> Vec<DepartedHost> {
        let now = self.hosts.iter().map(|(n, h)| (n, h, self.generation));
        let earlier = self.departed.iter().map(|(n, l)| (n, &l.host, l.last_generation));
        let mut out: Vec<DepartedHost> = now
            .chain(earlier)
            .filter(|(name, _, _)| cluster.host(name).is_none())
            .map(|(name, h, generation)| DepartedHost {
                name: name.clone(),
                address: h.address.clone(),
                roles: h.roles.clone(),
                generation,
                services: h.services().into_iter().map(String::from).collect(),
                managed_files: h.files.len(),
                cleanup: Cleanup::Undecided,
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out.dedup_by(|a, b| a.name == b.name);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::NodeFile;

    fn cluster() -> Cluster {
        use crate::model::Role;
        crate::plan::tests::cluster(&[
            ("cp1", "10.0.0.11", &[Role::ControlPlane]),
            ("cp2", "10.0.0.12", &[Role::ControlPlane]),
            ("w1", "10.0.0.21", &[Role::Worker]),
        ])
    }

    fn tree(c: &Cluster) -> RenderTree {
        let mut tree = RenderTree::default();
        for h in &c.hosts {
            let file =
                |s: &str| NodeFile { contents: s.as_bytes().to_vec(), mode: 0o644, secret: false };
            tree.insert(&h.name, "/etc/kubernetes/kubelet.conf", file(&h.name)).unwrap();
            if h.is_control_plane() {
                tree.insert(&h.name, "/etc/systemd/system/etcd.service", file("etcd")).unwrap();
                tree.insert(&h.name, "/etc/haproxy/haproxy.cfg", file("hap")).unwrap();
            }
        }
        tree
    }

    fn fake_sha(b: &[u8]) -> String {
        format!("len{}", b.len())
    }

    #[test]
    fn generations_count_up_and_record_hosts_versions_and_digests() {
        let c = cluster();
        let t = tree(&c);
        let first = Applied::next(None, &c, &t, "apply", &[], "t1".into(), fake_sha);
        assert_eq!(first.generation, 1);
        let second = Applied::next(Some(&first), &c, &t, "apply", &[], "t2".into(), fake_sha);
        assert_eq!(second.generation, 2);
        assert_eq!(second.applied_at, "t2");
        assert_eq!(second.etcd_version, c.etcd.version);
        assert_eq!(second.kubernetes_version, c.kubernetes_version.to_string());
        assert_eq!(second.hosts.len(), c.hosts.len());
        let cp = c.hosts.iter().find(|h| h.is_control_plane()).unwrap();
        let recorded = &second.hosts[&cp.name];
        assert_eq!(recorded.address, cp.address.to_string());
        assert!(recorded.roles.contains(&"control-plane".to_string()));
        assert_eq!(recorded.files["/etc/haproxy/haproxy.cfg"], "len3");
        assert_eq!(recorded.services(), vec!["etcd", "haproxy"]);
        // Round trip through JSON.
        let json = serde_json::to_string(&second).unwrap();
        let back: Applied = serde_json::from_str(&json).unwrap();
        assert_eq!(back, second);
    }

    #[test]
    fn a_host_removed_from_the_spec_is_named_with_what_it_runs() {
        let c = cluster();
        let applied = Applied::next(None, &c, &tree(&c), "apply", &[], "t".into(), fake_sha);
        assert!(applied.departed(&c).is_empty());
        let mut smaller = c.clone();
        let gone = smaller.hosts.iter().position(|h| h.is_control_plane()).unwrap();
        let removed = smaller.hosts.remove(gone);
        let departed = applied.departed(&smaller);
        assert_eq!(departed.len(), 1);
        assert_eq!(departed[0].name, removed.name);
        assert_eq!(departed[0].services, vec!["etcd", "haproxy"]);
        assert_eq!(departed[0].managed_files, 3);
        // The next generation, applied without it, still remembers it; back in the spec, it
        // is a host again and no longer departed.
        let later = Applied::next(
            Some(&applied),
            &smaller,
            &tree(&smaller),
            "apply",
            &[],
            "t2".into(),
            fake_sha,
        );
        assert!(!later.hosts.contains_key(&removed.name));
        let still = later.departed(&smaller);
        assert_eq!(still.len(), 1);
        assert_eq!((still[0].name.as_str(), still[0].generation), (removed.name.as_str(), 1));
        let reset = later.without_hosts(std::slice::from_ref(&removed.name), "reset", "t3".into());
        assert_eq!((reset.generation, reset.operation.as_str()), (3, "reset"));
        assert!(reset.departed(&smaller).is_empty(), "a reset host is clean: not departed");
        let back = Applied::next(Some(&later), &c, &tree(&c), "apply", &[], "t3".into(), fake_sha);
        assert!(back.departed.is_empty() && back.departed(&c).is_empty());
    }

    #[test]
    fn the_plan_names_departed_hosts_and_what_still_runs_there() {
        use crate::plan::{
            ArtifactInventory, Observed, Operation, Phase, PhaseSelection, PlanInput,
        };
        let c = cluster();
        let applied = Applied::next(None, &c, &tree(&c), "apply", &[], "t".into(), fake_sha);
        let mut smaller = c.clone();
        smaller.hosts.retain(|h| h.name != "cp2");
        let t = tree(&smaller);
        let facts = smaller
            .hosts
            .iter()
            .map(|h| (h.name.clone(), Ok(crate::plan::tests::fresh_facts(&h.name))))
            .collect();
        let selection = PhaseSelection::new(Some(Phase::Preflight), &[]);
        let artifacts = ArtifactInventory::new();
        let observed = Observed::default();
        let input = |applied| PlanInput {
            cluster: &smaller,
            tree: &t,
            facts: &facts,
            artifacts: &artifacts,
            selection: &selection,
            observed: &observed,
            applied,
        };
        let plan = crate::plan::plan(&Operation::Apply, input(Some(&applied))).unwrap();
        assert_eq!(plan.departed.len(), 1);
        let text = crate::plan::render_text(&plan);
        assert!(
            text.contains(
                "  cp2 (10.0.0.12, control-plane; applied in generation 1: etcd, haproxy, 3 \
                 managed file(s))\n      NOT REACHED (no facts were gathered); nothing is done \
                 on it but its removal from etcd. Left on it: etcd, haproxy, etcd's data in \
                 /var/lib/etcd, 3 managed file(s)."
            ),
            "{text}"
        );
        assert_eq!(
            plan.departed[0].cleanup,
            Cleanup::Unreachable {
                reason: "no facts were gathered".into(),
                left: vec![
                    "etcd".into(),
                    "haproxy".into(),
                    "etcd's data in /var/lib/etcd".into(),
                    "3 managed file(s)".into()
                ],
            }
        );
        // Without a record (or with every host still in the spec) nothing is said.
        let none = crate::plan::plan(&Operation::Apply, input(None)).unwrap();
        assert!(none.departed.is_empty());
        assert!(!crate::plan::render_text(&none).contains("no longer in the spec"));
        let json = serde_json::to_value(&none).unwrap();
        assert!(json.get("departed").is_none(), "JSON goldens unchanged without departed hosts");
    }
}
