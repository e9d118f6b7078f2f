//! Runs a plan's etcd operations: each maps to `crate::etcd` calls over mutual TLS through an
//! SSH tunnel to a member host's loopback client port. Membership changes go to the step's
//! host; a health gate tunnels to every member it names. A change already in place (the member
//! added, promoted or gone, after an interrupted run) counts as done. Every operation is in the
//! audit log (what, on which member, the outcome; never key material).

use std::time::{Duration, Instant};

use kubeforge_playbooks::plan::{EtcdAction, EtcdOp};

use super::{HostFailure, StepContext, StepOutcome};
use crate::etcd::{Endpoint, EtcdClient, EtcdTls, Timeouts, wait_healthy};
use crate::transport::LocalForward;

pub(super) async fn run(ctx: &StepContext<'_>, op: &EtcdOp) -> Result<StepOutcome, HostFailure> {
    let started = Instant::now();
    let result = run_action(ctx, op).await;
    let shown = match &result {
        Ok(Done::Changed(what)) | Ok(Done::Unchanged(what)) => what.clone(),
        Err(f) => f.stderr_tail.lines().next().unwrap_or("failed").to_string(),
    };
    ctx.record("etcd", vec![op.action.to_string()], None, started, &shown);
    match result? {
        Done::Changed(_) => Ok(StepOutcome::Changed),
        Done::Unchanged(_) => Ok(StepOutcome::Unchanged),
    }
}

enum Done {
    Changed(String),
    Unchanged(String),
}

fn retry_remedy(ctx: &StepContext<'_>) -> String {
    format!(
        "check the etcd members' logs (journalctl -u etcd) and that they can reach each other on \
         port 2380, then run `{}` again: it resumes from the cluster's state",
        ctx.rerun
    )
}

fn failure(ctx: &StepContext<'_>, op: &EtcdOp, detail: String, remedy: &str) -> HostFailure {
    ctx.failure(format!("etcd {}", op.action), None, detail, remedy)
}

/// A tunnel to `host`'s etcd client port and the endpoint that uses it.
async fn tunnel(
    ctx: &StepContext<'_>,
    op: &EtcdOp,
    host: &str,
) -> Result<(LocalForward, Endpoint), HostFailure> {
    let transport = ctx.transports.get(host).map(|t| t.as_ref()).unwrap_or(ctx.transport);
    if transport.host() != host {
        return Err(failure(
            ctx,
            op,
            format!("no SSH connection to {host} to tunnel to its etcd"),
            &format!(
                "check that the host is up and reachable over SSH, then run `{}` again",
                ctx.rerun
            ),
        ));
    }
    let forward = transport
        .forward_local(op.client_port)
        .await
        .map_err(|e| ctx.transport_failure(format!("forward to {host}:{}", op.client_port), e))?;
    let url = format!("https://127.0.0.1:{}", forward.local_addr().port());
    Ok((forward, Endpoint::new(host, url)))
}

