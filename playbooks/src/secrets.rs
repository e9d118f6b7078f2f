//! Cluster secrets that are not PKI: the key that encrypts Secrets at rest in etcd and the VRRP
//! password keepalived instances share. They are generated once by the caller (`generate`, with
//! the randomness injected so tests are deterministic), kept in the state dir as JSON (the serde
//! form below) and fed back into rendering. This module never touches disk or an RNG itself, and
//! its `Debug` output never shows secret bytes.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes of an AES-256 key for the apiserver's `aescbc`/`aesgcm` providers.
pub const ENCRYPTION_KEY_LEN: usize = 32;
/// keepalived's `auth_type PASS` uses at most 8 characters; longer passwords are truncated.
pub const VRRP_PASSWORD_LEN: usize = 8;
/// Version of the on-disk form; bumped when fields change incompatibly.
pub const FORMAT_VERSION: u32 = 1;

const PASSWORD_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Secret material rendered into node files.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterSecrets {
    /// Always [`FORMAT_VERSION`] when written by this build.
    pub version: u32,
    /// Keys for Secrets at rest, newest first: the first encrypts, all decrypt (rotation adds one
    /// in front and keeps the old ones until every Secret is rewritten).
    pub encryption_keys: Vec<EncryptionKey>,
    /// keepalived's VRRP `auth_pass`, [`VRRP_PASSWORD_LEN`] alphanumerics.
    pub vrrp_password: String,
}

/// One named AES-256 key of the apiserver's EncryptionConfiguration.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionKey {
    /// The provider key name (`keys[].name`), stable for the key's lifetime.
    pub name: String,
    /// The raw key; serialized as base64, as EncryptionConfiguration expects it.
    #[serde(serialize_with = "ser_key", deserialize_with = "de_key")]
    pub secret: [u8; ENCRYPTION_KEY_LEN],
}

impl EncryptionKey {
    /// The key as the `secret:` field of an EncryptionConfiguration wants it.
    pub fn secret_base64(&self) -> String {
        BASE64.encode(self.secret)
    }
}

impl ClusterSecrets {
    /// Fresh secrets from `fill_random`, which must fill its buffer with cryptographically secure
    /// random bytes (the OS RNG in production, a fixed stream in tests).
    pub fn generate<E>(mut fill_random: impl FnMut(&mut [u8]) -> Result<(), E>) -> Result<Self, E> {
        let mut secret = [0u8; ENCRYPTION_KEY_LEN];
        fill_random(&mut secret)?;
        let mut vrrp_password = String::with_capacity(VRRP_PASSWORD_LEN);
        // Rejection sampling keeps every character equally likely (256 is not a multiple of 62).
        let limit = 256 - 256 % PASSWORD_ALPHABET.len();
        while vrrp_password.len() < VRRP_PASSWORD_LEN {
            let mut byte = [0u8; 1];
            fill_random(&mut byte)?;
            if usize::from(byte[0]) < limit {
                let index = usize::from(byte[0]) % PASSWORD_ALPHABET.len();
                vrrp_password.push(char::from(PASSWORD_ALPHABET[index]));
            }
        }
        Ok(ClusterSecrets {
            version: FORMAT_VERSION,
            encryption_keys: vec![EncryptionKey { name: "key1".to_string(), secret }],
            vrrp_password,
        })
    }

    /// The key new Secrets are encrypted with.
    pub fn active_encryption_key(&self) -> Option<&EncryptionKey> {
        self.encryption_keys.first()
    }

    /// Checks what serde cannot: a supported version, at least one key, unique key names, a
    /// password keepalived accepts unchanged.
    pub fn check(&self) -> Result<(), SecretsError> {
        if self.version != FORMAT_VERSION {
            return Err(SecretsError::Version(self.version));
        }
        if self.encryption_keys.is_empty() {
            return Err(SecretsError::NoEncryptionKey);
        }
        let mut names = std::collections::BTreeSet::new();
        for key in &self.encryption_keys {
            let valid = !key.name.is_empty()
                && key.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid || !names.insert(key.name.as_str()) {
                return Err(SecretsError::KeyName(key.name.clone()));
            }
        }
        let password_ok = !self.vrrp_password.is_empty()
            && self.vrrp_password.len() <= VRRP_PASSWORD_LEN
            && self.vrrp_password.bytes().all(|b| b.is_ascii_alphanumeric());
        if !password_ok {
            return Err(SecretsError::VrrpPassword);
        }
        Ok(())
    }
}

