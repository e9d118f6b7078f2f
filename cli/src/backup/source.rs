//! Where a backup comes from: choosing one healthy voting member (a follower when there is
//! one, so the leader is spared the snapshot's disk and network load), and taking the backup
//! from it: keyspace summary, member list, the snapshot streamed to disk, the sidecar. Shared
//! by `backup create` (endpoints are SSH tunnels) and `backup run` (endpoints from flags).

use std::path::Path;
use std::time::{Duration, Instant};

use super::sidecar::{Sidecar, SidecarMember};
use super::snapshot::StoredSnapshot;
use super::{BackupError, hex, stamps};
use crate::etcd::{Endpoint, EtcdClient, EtcdTls, MemberStatus, Timeouts};

/// Idle limit between two snapshot chunks.
pub const CHUNK_IDLE: Duration = Duration::from_secs(60);

/// The member a backup is taken from.
pub struct Chosen {
    pub client: EtcdClient,
    pub status: MemberStatus,
    pub is_leader: bool,
}

/// Connects to each endpoint and picks a healthy voter, followers first. On failure the error
/// lists every endpoint's reason.
pub async fn pick_member(
    endpoints: &[Endpoint],
    tls: Option<&EtcdTls>,
    timeouts: Timeouts,
) -> Result<Chosen, BackupError> {
    let mut reasons = Vec::new();
    let mut leader = None;
    for endpoint in endpoints {
        let checked = async {
            let client = EtcdClient::connect(endpoint, tls, timeouts).await?;
            let status = client.status().await?;
            Ok::<_, crate::etcd::EtcdError>((client, status))
        }
        .await;
        let (client, status) = match checked {
            Ok(ok) => ok,
            Err(e) => {
                reasons.push(e.to_string());
                continue;
            }
        };
        let why_not = if !status.errors.is_empty() {
            Some(format!("reports errors: {}", status.errors.join("; ")))
        } else if status.leader == 0 {
            Some("sees no leader (no quorum?)".to_string())
        } else if status.is_learner {
            Some("is a learner".to_string())
        } else {
            None
        };
        if let Some(why) = why_not {
            reasons.push(format!("etcd member {} ({}) {why}", endpoint.name, endpoint.url));
            continue;
        }
        if let Err(e) = client.linearizable_get("/kubeforge/health").await {
            reasons.push(e.to_string());
            continue;
        }
        let is_leader = status.leader == status.member_id;
        if !is_leader {
            return Ok(Chosen { client, status, is_leader });
        }
        if leader.is_none() {
            leader = Some(Chosen { client, status, is_leader });
        }
    }
    leader.ok_or_else(|| {
        BackupError::Other(format!(
            "no healthy etcd member to take the snapshot from: {}",
            reasons.join("; ")
        ))
    })
}

/// Who made the backup and for which cluster (recorded in the sidecar).
pub struct Origin<'a> {
    pub cluster: Option<&'a str>,
    pub spec_sha256: Option<String>,
    pub created_by: &'a str,
    /// File name prefix.
    pub prefix: &'a str,
}

/// A finished backup.
pub struct Taken {
    pub snapshot: StoredSnapshot,
    pub sidecar: Sidecar,
    pub sidecar_path: std::path::PathBuf,
    pub elapsed: Duration,
}

/// Takes a backup from `chosen` into `dir`: the snapshot (checked, stored atomically), then
/// its sidecar. Should the sidecar fail, the snapshot is removed again.
pub async fn take(
    chosen: &Chosen,
    dir: &Path,
    origin: Origin<'_>,
    progress: impl FnMut(u64, u64),
) -> Result<Taken, BackupError> {
    let start = Instant::now();
    let client = &chosen.client;
    let keyspace = client.keyspace().await?;
    let members = client.member_list().await?;
    let now = time::OffsetDateTime::now_utc();
    let (compact, rfc) = stamps(now);
    super::snapshot::create_dir(dir)?;
    let name = super::store::new_name(dir, origin.prefix, &compact);
    let snapshot = super::snapshot::save(client, dir, &name, CHUNK_IDLE, progress).await?;
    let endpoint = client.endpoint();
    let sidecar = Sidecar {
        format: super::sidecar::FORMAT,
        cluster: origin.cluster.map(str::to_string),
        cluster_id: format!("{:x}", keyspace.cluster_id),
        member: endpoint.name.clone(),
        member_id: format!("{:x}", chosen.status.member_id),
        endpoint: endpoint.url.clone(),
        etcd_version: chosen.status.version.clone(),
        revision: keyspace.revision,
        key_count: keyspace.key_count,
        members: members
            .iter()
            .map(|m| SidecarMember {
                id: format!("{:x}", m.id),
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
                is_learner: m.is_learner,
            })
            .collect(),
        spec_sha256: origin.spec_sha256,
        file: name,
        file_size: snapshot.file_size,
        file_sha256: snapshot.file_sha256.clone(),
        compression: "zstd".to_string(),
        db_size: snapshot.db.db_size,
        db_sha256: snapshot.db.db_sha256.clone(),
        created_at: rfc,
        created_by: origin.created_by.to_string(),
        verified: None,
    };
    let sidecar_path = match sidecar.save_beside(&snapshot.path) {
        Ok(p) => p,
        Err(e) => {
            let _ = std::fs::remove_file(&snapshot.path);
            return Err(e);
        }
    };
    Ok(Taken { snapshot, sidecar, sidecar_path, elapsed: start.elapsed() })
}

/// sha256 (hex) of a file's bytes, read whole (spec files are small).
pub fn file_sha256(path: &Path) -> Option<String> {
    use sha2::Digest as _;
    std::fs::read(path).ok().map(|b| hex(&sha2::Sha256::digest(&b)))
}
