//! Local port forwarding over SSH: a loopback listener whose connections are tunnelled through
//! `direct-tcpip` channels to the host's `127.0.0.1:PORT`. Owns the listener task and its
//! lifetime; it never listens on anything but 127.0.0.1.

use tokio::task::JoinHandle;

/// Aborts a background task when dropped (ties a forward's listener to its [`super::LocalForward`]).
#[derive(Debug)]
pub struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
