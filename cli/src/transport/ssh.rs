//! The SSH transport on russh: connect (timeout, keepalives, host key check, auth, bastion),
//! run commands with per-command timeouts and bounded channels, and move files.