/// Why stored secrets cannot be used (the message never contains secret bytes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file format version {0} is not supported by this kubeforge (expected 1)")]
    Version(u32),
    #[error("secrets file holds no encryption key")]
    NoEncryptionKey,
    #[error("encryption key name {0:?} is empty, repeated or not [A-Za-z0-9_-]")]
    KeyName(String),
    #[error("VRRP password must be 1 to 8 ASCII letters or digits")]
    VrrpPassword,
}

impl fmt::Debug for ClusterSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterSecrets")
            .field("version", &self.version)
            .field("encryption_keys", &self.encryption_keys)
            .field("vrrp_password", &"<redacted>")
            .finish()
    }
}

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("name", &self.name)
            .field("secret", &"<redacted>")
            .finish()
    }
}

fn ser_key<S: Serializer>(key: &[u8; ENCRYPTION_KEY_LEN], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&BASE64.encode(key))
}

fn de_key<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; ENCRYPTION_KEY_LEN], D::Error> {
    let text = String::deserialize(d)?;
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| serde::de::Error::custom("encryption key is not valid base64"))?;
    <[u8; ENCRYPTION_KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!(
            "encryption key must be {ENCRYPTION_KEY_LEN} bytes, found {}",
            bytes.len()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter stream: deterministic, and it walks every byte value so rejection is exercised.
    fn counter(start: u8) -> impl FnMut(&mut [u8]) -> Result<(), std::convert::Infallible> {
        let mut next = start;
        move |buf| {
            for b in buf {
                *b = next;
                next = next.wrapping_add(1);
            }
            Ok(())
        }
    }

    #[test]
    fn generate_uses_the_injected_bytes() {
        let s = ClusterSecrets::generate(counter(0)).unwrap();
        let expected: Vec<u8> = (0u8..32).collect();
        assert_eq!(s.encryption_keys[0].secret.as_slice(), expected.as_slice());
        // Bytes 32.. map onto the alphabet: 32 % 62 = 32 → 'g', 33 → 'h', ...
        assert_eq!(s.vrrp_password, "ghijklmn");
        s.check().unwrap();
    }

    #[test]
    fn password_rejects_biased_bytes() {
        // 248..=255 are rejected (248 = 4 * 62), so the password starts at the wrapped 0 → 'A'.
        let s = ClusterSecrets::generate(counter(216)).unwrap();
        assert_eq!(s.vrrp_password, "ABCDEFGH");
    }

    #[test]
    fn rng_errors_propagate() {
        let err = ClusterSecrets::generate(|_| Err("no entropy")).unwrap_err();
        assert_eq!(err, "no entropy");
    }

    #[test]
    fn serde_round_trip_and_redacted_debug() {
        let s = ClusterSecrets::generate(counter(7)).unwrap();
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains("\"encryptionKeys\""), "{json}");
        assert!(json.contains(&s.encryption_keys[0].secret_base64()));
        let back: ClusterSecrets = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let debug = format!("{s:?}");
        assert!(!debug.contains(&s.vrrp_password), "{debug}");
        assert!(!debug.contains(&s.encryption_keys[0].secret_base64()), "{debug}");
    }

    #[test]
    fn short_key_and_bad_password_are_refused() {
        let short =
            r#"{"version":1,"encryptionKeys":[{"name":"k","secret":"AAAA"}],"vrrpPassword":"abc"}"#;
        let err = serde_json::from_str::<ClusterSecrets>(short).unwrap_err().to_string();
        assert!(err.contains("32 bytes, found 3"), "{err}");
        let mut s = ClusterSecrets::generate(counter(0)).unwrap();
        s.vrrp_password = "has space".into();
        assert_eq!(s.check(), Err(SecretsError::VrrpPassword));
        s.vrrp_password = "ok".into();
        s.encryption_keys.push(s.encryption_keys[0].clone());
        assert_eq!(s.check(), Err(SecretsError::KeyName("key1".into())));
    }
}
