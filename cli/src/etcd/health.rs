//! The etcd health gate: every listed member must answer `status` (and, when it votes, a
//! linearizable read, which needs a working quorum) before the deadline. The report names each
//! member with its state, so a failed gate says exactly which member is down and why.

use std::fmt;
use std::time::{Duration, Instant};

use super::{Endpoint, EtcdClient, EtcdError, EtcdTls, FailureKind, Timeouts};

/// What the gate found for one member on its last probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemberState {
    Healthy { version: String, is_learner: bool, leader: u64, raft_index: u64 },
    Unhealthy { kind: FailureKind, error: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberHealth {
    pub name: String,
    pub url: String,
    pub state: MemberState,
}

impl MemberHealth {
    pub fn is_healthy(&self) -> bool {
        matches!(self.state, MemberState::Healthy { .. })
    }
}

/// The outcome of a health gate, one line per member, in the order given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReport {
    pub members: Vec<MemberHealth>,
    pub elapsed: Duration,
}

impl HealthReport {
    pub fn all_healthy(&self) -> bool {
        self.members.iter().all(MemberHealth::is_healthy)
    }
    pub fn unhealthy(&self) -> impl Iterator<Item = &MemberHealth> {
        self.members.iter().filter(|m| !m.is_healthy())
    }
    pub fn member(&self, name: &str) -> Option<&MemberHealth> {
        self.members.iter().find(|m| m.name == name)
    }
}

impl fmt::Display for HealthReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for m in &self.members {
            match &m.state {
                MemberState::Healthy { version, is_learner, .. } => writeln!(
                    f,
                    "  {} ({}): healthy, etcd {version}{}",
                    m.name,
                    m.url,
                    if *is_learner { ", learner" } else { "" }
                )?,
                MemberState::Unhealthy { error, .. } => {
                    writeln!(f, "  {} ({}): UNHEALTHY: {error}", m.name, m.url)?
                }
            }
        }
        Ok(())
    }
}

/// The gate did not pass before its deadline.
#[derive(Debug, thiserror::Error)]
#[error(
    "etcd health gate failed after {:.1} s: {} of {} members unhealthy ({})\n{report}",
    report.elapsed.as_secs_f64(),
    report.unhealthy().count(),
    report.members.len(),
    report.unhealthy().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")
)]
pub struct HealthGateError {
    pub report: HealthReport,
}

/// Probes one member once.
pub async fn probe(endpoint: &Endpoint, tls: Option<&EtcdTls>, timeouts: Timeouts) -> MemberHealth {
    let state = match probe_inner(endpoint, tls, timeouts).await {
        Ok(state) => state,
        Err(e) => MemberState::Unhealthy { kind: e.kind(), error: e.to_string() },
    };
    MemberHealth { name: endpoint.name.clone(), url: endpoint.url.clone(), state }
}

async fn probe_inner(
    endpoint: &Endpoint,
    tls: Option<&EtcdTls>,
    timeouts: Timeouts,
) -> Result<MemberState, EtcdError> {
    let client = EtcdClient::connect(endpoint, tls, timeouts).await?;
    let status = client.status().await?;
    if !status.errors.is_empty() {
        return Ok(MemberState::Unhealthy {
            kind: FailureKind::Refused,
            error: format!("member reports errors: {}", status.errors.join("; ")),
        });
    }
    if status.leader == 0 {
        return Ok(MemberState::Unhealthy {
            kind: FailureKind::Refused,
            error: "member sees no leader (no quorum?)".to_string(),
        });
    }
    if !status.is_learner {
        client.linearizable_get("/kubeforge/health").await?;
    }
    Ok(MemberState::Healthy {
        version: status.version,
        is_learner: status.is_learner,
        leader: status.leader,
        raft_index: status.raft_index,
    })
}

/// Probes every member (in parallel) until all are healthy or `timeout` has passed; the
/// report holds each member's last state.
pub async fn wait_healthy(
    members: &[Endpoint],
    tls: Option<&EtcdTls>,
    timeouts: Timeouts,
    timeout: Duration,
) -> Result<HealthReport, HealthGateError> {
    let start = Instant::now();
    let interval = Duration::from_millis(500);
    loop {
        let probes = members.iter().map(|m| probe(m, tls, timeouts));
        let results = futures_join_all(probes).await;
        let report = HealthReport { members: results, elapsed: start.elapsed() };
        if report.all_healthy() {
            return Ok(report);
        }
        if start.elapsed() + interval >= timeout {
            return Err(HealthGateError { report });
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs the futures concurrently on the current task and returns their outputs in order.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut outputs: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if outputs[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => outputs[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending { std::task::Poll::Pending } else { std::task::Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
