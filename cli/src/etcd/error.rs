//! etcd errors, with etcd-client's opaque transport errors sorted into what an operator can act
//! on (TLS rejected, unreachable, timed out, refused by etcd).

use std::error::Error as _;

/// The broad class of a failure, for reports and retry decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The TLS handshake failed: a certificate was refused by either side.
    TlsRejected,
    /// Nothing answered (connection refused, reset, no route).
    Unreachable,
    /// No answer within the time limit.
    Timeout,
    /// etcd answered with an error.
    Refused,
}

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error(
        "etcd member {member} ({url}) rejected the TLS handshake: {detail}. Check that the client \
         certificate is signed by the etcd CA the member trusts (--trusted-ca-file), that the CA \
         given to kubeforge signed the member's server certificate, and that the certificate \
         names the endpoint"
    )]
    TlsRejected { member: String, url: String, detail: String },
    #[error("etcd member {member} ({url}) is unreachable: {detail}")]
    Unreachable { member: String, url: String, detail: String },
    #[error("etcd member {member} ({url}) did not answer {operation} within {seconds:.1} s")]
    Timeout { member: String, url: String, operation: String, seconds: f64 },
    #[error("etcd member {member} ({url}) refused {operation}: {detail}")]
    Refused { member: String, url: String, operation: String, detail: String },
    #[error("invalid TLS material for etcd member {member}: {detail}")]
    BadTls { member: String, detail: String },
    #[error("no etcd member named {name} in the member list of {member} ({url})")]
    NoSuchMember { member: String, url: String, name: String },
    #[error(
        "etcd did not allow {operation} within {seconds:.0} s (last answer: {detail}); check the \
         members' logs and peer connectivity, then apply again"
    )]
    ReconfigureTimedOut { operation: String, seconds: f64, detail: String },
}

impl EtcdError {
    pub fn kind(&self) -> FailureKind {
        match self {
            EtcdError::TlsRejected { .. } | EtcdError::BadTls { .. } => FailureKind::TlsRejected,
            EtcdError::Unreachable { .. } => FailureKind::Unreachable,
            EtcdError::Timeout { .. } | EtcdError::ReconfigureTimedOut { .. } => {
                FailureKind::Timeout
            }
            EtcdError::Refused { .. } | EtcdError::NoSuchMember { .. } => FailureKind::Refused,
        }
    }
}

/// The full chain of an error's messages, lower-cased, for classification.
fn chain(e: &etcd_client::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Sorts an etcd-client error for `member` at `url` during `operation`.
pub(crate) fn classify(
    member: &str,
    url: &str,
    operation: &str,
    e: etcd_client::Error,
) -> EtcdError {
    let detail = chain(&e);
    let lower = detail.to_lowercase();
    let (member, url) = (member.to_string(), url.to_string());
    // A refused client certificate: the server closes the connection after the handshake, and
    // the first request fails with a broken pipe or reset; certificate errors name themselves.
    let tls_words = [
        "certificate",
        "handshake",
        "unknownca",
        "unknown ca",
        "bad certificate",
        "tls",
        "broken pipe",
        "invalidcertificate",
        "alert",
    ];
    let unreachable_words =
        ["connection refused", "no route to host", "network is unreachable", "dns error"];
    if unreachable_words.iter().any(|w| lower.contains(w)) {
        return EtcdError::Unreachable { member, url, detail };
    }
    if lower.contains("timed out") || lower.contains("deadline") || lower.contains("timeout") {
        return EtcdError::Timeout { member, url, operation: operation.to_string(), seconds: 0.0 };
    }
    // With TLS 1.3 the client finishes its side of the handshake before the server checks the
    // client certificate; the refusal then arrives either as the server's alert (handled by
    // the TLS words below) or, racing with it, as the connection closing under the first
    // request, which tonic reports as a cancelled request.
    if let etcd_client::Error::GRpcStatus(status) = &e
        && i32::from(status.code()) == grpc_code::CANCELLED
        && lower.contains("connection closed")
    {
        return EtcdError::TlsRejected {
            member,
            url,
            detail: format!(
                "the member closed the connection right after the TLS handshake, as it does \
                 when it refuses the client certificate ({detail})"
            ),
        };
    }
    match &e {
        // etcd's own refusals ("etcdserver: unhealthy cluster", "... not in sync ...") come as
        // Unavailable too, but the member answered: they are refusals, not unreachability.
        etcd_client::Error::GRpcStatus(status) if status.message().starts_with("etcdserver:") => {
            EtcdError::Refused {
                member,
                url,
                operation: operation.to_string(),
                detail: status.message().to_string(),
            }
        }
        etcd_client::Error::GRpcStatus(status)
            if !matches!(i32::from(status.code()), grpc_code::UNAVAILABLE | grpc_code::UNKNOWN) =>
        {
            EtcdError::Refused {
                member,
                url,
                operation: operation.to_string(),
                detail: status.message().to_string(),
            }
        }
        _ if tls_words.iter().any(|w| lower.contains(w)) => {
            EtcdError::TlsRejected { member, url, detail }
        }
        etcd_client::Error::GRpcStatus(_) | etcd_client::Error::TransportError(_) => {
            EtcdError::Unreachable { member, url, detail }
        }
        _ => EtcdError::Refused { member, url, operation: operation.to_string(), detail },
    }
}

/// gRPC status codes (as numbers: tonic is not a direct dependency).
mod grpc_code {
    pub const CANCELLED: i32 = 1;
    pub const UNKNOWN: i32 = 2;
    pub const UNAVAILABLE: i32 = 14;
}
