//! kubeforge-tests holds cross-crate helpers for the integration tests under `tests/tests/`:
//! golden-file comparison, free ports and spawning real servers (sshd, etcd). Nothing here ships.

pub mod etcd;
pub mod sshd;
