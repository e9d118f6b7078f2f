//! `peek_certificate` against real rustls servers on loopback: a plain server, one that
//! requires a client certificate (as etcd and the kubelet do), a server that speaks no TLS,
//! and a closed port.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use kubeforge_pki::{SeededSerials, Store};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::{PeekError, peek_certificate};

const SPEC: &str = "apiVersion: kubeforge.dev/v1alpha1
kind: Cluster
metadata: {name: peek}
spec:
  kubernetesVersion: v1.33.1
  hosts:
    - {name: cp1, address: 10.0.0.11, roles: [control-plane]}
";

/// A generated PKI for one control plane (seeded, so each seed gives other certificates).
pub(crate) fn pki(seed: u64) -> Store {
    let cluster = kubeforge_playbooks::spec::load_str(SPEC, "peek.yaml").unwrap();
    let req = kubeforge_playbooks::pki_inputs::pki_request(&cluster);
    let now = time::OffsetDateTime::from_unix_timestamp(1_790_000_000).unwrap();
    kubeforge_pki::generate(&req, &Store::new(), now, &mut SeededSerials::new(seed)).unwrap().store
}

/// A TLS server on a free loopback port presenting `cert`/`key` (PEM); with `client_ca`, it
/// requires a client certificate signed by it. Serves connections until the test ends.
pub(crate) fn serve_tls(cert: &[u8], key: &[u8], client_ca: Option<&[u8]>) -> SocketAddr {
    let chain = vec![CertificateDer::from_pem_slice(cert).unwrap()];
    let key = PrivateKeyDer::from_pem_slice(key).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(CertificateDer::from_pem_slice(ca).unwrap()).unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).build();
            builder.with_client_cert_verifier(verifier.unwrap())
        }
        None => builder.with_no_client_auth(),
    };
    let config = Arc::new(builder.with_single_cert(chain, key).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for socket in listener.incoming() {
            let Ok(mut socket) = socket else { return };
            let mut tls = ServerConnection::new(config.clone()).unwrap();
            while tls.is_handshaking() {
                if tls.complete_io(&mut socket).is_err() {
                    break;
                }
            }
        }
    });
    addr
}

const T: Duration = Duration::from_secs(5);

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem).unwrap().to_vec()
}

#[test]
fn reads_the_certificate_a_server_presents() {
    let store = pki(1);
    let cert = &store["nodes/cp1/apiserver.crt"];
    let addr = serve_tls(cert, &store["nodes/cp1/apiserver.key"], None);
    let named: SocketAddr = "10.0.0.11:6443".parse().unwrap();
    assert_eq!(peek_certificate(addr, named, T).unwrap(), der(cert));
}

#[test]
fn reads_it_from_a_server_that_requires_a_client_certificate() {
    let store = pki(2);
    let cert = &store["nodes/cp1/etcd/server.crt"];
    let ca = &store["etcd/ca.crt"];
    let addr = serve_tls(cert, &store["nodes/cp1/etcd/server.key"], Some(ca));
    assert_eq!(peek_certificate(addr, addr, T).unwrap(), der(cert));
}

#[test]
fn a_server_that_speaks_no_tls_is_a_handshake_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
        }
    });
    let err = peek_certificate(addr, addr, T).unwrap_err();
    assert!(matches!(err, PeekError::Handshake { .. }), "{err}");
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn a_closed_port_is_a_connect_error() {
    let addr = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let err = peek_certificate(addr, addr, T).unwrap_err();
    assert!(matches!(err, PeekError::Connect { .. }), "{err}");
}
