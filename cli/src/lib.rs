//! kubeforge's I/O crate: the command line, the state dir, SSH transports, the lab and the
//! executor. It is the only crate that touches files, the network, processes or the terminal;
//! every decision about the cluster comes from `kubeforge-playbooks` as data.

pub mod applied_store;
pub mod artifacts;
pub mod backup;
pub mod cli;
pub mod commands;
pub mod context;
pub mod etcd;
pub mod exec;
pub mod gather;
pub mod lab;
pub mod observe;
pub mod secrets_store;
pub mod spec_file;
pub mod state;
pub mod tls_peek;
pub mod transport;
