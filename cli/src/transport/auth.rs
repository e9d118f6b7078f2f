//! SSH client authentication: ssh-agent (`SSH_AUTH_SOCK`) and private key files (ed25519, ECDSA,
//! RSA with the best hash the server supports). Owns key loading; never logs key material, and
//! never asks for a passphrase (an encrypted key must be loaded into ssh-agent).
//!
//! Order, as OpenSSH does it: with an `identityFile`, the agent's copy of that key (if the agent
//! holds it) and then the file; without one, every agent key, then `~/.ssh/id_ed25519`,
//! `id_ecdsa`, `id_rsa` where they exist.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};

use super::TransportError;
use super::known_hosts::fingerprint;

/// Where keys come from besides an explicit identity file.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeySources<'a> {
    /// ssh-agent's socket (`SSH_AUTH_SOCK`).
    pub agent_socket: Option<&'a Path>,
    /// The directory holding `id_ed25519`, `id_ecdsa`, `id_rsa` (`~/.ssh`).
    pub default_key_dir: Option<&'a Path>,
}

/// Authenticates `user` on a connected handle, or says what was tried.
pub async fn authenticate<H: russh::client::Handler>(
    handle: &mut Handle<H>,
    host: &str,
    user: &str,
    identity_file: Option<&Path>,
    sources: &KeySources<'_>,
) -> Result<(), TransportError> {
    let ssh_err = |operation: &str, e: russh::Error| TransportError::Ssh {
        host: host.to_string(),
        operation: operation.to_string(),
        detail: e.to_string(),
    };
    let rsa_hash = handle
        .best_supported_rsa_hash()
        .await
        .map_err(|e| ssh_err("asking for RSA hash support", e))?
        .flatten();
    let mut tried: Vec<String> = Vec::new();

    if let Some(path) = identity_file.filter(|p| super::home::is_unexpanded(p)) {
        // Reading `./~/…` instead would fail later with a misleading message.
        return Err(TransportError::Key {
            file: path.to_path_buf(),
            detail: "the path starts with `~`, which was not expanded; kubeforge expands the \
                     spec's `~/` from HOME, so set HOME or write an absolute path"
                .into(),
        });
    }
    let wanted_public = match identity_file {
        Some(path) => public_key_of(path),
        None => None,
    };
    // ssh-agent first (absent or unreachable agent: silently skipped, like ssh).
    let agent = match sources.agent_socket {
        Some(sock) => AgentClient::connect_uds(sock).await.ok(),
        None => None,
    };
    if let Some(mut agent) = agent {
        let identities = agent.request_identities().await.unwrap_or_default();
        for identity in identities {
            let AgentIdentity::PublicKey { key, comment } = identity else { continue };
            if identity_file.is_some()
                && wanted_public.as_ref().is_none_or(|w| w.key_data() != key.key_data())
            {
                continue;
            }
            let hash = if key.algorithm().is_rsa() { rsa_hash } else { None };
            tried.push(format!("agent key {} {}", fingerprint(&key), comment));
            match handle.authenticate_publickey_with(user, key, hash, &mut agent).await {
                Ok(result) if result.success() => return Ok(()),
                Ok(_) => {}
                Err(e) => tracing::debug!(host, "agent signing failed: {e}"),
            }
        }
    }

    let files: Vec<PathBuf> = match identity_file {
        Some(path) => vec![path.to_path_buf()],
        None => sources
            .default_key_dir
            .map(|dir| ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|n| dir.join(n)).collect())
            .unwrap_or_default(),
    };
    let explicit = identity_file.is_some();
    for path in files {
        if !explicit && !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(&path, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                let e = TransportError::Key {
                    file: path.clone(),
                    detail: "it is encrypted; load it into ssh-agent (`ssh-add FILE`) so kubeforge can use it".into(),
                };
                if explicit {
                    return Err(e);
                }
                tried.push(format!("{} (encrypted, not in ssh-agent)", path.display()));
                continue;
            }
            Err(e) => {
                let e = TransportError::Key { file: path.clone(), detail: e.to_string() };
                if explicit {
                    return Err(e);
                }
                tried.push(format!("{} (unreadable)", path.display()));
                continue;
            }
        };
        tried.push(format!("key file {}", path.display()));
        let hash: Option<HashAlg> = if key.algorithm().is_rsa() { rsa_hash } else { None };
        let result = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
            .await
            .map_err(|e| ssh_err("public key authentication", e))?;
        if result.success() {
            return Ok(());
        }
    }

    Err(TransportError::Auth {
        host: host.to_string(),
        user: user.to_string(),
        tried: if tried.is_empty() {
            "no keys: no ssh-agent and no ~/.ssh/id_* files".into()
        } else {
            tried.join(", ")
        },
    })
}

/// `FILE.pub`, if present and readable (lets the agent's copy of an encrypted key be used).
fn public_key_of(private: &Path) -> Option<PublicKey> {
    let mut name = private.as_os_str().to_owned();
    name.push(".pub");
    PublicKey::read_openssh_file(Path::new(&name)).ok()
}
