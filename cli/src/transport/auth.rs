//! SSH client authentication: ssh-agent (`SSH_AUTH_SOCK`) and private key files (ed25519, ECDSA,
//! RSA with the best hash the server supports). Owns key loading; never logs key material.
