//! kubeforge-tests holds cross-crate helpers for the integration tests under `tests/tests/`:
//! golden-file comparison, free ports, spawning real servers (sshd, etcd), lab end-to-end
//! support, and the one rule for a missing prerequisite ([`require`]). Nothing here ships.

pub mod etcd;
pub mod lab;
pub mod require;
pub mod sshd;

pub use require::{bless, require, require_tool};
