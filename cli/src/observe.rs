//! Cluster-wide observations made before planning, beyond each host's facts: etcd's member
//! list and each member's health, read with etcd-client over mutual TLS through SSH tunnels to
//! the member hosts' loopback. Read-only. When the facts show that etcd exists (a member host
//! runs it or has its data) but no member answers, this fails: it never reports "no cluster"
//! for a cluster it could not read, so the planner never bootstraps over one.

use std::sync::Arc;
use std::time::Duration;

use kubeforge_playbooks::etcd_membership::CurrentMember;
use kubeforge_playbooks::model::Cluster;
use kubeforge_playbooks::plan::{
    EtcdClientFiles, EtcdObserved, MemberReport, Observed, Phase, PhaseSelection,
};
use kubeforge_playbooks::render::configs::etcd as etcd_unit;
use miette::miette;

use crate::etcd::{Endpoint, EtcdClient, EtcdTls, MemberInfo, MemberState, Timeouts, probe};
use crate::gather::Gathered;
use crate::state::StateDir;
use crate::transport::Transport;

/// The etcd client port on each member's loopback.
const CLIENT_PORT: u16 = kubeforge_playbooks::node::ETCD_CLIENT_PORT;

/// Short limits: observation runs on every plan.
fn timeouts() -> Timeouts {
    Timeouts {
        connect: Duration::from_secs(3),
        request: Duration::from_secs(3),
        reconfigure: Duration::from_secs(3),
    }
}

/// Observes what the selected phases need to plan.
pub async fn observe(
    cluster: &Cluster,
    state: &StateDir,
    selection: &PhaseSelection,
    gathered: &Gathered,
) -> miette::Result<Observed> {
    let mut observed =
        Observed { local_pki_dir: state.pki_dir().display().to_string(), ..Observed::default() };
    if !selection.contains(Phase::Etcd) {
        return Ok(observed);
    }
    observed.etcd = observe_etcd(cluster, &observed.local_pki_dir, gathered).await?;
    Ok(observed)
}

/// Hosts that may hold a member (the spec's members, and the control planes while a switch to
/// external etcd retires their stacked members: `plan::may_hold_etcd_member`).
fn member_hosts(cluster: &Cluster) -> impl Iterator<Item = &kubeforge_playbooks::model::Host> {
    cluster.hosts.iter().filter(|h| kubeforge_playbooks::plan::may_hold_etcd_member(cluster, h))
}

/// Member hosts on which etcd exists: running first, then with data only.
fn hosts_with_etcd(cluster: &Cluster, gathered: &Gathered) -> Vec<String> {
    let mut running = Vec::new();
    let mut with_data = Vec::new();
    for host in member_hosts(cluster) {
        let Some(Ok(facts)) = gathered.facts.get(&host.name) else { continue };
        if facts.units.get(kubeforge_playbooks::node::unit::ETCD).is_some_and(|u| u.is_active()) {
            running.push(host.name.clone());
        } else if facts.paths_exist.get(etcd_unit::MEMBER_DIR) == Some(&true) {
            with_data.push(host.name.clone());
        }
    }
    running.extend(with_data);
    running
}

fn load_tls(files: &EtcdClientFiles) -> miette::Result<EtcdTls> {
    EtcdTls::from_files(files).map_err(|e| {
        miette!(
            help = "run `kubeforge certs generate` for this spec, then plan again",
            "the etcd client credentials: {e}"
        )
    })
}

/// The member list through `host`'s tunnel.
async fn member_list(transport: &dyn Transport, tls: &EtcdTls) -> Result<Vec<MemberInfo>, String> {
    let forward = transport.forward_local(CLIENT_PORT).await.map_err(|e| e.to_string())?;
    let url = format!("https://127.0.0.1:{}", forward.local_addr().port());
    let endpoint = Endpoint::new(transport.host(), url);
    let client =
        EtcdClient::connect(&endpoint, Some(tls), timeouts()).await.map_err(|e| e.to_string())?;
    client.member_list().await.map_err(|e| e.to_string())
}