async fn run_action(ctx: &StepContext<'_>, op: &EtcdOp) -> Result<Done, HostFailure> {
    let tls = EtcdTls::from_files(&op.tls).map_err(|e| {
        failure(
            ctx,
            op,
            e,
            &format!(
                "the state dir's PKI is incomplete; run `kubeforge certs generate`, then `{}` \
                 again",
                ctx.rerun
            ),
        )
    })?;
    let ms = Duration::from_millis;
    let timeouts = Timeouts {
        connect: ms(op.timing.connect_ms),
        request: ms(op.timing.request_ms),
        reconfigure: ms(op.timing.reconfigure_ms),
    };
    let etcd_failure =
        |e: crate::etcd::EtcdError| failure(ctx, op, e.to_string(), &retry_remedy(ctx));
    if let EtcdAction::HealthGate { members, timeout_ms } = &op.action {
        // A member that is still starting has nothing listening yet: opening its tunnel is
        // part of what the gate waits for.
        let limit = Duration::from_millis(*timeout_ms);
        let deadline = Instant::now() + limit;
        let mut tunnels = Vec::new();
        let mut endpoints = Vec::new();
        for m in members {
            loop {
                match tunnel(ctx, op, m).await {
                    Ok((forward, endpoint)) => {
                        tunnels.push(forward);
                        endpoints.push(endpoint);
                        break;
                    }
                    Err(f) if ctx.transports.contains_key(m) && Instant::now() < deadline => {
                        let _ = f;
                        tokio::time::sleep(ms(op.timing.retry_ms)).await;
                    }
                    Err(f) => return Err(f),
                }
            }
        }
        let limit = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(5));
        return match wait_healthy(&endpoints, Some(&tls), timeouts, limit).await {
            Ok(report) => Ok(Done::Unchanged(format!(
                "healthy after {:.1} s: {}",
                report.elapsed.as_secs_f64(),
                members.join(",")
            ))),
            Err(e) => Err(failure(ctx, op, e.to_string(), &retry_remedy(ctx))),
        };
    }
    if let EtcdAction::RestoredGate { members, revision, timeout_ms } = &op.action {
        let deadline = Instant::now() + Duration::from_millis(*timeout_ms);
        loop {
            let last = match restored_state(ctx, op, members, &tls, timeouts).await {
                Ok(state) => match state.judge(members, *revision) {
                    Ok(done) => return Ok(Done::Unchanged(done)),
                    Err(why) => why,
                },
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                return Err(failure(
                    ctx,
                    op,
                    last,
                    &format!(
                        "the members do not serve the snapshot's data as one cluster; the old \
                         data is kept beside /var/lib/etcd on each member. Check `journalctl -u \
                         etcd` there, then run `{}` again",
                        ctx.rerun
                    ),
                ));
            }
            tokio::time::sleep(ms(op.timing.retry_ms.max(200))).await;
        }
    }
    if let EtcdAction::VersionGate { member, version, timeout_ms } = &op.action {
        let deadline = Instant::now() + Duration::from_millis(*timeout_ms);
        loop {
            let last = match tunnel(ctx, op, member).await {
                Ok((_forward, endpoint)) => {
                    match EtcdClient::connect(&endpoint, Some(&tls), timeouts).await {
                        Ok(client) => match client.status().await {
                            Ok(s) if &s.version == version => {
                                return Ok(Done::Unchanged(format!(
                                    "{member} runs etcd {version}"
                                )));
                            }
                            Ok(s) => format!("{member} still reports etcd {}", s.version),
                            Err(e) => e.to_string(),
                        },
                        Err(e) => e.to_string(),
                    }
                }
                Err(f) => f.stderr_tail,
            };
            if Instant::now() >= deadline {
                return Err(failure(
                    ctx,
                    op,
                    last,
                    &format!(
                        "the member did not come back on etcd {version}: check `journalctl -u \
                         etcd` on {member} (flags a new release removed stop it). While the \
                         cluster version is unchanged the old binary can run the same data dir \
                         again; the snapshot taken before the upgrade is kept. Then run `{}` \
                         again: members already on {version} are skipped",
                        ctx.rerun
                    ),
                ));
            }
            tokio::time::sleep(ms(op.timing.retry_ms.max(200))).await;
        }
    }
    let (_forward, endpoint) = tunnel(ctx, op, ctx.host).await?;
    let client =
        EtcdClient::connect(&endpoint, Some(&tls), timeouts).await.map_err(etcd_failure)?;
    let members = client.member_list().await.map_err(etcd_failure)?;
    match &op.action {
        EtcdAction::AddLearner { name, peer_url } => {
            if let Some(m) = members.iter().find(|m| m.peer_urls.contains(peer_url)) {
                return Ok(Done::Unchanged(format!("{name} is already member {:x}", m.id)));
            }
            let (added, _) =
                client.add_learner(std::slice::from_ref(peer_url)).await.map_err(etcd_failure)?;
            Ok(Done::Changed(format!("added {name} as learner {:x}", added.id)))
        }
        EtcdAction::Promote { name, peer_url } => {
            let Some(m) = members.iter().find(|m| m.peer_urls.contains(peer_url)) else {
                return Err(failure(
                    ctx,
                    op,
                    format!("no member with peer URL {peer_url} to promote"),
                    "run plan again: the member list changed since this plan was made",
                ));
            };
            if !m.is_learner {
                return Ok(Done::Unchanged(format!("{name} already votes")));
            }
            client.promote(m.id).await.map_err(etcd_failure)?;
            Ok(Done::Changed(format!("promoted {name} ({:x})", m.id)))
        }
        EtcdAction::Remove { name, id } => {
            if !members.iter().any(|m| m.id == *id) {
                return Ok(Done::Unchanged(format!("{name} ({id:x}) is already gone")));
            }
            match client.remove(*id).await {
                Ok(_) => Ok(Done::Changed(format!("removed {name} ({id:x})"))),
                // The removal may have been applied with its answer lost (etcd 3.5 answers
                // `server stopped`; a removed leader may not answer at all): the member list
                // says.
                Err(e) => match client.member_list().await {
                    Ok(now) if !now.iter().any(|m| m.id == *id) => Ok(Done::Changed(format!(
                        "removed {name} ({id:x}); the answer was lost ({e}), the member list \
                         confirms it"
                    ))),
                    _ => Err(etcd_failure(e)),
                },
            }
        }
        EtcdAction::MoveLeader { name, id } => {
            move_leader(ctx, op, &client, &members, name, *id, &tls, timeouts).await
        }
        EtcdAction::HealthGate { .. }
        | EtcdAction::RestoredGate { .. }
        | EtcdAction::VersionGate { .. } => Ok(Done::Unchanged(String::new())),
    }
}

