//! Fact gathering: connect to every host in parallel (bounded), run the one combined read-only
//! probe script the planner asked for, and parse it with the pure parsers in
//! `kubeforge_playbooks::facts`. An unreachable host becomes an `Err` fact (named in the plan)
//! and never stops the others. The connections are kept for the executor.

use std::collections::BTreeMap;
use std::sync::Arc;

use kubeforge_playbooks::facts::{self, ProbeRequest, ProbeWindow};
use kubeforge_playbooks::plan::HostProbe;
use tokio::sync::Semaphore;

use crate::transport::{Connector, RemoteCommand, SshTarget, Transport};

/// One host to probe.
#[derive(Debug, Clone)]
pub struct GatherTarget {
    pub target: SshTarget,
    pub request: ProbeRequest,
}

/// The facts of every host and the open connections.
#[derive(Default)]
pub struct Gathered {
    pub facts: BTreeMap<String, HostProbe>,
    pub transports: BTreeMap<String, Arc<dyn Transport>>,
    /// Hosts whose host key was refused (changed, revoked, or unknown under strict): `apply`
    /// changes nothing anywhere while one is listed, since the spec may be pointing at the
    /// wrong machines.
    pub host_key_refused: BTreeMap<String, String>,
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Probes one connected host.
pub async fn probe(transport: &dyn Transport, request: &ProbeRequest) -> HostProbe {
    let command = RemoteCommand::shell(facts::probe_script(request));
    let sent_unix_ns = now_ns();
    let output = transport.run(&command).await.map_err(|e| e.to_string())?;
    let window = ProbeWindow { sent_unix_ns, received_unix_ns: now_ns() };
    if !output.success() {
        return Err(format!(
            "the fact probe exited with status {}: {}",
            output.exit_status,
            output.stderr_tail()
        ));
    }
    facts::parse_probe_output(request, &output.stdout_lossy(), window)
        .map_err(|e| format!("could not read the fact probe's output: {e}"))
}

/// Connects to and probes every target, at most `concurrency` at once.
pub async fn gather(
    connector: Arc<dyn Connector>,
    targets: Vec<GatherTarget>,
    concurrency: usize,
) -> Gathered {
    let semaphore = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for GatherTarget { target, request } in targets {
        let connector = connector.clone();
        let semaphore = semaphore.clone();
        tasks.spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let host = target.host.clone();
            match connector.connect(&target).await {
                Err(e) => {
                    let refused = e.is_host_key_refusal();
                    (host, Err(e.to_string()), None, refused)
                }
                Ok(transport) => {
                    let facts = probe(transport.as_ref(), &request).await;
                    (host, facts, Some(transport), false)
                }
            }
        });
    }
    let mut gathered = Gathered::default();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((host, facts, transport, refused)) => {
                if let Some(t) = transport {
                    gathered.transports.insert(host.clone(), t);
                }
                if let (true, Err(reason)) = (refused, &facts) {
                    gathered.host_key_refused.insert(host.clone(), reason.clone());
                }
                gathered.facts.insert(host, facts);
            }
            Err(e) => tracing::error!("a fact-gathering task failed: {e}"),
        }
    }
    gathered
}
