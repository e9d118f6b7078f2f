//! etcd operations over mutual TLS with etcd-client: connect with timeouts, member list, add as
//! learner, promote (retried while the learner catches up), remove, status, and the health gate
//! [`wait_healthy`]. Endpoints are plain URLs (`https://127.0.0.1:<port>` when the SSH transport
//! forwards a member's loopback); certificates come in as PEM bytes. This module decides
//! nothing about membership: `kubeforge_playbooks::etcd_membership` plans the steps.
//!
//! Errors name the member and endpoint. A client certificate the server rejects shows up in
//! etcd-client as an opaque `transport error … broken pipe` on the first RPC; it is reported as
//! [`EtcdError::TlsRejected`] with what to check.

mod client;
mod error;
mod health;

pub use client::{EtcdClient, Keyspace, MemberInfo, MemberStatus, SnapshotStream};
pub use error::{EtcdError, FailureKind};
pub use health::{HealthGateError, HealthReport, MemberHealth, MemberState, probe, wait_healthy};

use std::fmt;
use std::time::Duration;

/// Client credentials for etcd: the etcd CA, and a client certificate and key it signed.
#[derive(Clone)]
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    /// Secret: never printed (see the `Debug` impl).
    pub key_pem: Vec<u8>,
    /// The name to verify the server certificate against when it differs from the endpoint's
    /// host (e.g. a tunnel to `127.0.0.1` to a certificate without that IP).
    pub server_name: Option<String>,
}

impl EtcdTls {
    /// Reads the PEM files a plan names (the state dir's etcd CA and a client certificate and
    /// key). The error names the file that could not be read.
    pub fn from_files(
        files: &kubeforge_playbooks::plan::EtcdClientFiles,
    ) -> Result<EtcdTls, String> {
        let read = |p: &str| std::fs::read(p).map_err(|e| format!("cannot read {p}: {e}"));
        Ok(EtcdTls {
            ca_pem: read(&files.ca)?,
            cert_pem: read(&files.cert)?,
            key_pem: read(&files.key)?,
            server_name: None,
        })
    }
}

impl fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdTls")
            .field("ca_pem", &format_args!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format_args!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// One member's client endpoint and the name messages use for it (its host name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub url: String,
}

impl Endpoint {
    pub fn new(name: impl Into<String>, url: impl Into<String>) -> Self {
        Endpoint { name: name.into(), url: url.into() }
    }
}

/// Time limits for talking to etcd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP + TLS connection setup.
    pub connect: Duration,
    /// Each request.
    pub request: Duration,
    /// How long membership changes (add, promote, remove) keep retrying while etcd answers
    /// that it cannot reconfigure yet (a just-started member, a learner catching up).
    pub reconfigure: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(5),
            reconfigure: Duration::from_secs(60),
        }
    }
}
