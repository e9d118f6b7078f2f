//! A client bound to one etcd member's endpoint: every request goes to that member (etcd-client
//! balances across the endpoints it is given, so per-member checks need one client each).

use std::future::Future;
use std::time::{Duration, Instant};

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, MemberAddOptions, TlsOptions,
};

use super::error::classify;
use super::{Endpoint, EtcdError, EtcdTls, Timeouts};

/// A member as the member list reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    pub id: u64,
    /// Empty until the member has started.
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// A member's own view, from the maintenance `status` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    pub member_id: u64,
    pub version: String,
    pub leader: u64,
    pub raft_index: u64,
    pub raft_term: u64,
    pub is_learner: bool,
    pub db_size: i64,
    /// Errors the member reports about itself (e.g. alarms such as NOSPACE).
    pub errors: Vec<String>,
}

/// A member's keyspace summary (see [`EtcdClient::keyspace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keyspace {
    pub revision: i64,
    pub key_count: u64,
    pub cluster_id: u64,
    pub member_id: u64,
}

/// A snapshot being received (see [`EtcdClient::snapshot`]).
pub struct SnapshotStream {
    inner: etcd_client::SnapshotStreaming,
    endpoint: Endpoint,
    idle: Duration,
    /// Keeps the channel the stream runs on alive.
    #[allow(dead_code)]
    client: Client,
}

impl std::fmt::Debug for SnapshotStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotStream").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl SnapshotStream {
    /// The next chunk and the bytes etcd says remain after it; `None` at the end of the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, u64)>, EtcdError> {
        match tokio::time::timeout(self.idle, self.inner.message()).await {
            Ok(Ok(Some(resp))) => Ok(Some((resp.blob().to_vec(), resp.remaining_bytes()))),
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => Err(classify(&self.endpoint.name, &self.endpoint.url, "snapshot", e)),
            Err(_) => Err(timeout_error(&self.endpoint, "snapshot (next chunk)", self.idle)),
        }
    }
}

/// A connection to one member.
pub struct EtcdClient {
    endpoint: Endpoint,
    timeouts: Timeouts,
    client: Client,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient").field("endpoint", &self.endpoint).finish_non_exhaustive()
    }
}

