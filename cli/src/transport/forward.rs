//! Local port forwarding over SSH: a loopback listener whose connections are tunnelled through
//! `direct-tcpip` channels to an address as the host reaches it (its `127.0.0.1:PORT`, or its
//! own address). Owns the listener task and its lifetime; it never listens on anything but
//! 127.0.0.1.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::ssh::SshHandle;
use super::{LocalForward, TransportError};

/// Buffer of each direction of a tunnel: an SSH data packet (up to 32 KiB) or more per read,
/// where tokio's default of 8 KiB split each into four reads and writes.
const COPY_BUFFER: usize = 64 * 1024;

/// Aborts a background task when dropped (ties a forward's listener to its [`LocalForward`]).
#[derive(Debug)]
pub struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts forwarding; fails early (with the host's answer) when nothing listens on the port.
pub(crate) async fn start(
    host: String,
    handle: Arc<SshHandle>,
    remote: SocketAddr,
) -> Result<LocalForward, TransportError> {
    let op = format!("forwarding to {remote}");
    let (remote_host, remote_port) = (remote.ip().to_string(), u32::from(remote.port()));
    // Probe once so a closed port is reported now rather than as a reset connection later.
    let probe =
        handle.channel_open_direct_tcpip(remote_host.as_str(), remote_port, "127.0.0.1", 0).await;
    match probe {
        Ok(ch) => drop(ch.into_stream()),
        Err(russh::Error::ChannelOpenFailure(russh::ChannelOpenFailure::ConnectFailed)) => {
            return Err(TransportError::ForwardRefused { host, target: remote });
        }
        Err(e) => return Err(TransportError::Ssh { host, operation: op, detail: e.to_string() }),
    }
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.map_err(|source| {
        TransportError::Io { host: host.clone(), operation: op.clone(), source }
    })?;
    let local_addr = listener.local_addr().map_err(|source| TransportError::Io {
        host: host.clone(),
        operation: op.clone(),
        source,
    })?;
    let task = tokio::spawn(async move {
        // Each tunnel task is tied to this one: aborting the listener aborts them all.
        let mut tunnels = tokio::task::JoinSet::new();
        loop {
            let Ok((mut socket, peer)) = listener.accept().await else { continue };
            let handle = handle.clone();
            let host = host.clone();
            let remote_host = remote_host.clone();
            tunnels.spawn(async move {
                let channel = handle
                    .channel_open_direct_tcpip(
                        remote_host.as_str(),
                        remote_port,
                        "127.0.0.1",
                        u32::from(peer.port()),
                    )
                    .await;
                match channel {
                    Ok(ch) => {
                        let mut stream = ch.into_stream();
                        let _ = tokio::io::copy_bidirectional_with_sizes(
                            &mut socket,
                            &mut stream,
                            COPY_BUFFER,
                            COPY_BUFFER,
                        )
                        .await;
                    }
                    Err(e) => {
                        tracing::warn!(host, "forward to {remote} failed: {e}")
                    }
                }
            });
            while tunnels.try_join_next().is_some() {}
        }
    });
    Ok(LocalForward::new(local_addr, Some(AbortOnDrop(task))))
}