/// Hands leadership from member `name` (`id`), if it leads, to the member of the step's host:
/// MoveLeader is sent to the leader's own endpoint (a follower refuses it), through the tunnel
/// to `name`'s host; then the step's member must see another leader. Retried while etcd is
/// between leaders, within the reconfiguration limit.
#[allow(clippy::too_many_arguments)]
async fn move_leader(
    ctx: &StepContext<'_>,
    op: &EtcdOp,
    client: &EtcdClient,
    members: &[crate::etcd::MemberInfo],
    name: &str,
    id: u64,
    tls: &EtcdTls,
    timeouts: Timeouts,
) -> Result<Done, HostFailure> {
    if !members.iter().any(|m| m.id == id) {
        return Ok(Done::Unchanged(format!("{name} ({id:x}) is no longer a member")));
    }
    let deadline = Instant::now() + timeouts.reconfigure;
    let pause = Duration::from_millis(op.timing.retry_ms.max(200));
    let mut moved = false;
    let mut last = String::new();
    loop {
        match client.status().await {
            Ok(status) if status.leader != 0 && status.leader != id => {
                let target = members
                    .iter()
                    .find(|m| m.id == status.leader)
                    .map(|m| m.name.clone())
                    .unwrap_or_else(|| format!("{:x}", status.leader));
                return Ok(if moved {
                    Done::Changed(format!("{target} leads instead of {name}"))
                } else {
                    Done::Unchanged(format!("{name} does not lead ({target} does)"))
                });
            }
            Ok(status) if status.leader == id => {
                let to = status.member_id;
                match tunnel(ctx, op, name).await {
                    Ok((_forward, endpoint)) => {
                        match EtcdClient::connect(&endpoint, Some(tls), timeouts).await {
                            Ok(leader) => match leader.move_leader(to).await {
                                Ok(()) => moved = true,
                                Err(e) => last = e.to_string(),
                            },
                            Err(e) => last = e.to_string(),
                        }
                    }
                    // No way to the leader's endpoint: the removal goes ahead without the
                    // hand-over (etcd elects a new leader; the removal's answer is checked).
                    Err(f) => {
                        return Ok(Done::Unchanged(format!(
                            "{name} leads, but leadership cannot be moved ({}); it is removed \
                             as leader",
                            f.stderr_tail.lines().next().unwrap_or("no connection")
                        )));
                    }
                }
            }
            Ok(_) => last = "no leader (an election is running)".into(),
            Err(e) => last = e.to_string(),
        }
        if Instant::now() >= deadline {
            return Err(failure(
                ctx,
                op,
                format!("leadership did not move away from {name}: {last}"),
                &retry_remedy(ctx),
            ));
        }
        tokio::time::sleep(pause).await;
    }
}

/// What each member serves after a restore, read through its own host's tunnel
/// (serializable reads: each member's own data).
struct RestoredState {
    /// (member, cluster id, revision)
    answers: Vec<(String, u64, i64)>,
    /// The member names in the first member's member list.
    listed: Vec<String>,
}