/// One member's health through its own host's tunnel: up to three probes a second apart (a
/// member busy with an election or a just-finished membership change answers slowly), then
/// the last error is reported on stderr so an unhealthy member is never silent. A healthy
/// member's answer carries its running version and the leader it sees.
async fn member_healthy(transport: Arc<dyn Transport>, tls: EtcdTls) -> Option<(String, u64)> {
    let mut last = String::new();
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let forward = match transport.forward_local(CLIENT_PORT).await {
            Ok(f) => f,
            Err(e) => {
                last = e.to_string();
                continue;
            }
        };
        let url = format!("https://127.0.0.1:{}", forward.local_addr().port());
        let endpoint = Endpoint::new(transport.host(), url);
        let health = probe(&endpoint, Some(&tls), timeouts()).await;
        match health.state {
            MemberState::Healthy { version, leader, .. } => return Some((version, leader)),
            MemberState::Unhealthy { error, .. } => last = error,
        }
    }
    eprintln!("warning: etcd member on {} is unhealthy: {last}", transport.host());
    None
}

async fn observe_etcd(
    cluster: &Cluster,
    local_pki_dir: &str,
    gathered: &Gathered,
) -> miette::Result<Option<EtcdObserved>> {
    let candidates = hosts_with_etcd(cluster, gathered);
    let Some(first_member) = cluster.etcd_members().next() else { return Ok(None) };
    if candidates.is_empty() {
        return Ok(None);
    }
    // The client certificate of a host that runs etcd now (the spec's first member's may not
    // be saved yet when that member is new, e.g. during a switch to external etcd).
    let saved = candidates
        .iter()
        .find_map(|h| EtcdTls::from_files(&EtcdClientFiles::for_member(local_pki_dir, h)).ok());
    let tls = match saved {
        Some(tls) => tls,
        None => load_tls(&EtcdClientFiles::for_member(local_pki_dir, &first_member.name))?,
    };
    let mut errors = Vec::new();
    let mut found = None;
    for host in &candidates {
        let Some(transport) = gathered.transports.get(host) else {
            errors.push(format!("{host}: no SSH connection"));
            continue;
        };
        match member_list(transport.as_ref(), &tls).await {
            Ok(list) => {
                found = Some((host.clone(), list));
                break;
            }
            Err(e) => errors.push(format!("{host}: {e}")),
        }
    }
    let Some((answered_by, list)) = found else {
        return Err(miette!(
            help = "start etcd on those hosts (systemctl start etcd) or fix what the errors \
                    name, then plan again; kubeforge never treats existing etcd data as a new \
                    cluster",
            "etcd exists on {} (running, or data in {}), but no member answered the member list \
             through an SSH tunnel to 127.0.0.1:{CLIENT_PORT}:\n  {}",
            candidates.join(", "),
            etcd_unit::MEMBER_DIR,
            errors.join("\n  ")
        ));
    };
    // Each member's health, in parallel, through the tunnel to its spec host.
    let mut probes = tokio::task::JoinSet::new();
    for (i, m) in list.iter().enumerate() {
        let host = member_hosts(cluster).find(|h| {
            m.peer_urls.contains(&etcd_unit::peer_url(h.address))
                || (!m.name.is_empty() && h.name == m.name)
        });
        let transport = host.and_then(|h| gathered.transports.get(&h.name)).cloned();
        if let (Some(transport), Some(host)) = (transport, host) {
            let tls = tls.clone();
            let name = host.name.clone();
            probes.spawn(async move { (i, name, member_healthy(transport, tls).await) });
        }
    }
    let mut healthy = vec![false; list.len()];
    let mut status = std::collections::BTreeMap::new();
    while let Some(joined) = probes.join_next().await {
        if let Ok((i, host, answer)) = joined {
            healthy[i] = answer.is_some();
            if let Some((version, leader)) = answer {
                let is_leader = leader != 0 && leader == list[i].id;
                status.insert(host, MemberReport { version, is_leader });
            }
        }
    }
    let members = list
        .into_iter()
        .zip(healthy)
        .map(|(m, healthy)| CurrentMember {
            name: m.name,
            id: m.id,
            peer_urls: m.peer_urls,
            is_learner: m.is_learner,
            healthy,
        })
        .collect();
    Ok(Some(EtcdObserved { answered_by, members, status }))
}
