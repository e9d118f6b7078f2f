//! kubeforge-tests holds cross-crate helpers for the integration tests under `tests/tests/`:
//! golden-file comparison, free ports, spawning real servers (sshd, etcd) and lab end-to-end
//! support. Nothing here ships.

pub mod etcd;
pub mod lab;
pub mod sshd;
