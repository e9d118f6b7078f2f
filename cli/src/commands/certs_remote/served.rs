//! The certificates the hosts' processes serve, read through an SSH forward to each endpoint
//! (`tls_peek`: recorded, never trusted) and compared with the certificate file the state dir
//! gives that host. Read-only: it completes at most a TLS handshake and sends nothing else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kubeforge_pki::Store;
use kubeforge_playbooks::render::RenderTree;
use kubeforge_playbooks::render::served::{ServedEndpoint, endpoint_url};
use time::OffsetDateTime;

use super::{OnHost, RemoteCert, ca_keys, expiry_of};
use crate::tls_peek::peek_certificate;
use crate::transport::{Transport, TransportError};

/// How long one connection or handshake may take.
const PEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads every endpoint's certificate, all hosts at once; results in `endpoints` order.
pub async fn inspect_served(
    endpoints: &[ServedEndpoint],
    tree: &RenderTree,
    transports: &BTreeMap<String, Arc<dyn Transport>>,
    unreachable: &BTreeMap<String, String>,
    state: &Store,
    now: OffsetDateTime,
) -> Vec<RemoteCert> {
    let ca_keys = Arc::new(ca_keys(state));
    let mut tasks = tokio::task::JoinSet::new();
    for (index, endpoint) in endpoints.iter().enumerate() {
        let Some(wanted) = tree.hosts.get(&endpoint.host).and_then(|f| f.get(&endpoint.cert_path))
        else {
            continue; // the state gives this host no such certificate: nothing to compare with
        };
        let (endpoint, wanted) = (endpoint.clone(), wanted.contents.clone());
        let transport = transports.get(&endpoint.host).cloned();
        let reason = unreachable.get(&endpoint.host).cloned();
        let ca_keys = ca_keys.clone();
        tasks.spawn(async move {
            let (on_host, expiry) = match transport {
                Some(t) => match served_der(t.as_ref(), &endpoint).await {
                    Ok(Some(der)) => {
                        let on_host = if Some(&der) == first_der(&wanted).as_ref() {
                            OnHost::Matches
                        } else {
                            OnHost::Differs
                        };
                        let pem = kubeforge_pki::pem_encode("CERTIFICATE", &der).into_bytes();
                        match expiry_of(&ca_keys, &endpoint.host, &endpoint.cert_path, pem, now) {
                            Ok(expiry) => (on_host, expiry),
                            Err(reason) => (OnHost::Unreadable(reason), None),
                        }
                    }
                    Ok(None) => (OnHost::NotServing, None),
                    Err(reason) => (OnHost::Unreadable(reason), None),
                },
                None => {
                    (OnHost::Unreadable(reason.unwrap_or_else(|| "not connected".into())), None)
                }
            };
            let cert = RemoteCert {
                host: endpoint.host.clone(),
                path: endpoint_url(endpoint.address),
                served_by: Some(endpoint.component),
                on_host,
                expiry,
            };
            (index, cert)
        });
    }
    let mut found = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(one) => found.push(one),
            Err(e) => tracing::error!("a served-certificate task failed: {e}"),
        }
    }
    found.sort_by_key(|(index, _)| *index);
    found.into_iter().map(|(_, cert)| cert).collect()
}

/// The served certificate (DER); `None` when nothing listens on the endpoint.
async fn served_der(
    transport: &dyn Transport,
    endpoint: &ServedEndpoint,
) -> Result<Option<Vec<u8>>, String> {
    let forward = match transport.forward_to(endpoint.address).await {
        Ok(forward) => forward,
        Err(TransportError::ForwardRefused { .. }) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let (local, address) = (forward.local_addr(), endpoint.address);
    let peeked =
        tokio::task::spawn_blocking(move || peek_certificate(local, address, PEEK_TIMEOUT)).await;
    drop(forward);
    match peeked {
        Ok(Ok(der)) => Ok(Some(der)),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(format!("reading the certificate stopped: {e}")),
    }
}

/// The first certificate of a PEM file, as DER.
fn first_der(pem: &[u8]) -> Option<Vec<u8>> {
    let blocks = kubeforge_pki::pem_blocks(pem).ok()?;
    blocks.into_iter().find(|(label, _)| label == "CERTIFICATE").map(|(_, der)| der)
}