impl RestoredState {
    /// One cluster id, exactly `members` listed, one revision that is the snapshot's (or later
    /// only by writes since the start, which every member has applied).
    fn judge(&self, members: &[String], revision: i64) -> Result<String, String> {
        let ids: std::collections::BTreeSet<u64> = self.answers.iter().map(|a| a.1).collect();
        if ids.len() != 1 {
            let shown: Vec<String> =
                self.answers.iter().map(|(m, id, _)| format!("{m}: {id:x}")).collect();
            return Err(format!("the members report different cluster ids: {}", shown.join(", ")));
        }
        let mut listed = self.listed.clone();
        listed.sort();
        let mut wanted = members.to_vec();
        wanted.sort();
        if listed != wanted {
            return Err(format!(
                "the member list is [{}], not the spec's [{}]",
                listed.join(", "),
                wanted.join(", ")
            ));
        }
        let revisions: std::collections::BTreeSet<i64> = self.answers.iter().map(|a| a.2).collect();
        let shown: Vec<String> = self.answers.iter().map(|(m, _, r)| format!("{m}: {r}")).collect();
        match revisions.iter().collect::<Vec<_>>()[..] {
            [r] if *r == revision => Ok(format!(
                "one cluster ({:x}) of {} members at the snapshot's revision {revision}",
                self.answers[0].1,
                members.len()
            )),
            [r] if *r > revision => Ok(format!(
                "one cluster ({:x}) of {} members at revision {r} (the snapshot's {revision} and \
                 {} write(s) since the start)",
                self.answers[0].1,
                members.len(),
                r - revision
            )),
            _ => Err(format!(
                "the members' revisions are not the snapshot's {revision}: {}",
                shown.join(", ")
            )),
        }
    }
}

async fn restored_state(
    ctx: &StepContext<'_>,
    op: &EtcdOp,
    members: &[String],
    tls: &EtcdTls,
    timeouts: Timeouts,
) -> Result<RestoredState, String> {
    let mut answers = Vec::new();
    let mut listed = Vec::new();
    for m in members {
        let (_forward, endpoint) = tunnel(ctx, op, m).await.map_err(|f| f.stderr_tail)?;
        let client = EtcdClient::connect(&endpoint, Some(tls), timeouts)
            .await
            .map_err(|e| format!("{m}: {e}"))?;
        let keyspace = client.keyspace().await.map_err(|e| format!("{m}: {e}"))?;
        if listed.is_empty() {
            listed = client
                .member_list()
                .await
                .map_err(|e| format!("{m}: {e}"))?
                .into_iter()
                .map(|i| i.name)
                .collect();
        }
        answers.push((m.clone(), keyspace.cluster_id, keyspace.revision));
    }
    Ok(RestoredState { answers, listed })
}

#[cfg(test)]
mod restored_tests {
    use super::RestoredState;

    fn state(answers: &[(&str, u64, i64)], listed: &[&str]) -> RestoredState {
        RestoredState {
            answers: answers.iter().map(|(m, id, r)| (m.to_string(), *id, *r)).collect(),
            listed: listed.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn one_cluster_at_the_snapshots_revision_passes_and_anything_else_is_named() {
        let members: Vec<String> = ["m1", "m2", "m3"].map(String::from).to_vec();
        let all = ["m1", "m2", "m3"];
        let ok = state(&[("m1", 7, 100), ("m2", 7, 100), ("m3", 7, 100)], &all);
        assert!(ok.judge(&members, 100).unwrap().contains("snapshot's revision 100"));
        let later = state(&[("m1", 7, 102), ("m2", 7, 102), ("m3", 7, 102)], &all);
        assert!(later.judge(&members, 100).unwrap().contains("2 write(s) since the start"));
        // A member left on the old data: another cluster id.
        let old = state(&[("m1", 7, 100), ("m2", 9, 5000), ("m3", 7, 100)], &all);
        assert!(old.judge(&members, 100).unwrap_err().contains("different cluster ids"));
        // A member restored from other data, or an older snapshot.
        let other = state(&[("m1", 7, 100), ("m2", 7, 90), ("m3", 7, 100)], &all);
        assert!(other.judge(&members, 100).unwrap_err().contains("m2: 90"));
        let older = state(&[("m1", 7, 90), ("m2", 7, 90), ("m3", 7, 90)], &all);
        assert!(older.judge(&members, 100).is_err());
        // Three one-member clusters would list one member each.
        let alone = state(&[("m1", 7, 100), ("m2", 7, 100), ("m3", 7, 100)], &["m1"]);
        assert!(alone.judge(&members, 100).unwrap_err().contains("not the spec's"));
    }
}
