//! Kubeconfig files in the layout client-go's `clientcmd` writes (what kubeadm leaves in
//! `/etc/kubernetes/*.conf`): one cluster, one user with embedded client certificate and key,
//! one context `<user>@<cluster>` that is current. The reader understands exactly this layout.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// One kubeconfig's contents.
#[derive(Clone, PartialEq, Eq)]
pub struct Kubeconfig {
    pub cluster_name: String,
    pub server: String,
    /// The CA bundle (PEM) clients trust for the server.
    pub ca_pem: Vec<u8>,
    pub user: String,
    pub client_cert_pem: Vec<u8>,
    pub client_key_pem: Vec<u8>,
}

impl std::fmt::Debug for Kubeconfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kubeconfig")
            .field("cluster_name", &self.cluster_name)
            .field("server", &self.server)
            .field("user", &self.user)
            .field("client_key_pem", &"[redacted]")
            .finish_non_exhaustive()
    }
}

impl Kubeconfig {
    pub fn context_name(&self) -> String {
        format!("{}@{}", self.user, self.cluster_name)
    }

    /// The file bytes.
    pub fn render(&self) -> Vec<u8> {
        let ctx = self.context_name();
        format!(
            "apiVersion: v1\n\
             clusters:\n\
             - cluster:\n    certificate-authority-data: {ca}\n    server: {server}\n  name: {cluster}\n\
             contexts:\n\
             - context:\n    cluster: {cluster}\n    user: {user}\n  name: {ctx}\n\
             current-context: {ctx}\n\
             kind: Config\n\
             preferences: {{}}\n\
             users:\n\
             - name: {user}\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = STANDARD.encode(&self.ca_pem),
            server = self.server,
            cluster = self.cluster_name,
            user = self.user,
            cert = STANDARD.encode(&self.client_cert_pem),
            key = STANDARD.encode(&self.client_key_pem),
        )
        .into_bytes()
    }

    /// Reads a kubeconfig in the layout above (also kubeadm's). Errors name the missing field.
    pub fn parse(bytes: &[u8]) -> Result<Kubeconfig, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
        let mut section = "";
        let mut cluster_name = None;
        let mut user = None;
        let mut fields = std::collections::BTreeMap::new();
        for line in text.lines() {
            if !line.starts_with(' ') && !line.starts_with('-') {
                section = line.split(':').next().unwrap_or_default();
                continue;
            }
            let trimmed = line.trim_start_matches([' ', '-']);
            let Some((key, value)) = trimmed.split_once(':') else { continue };
            let value = value.trim().trim_matches('"').to_string();
            match (section, key) {
                ("clusters", "name") => cluster_name = Some(value),
                ("users", "name") => user = Some(value),
                ("clusters" | "users", _) => {
                    fields.insert(key.to_string(), value);
                }
                _ => {}
            }
        }
        let field = |k: &str| fields.get(k).cloned().ok_or_else(|| format!("no {k}"));
        let decode = |k: &str| -> Result<Vec<u8>, String> {
            STANDARD.decode(field(k)?).map_err(|e| format!("{k} is not base64: {e}"))
        };
        Ok(Kubeconfig {
            cluster_name: cluster_name.ok_or("no cluster name")?,
            server: field("server")?,
            ca_pem: decode("certificate-authority-data")?,
            user: user.ok_or("no user name")?,
            client_cert_pem: decode("client-certificate-data")?,
            client_key_pem: decode("client-key-data")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_parse_round_trip() {
        let k = Kubeconfig {
            cluster_name: "prod".into(),
            server: "https://10.0.0.5:6443".into(),
            ca_pem: b"CA".to_vec(),
            user: "system:node:w1".into(),
            client_cert_pem: b"CERT".to_vec(),
            client_key_pem: b"KEY".to_vec(),
        };
        let text = String::from_utf8(k.render()).unwrap();
        assert!(text.contains("current-context: system:node:w1@prod\n"), "{text}");
        assert_eq!(Kubeconfig::parse(text.as_bytes()).unwrap(), k);
        assert!(!format!("{k:?}").contains("KEY\""));
        let broken = text.replace("    server: https://10.0.0.5:6443\n", "");
        assert_eq!(Kubeconfig::parse(broken.as_bytes()).unwrap_err(), "no server");
    }
}
