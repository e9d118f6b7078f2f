//! kubeforge-playbooks owns the cluster spec and everything decided from it: parsing and
//! validation, the validated model, the render tree of per-host files, facts parsing, the plan
//! and its phases. It is pure: no tokio, no russh, no terminal, no file system; the `cli` crate
//! feeds it bytes and facts and executes what it returns.

pub mod applied;
pub mod artifacts;
pub mod diff;
pub mod etcd_membership;
pub mod facts;
pub mod model;
pub mod node;
pub mod pki_inputs;
pub mod plan;
pub mod render;
pub mod rotation;
pub mod secrets;
pub mod spec;
pub mod validate;
pub mod versions;