impl EtcdClient {
    /// Connects to one member over mutual TLS (or plain HTTP for an `http://` URL with
    /// `tls: None`). The TLS handshake itself happens lazily, on the first request.
    pub async fn connect(
        endpoint: &Endpoint,
        tls: Option<&EtcdTls>,
        timeouts: Timeouts,
    ) -> Result<EtcdClient, EtcdError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timeouts.connect)
            .with_timeout(timeouts.request)
            .with_keep_alive(Duration::from_secs(10), timeouts.request);
        if let Some(tls) = tls {
            let mut t = TlsOptions::new()
                .ca_certificate(Certificate::from_pem(&tls.ca_pem))
                .identity(Identity::from_pem(&tls.cert_pem, &tls.key_pem));
            if let Some(name) = &tls.server_name {
                t = t.domain_name(name.clone());
            }
            options = options.with_tls(t);
        }
        let deadline = timeouts.connect + timeouts.request;
        let connect = Client::connect([endpoint.url.as_str()], Some(options));
        let client = match tokio::time::timeout(deadline, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(match e {
                    etcd_client::Error::InvalidArgs(detail)
                    | etcd_client::Error::EndpointError(detail) => {
                        EtcdError::BadTls { member: endpoint.name.clone(), detail }
                    }
                    other => classify(&endpoint.name, &endpoint.url, "connect", other),
                });
            }
            Err(_) => return Err(timeout_error(endpoint, "connect", deadline)),
        };
        Ok(EtcdClient { endpoint: endpoint.clone(), timeouts, client })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Runs one request with the request timeout, mapping errors to this member.
    async fn call<T, F>(&self, operation: &str, request: F) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        let limit = self.timeouts.request + self.timeouts.connect;
        match tokio::time::timeout(limit, request).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                Err(match classify(&self.endpoint.name, &self.endpoint.url, operation, e) {
                    EtcdError::Timeout { member, url, operation, .. } => {
                        EtcdError::Timeout { member, url, operation, seconds: limit.as_secs_f64() }
                    }
                    other => other,
                })
            }
            Err(_) => Err(timeout_error(&self.endpoint, operation, limit)),
        }
    }

    pub async fn member_list(&self) -> Result<Vec<MemberInfo>, EtcdError> {
        let mut c = self.client.clone();
        let resp = self.call("member list", c.member_list()).await?;
        Ok(resp.members().iter().map(member_info).collect())
    }

    /// Runs a membership change, retrying while etcd answers that it cannot reconfigure yet
    /// (see [`is_transient_reconfig`]) until [`Timeouts::reconfigure`] has passed.
    async fn reconfigure<T, F, Fut>(&self, operation: &str, mut request: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        let interval = Duration::from_millis(300);
        loop {
            match self.call(operation, request(self.client.clone())).await {
                Err(EtcdError::Refused { detail, .. }) if is_transient_reconfig(&detail) => {
                    if start.elapsed() + interval > self.timeouts.reconfigure {
                        return Err(EtcdError::ReconfigureTimedOut {
                            operation: operation.to_string(),
                            seconds: self.timeouts.reconfigure.as_secs_f64(),
                            detail,
                        });
                    }
                    tokio::time::sleep(interval).await;
                }
                other => return other,
            }
        }
    }

    /// `member add --learner`: returns the new member (not started, so without a name) and the
    /// member list etcd returned with it.
    pub async fn add_learner(
        &self,
        peer_urls: &[String],
    ) -> Result<(MemberInfo, Vec<MemberInfo>), EtcdError> {
        let urls = peer_urls.to_vec();
        let resp = self
            .reconfigure("member add --learner", |mut c| {
                let urls = urls.clone();
                async move { c.member_add(urls, Some(MemberAddOptions::new().with_is_learner())).await }
            })
            .await?;
        let members: Vec<MemberInfo> = resp.member_list().iter().map(member_info).collect();
        let added = resp.member().map(member_info).ok_or_else(|| EtcdError::Refused {
            member: self.endpoint.name.clone(),
            url: self.endpoint.url.clone(),
            operation: "member add --learner".into(),
            detail: "the response carried no member".into(),
        })?;
        Ok((added, members))
    }

    /// `member promote`, retried while etcd answers that the learner is not in sync yet.
    pub async fn promote(&self, id: u64) -> Result<(), EtcdError> {
        self.reconfigure("member promote", |mut c| async move { c.member_promote(id).await })
            .await
            .map(|_| ())
    }

    /// `member remove`; returns the remaining members.
    pub async fn remove(&self, id: u64) -> Result<Vec<MemberInfo>, EtcdError> {
        let resp = self
            .reconfigure("member remove", |mut c| async move { c.member_remove(id).await })
            .await?;
        Ok(resp.members().iter().map(member_info).collect())
    }

    /// `move-leader`: hands leadership to member `target`. etcd accepts it only from the
    /// current leader, so this client must be connected to the leader's endpoint.
    pub async fn move_leader(&self, target: u64) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        self.call("move-leader", c.move_leader(target)).await.map(|_| ())
    }

    /// The member's own status (version, leader, raft index, learner flag, errors).
    pub async fn status(&self) -> Result<MemberStatus, EtcdError> {
        let mut c = self.client.clone();
        let s = self.call("status", c.status()).await?;
        Ok(MemberStatus {
            member_id: s.header().map(|h| h.member_id()).unwrap_or_default(),
            version: s.version().to_string(),
            leader: s.leader(),
            raft_index: s.raft_index(),
            raft_term: s.raft_term(),
            is_learner: s.is_learner(),
            db_size: s.db_size(),
            errors: s.errors().to_vec(),
        })
    }

    /// A linearizable read of one key (goes through the leader: proves the member is part of a
    /// working quorum). Returns the value if the key exists.
    pub async fn linearizable_get(&self, key: &str) -> Result<Option<Vec<u8>>, EtcdError> {
        let mut c = self.client.clone();
        let resp = self.call("linearizable read", c.get(key, Some(GetOptions::new()))).await?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), EtcdError> {
        let mut c = self.client.clone();
        self.call("put", c.put(key, value, None)).await.map(|_| ())
    }

    /// The keyspace as this member serves it: revision, number of live keys (a count-only range
    /// over every key: etcd counts its in-memory index, no values are read) and the cluster
    /// and member ids from the response header.
    pub async fn keyspace(&self) -> Result<Keyspace, EtcdError> {
        let mut c = self.client.clone();
        let options = GetOptions::new().with_from_key().with_count_only().with_serializable();
        let resp = self.call("key count", c.get("\0", Some(options))).await?;
        let header = resp.header();
        Ok(Keyspace {
            revision: header.map(|h| h.revision()).unwrap_or_default(),
            key_count: u64::try_from(resp.count()).unwrap_or_default(),
            cluster_id: header.map(|h| h.cluster_id()).unwrap_or_default(),
            member_id: header.map(|h| h.member_id()).unwrap_or_default(),
        })
    }

    /// Starts a snapshot stream from this member (the maintenance `Snapshot` RPC). Each chunk
    /// must arrive within `idle` (the stream as a whole has no time limit: a large database
    /// takes as long as it takes). The chunks are etcd's bbolt file followed by its 32-byte
    /// sha256; nothing here buffers more than one chunk.
    pub async fn snapshot(&self, idle: Duration) -> Result<SnapshotStream, EtcdError> {
        let mut c = self.client.clone();
        let inner = self.call("snapshot", c.snapshot()).await?;
        Ok(SnapshotStream { inner, endpoint: self.endpoint.clone(), idle, client: c })
    }

    /// The id of the member named `name` in this member's member list.
    pub async fn member_id(&self, name: &str) -> Result<u64, EtcdError> {
        self.member_list().await?.into_iter().find(|m| m.name == name).map(|m| m.id).ok_or_else(
            || EtcdError::NoSuchMember {
                member: self.endpoint.name.clone(),
                url: self.endpoint.url.clone(),
                name: name.to_string(),
            },
        )
    }
}

fn member_info(m: &etcd_client::Member) -> MemberInfo {
    MemberInfo {
        id: m.id(),
        name: m.name().to_string(),
        peer_urls: m.peer_urls().to_vec(),
        client_urls: m.client_urls().to_vec(),
        is_learner: m.is_learner(),
    }
}

/// etcd's answers that mean "not yet": a learner still catching up (3.4 and 3.5 wording), a
/// cluster whose members have not been connected long enough (`unhealthy cluster`, etcd's
/// strict reconfiguration check), or too few started members for the change.
fn is_transient_reconfig(detail: &str) -> bool {
    let d = detail.to_lowercase();
    [
        "in sync with leader",
        "not in sync",
        "unhealthy cluster",
        "not enough started members",
        "leader changed",
    ]
    .iter()
    .any(|w| d.contains(w))
}

fn timeout_error(endpoint: &Endpoint, operation: &str, limit: Duration) -> EtcdError {
    EtcdError::Timeout {
        member: endpoint.name.clone(),
        url: endpoint.url.clone(),
        operation: operation.to_string(),
        seconds: limit.as_secs_f64(),
    }
}
