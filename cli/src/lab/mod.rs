//! The lab: real local machines (systemd-nspawn containers booting systemd and sshd) to try
//! kubeforge on and to run end-to-end tests against. It owns the lab image and artifact cache,
//! the machines, their network and the spec it writes for them; it never touches hosts other
//! than its own machines, and it never decides anything about the cluster (the spec does).
//!
//! Pure decisions (names, addresses, subnet choice, texts, argv) live in `layout`, `net`,
//! `spec`, `ssh` and `machine` and are unit-tested; `up`, `down`, `power` and `status` run them.

pub mod artifacts;
pub mod down;
pub mod error;
pub mod image;
pub mod layout;
pub mod machine;
pub mod net;
pub mod power;
pub mod spec;
pub mod ssh;
pub mod state;
pub mod status;
pub mod sys;
pub mod up;

pub use error::LabError;
