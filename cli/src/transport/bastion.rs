//! Bastion (ProxyJump) support: reaching a host through a `direct-tcpip` channel opened on an
//! SSH connection to a jump host. Owns nothing but the tunnel; host keys and authentication of
//! both hops are checked exactly as for a direct connection (by the caller, [`super::ssh`]).

use russh::ChannelStream;
use russh::client::Msg;

use super::TransportError;
use super::ssh::SshHandle;

/// A byte stream to `address:port` as seen from the jump host.
pub(crate) async fn tunnel(
    jump: &SshHandle,
    host: &str,
    address: &str,
    port: u16,
) -> Result<ChannelStream<Msg>, TransportError> {
    let channel = jump
        .channel_open_direct_tcpip(address, u32::from(port), "127.0.0.1", 0)
        .await
        .map_err(|e| TransportError::Ssh {
            host: host.to_string(),
            operation: format!("opening a tunnel to {address}:{port} through the bastion"),
            detail: e.to_string(),
        })?;
    Ok(channel.into_stream())
}
