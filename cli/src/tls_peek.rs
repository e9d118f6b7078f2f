//! Reads the certificate a TLS server presents, without trusting it: the handshake's
//! signature checks run as usual, the chain is recorded instead of verified, and nothing is
//! sent after the handshake. Used to see which certificate a running process actually serves;
//! it must never be used to talk to a server.

use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme};

/// Why no certificate was read.
#[derive(Debug, thiserror::Error)]
pub enum PeekError {
    #[error("cannot connect to {address}: {source}")]
    Connect { address: SocketAddr, source: io::Error },
    #[error("TLS handshake with {address} failed before a certificate arrived: {detail}")]
    Handshake { address: SocketAddr, detail: String },
}

/// The end-entity certificate (DER) that `address` presents. `connect_to` is where the bytes
/// go (a local forward), `address` is what the server is (for SNI-less IP names and errors).
pub fn peek_certificate(
    connect_to: SocketAddr,
    address: SocketAddr,
    timeout: Duration,
) -> Result<Vec<u8>, PeekError> {
    let handshake = |detail: String| PeekError::Handshake { address, detail };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let recorder = Arc::new(Recorder {
        seen: Mutex::new(None),
        algorithms: provider.signature_verification_algorithms,
    });
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| handshake(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::IpAddress(address.ip().into());
    let mut tls =
        ClientConnection::new(Arc::new(config), name).map_err(|e| handshake(e.to_string()))?;
    let connect = |source| PeekError::Connect { address, source };
    let mut socket = TcpStream::connect_timeout(&connect_to, timeout).map_err(connect)?;
    socket.set_read_timeout(Some(timeout)).map_err(connect)?;
    socket.set_write_timeout(Some(timeout)).map_err(connect)?;
    let mut failure = None;
    while tls.is_handshaking() && recorder.taken().is_none() {
        if let Err(e) = tls.complete_io(&mut socket) {
            failure = Some(e.to_string());
            break;
        }
    }
    // A server that requires a client certificate may end the handshake once it sees we have
    // none; by then its own certificate has arrived, which is all this reads.
    recorder.taken().ok_or_else(|| handshake(failure.unwrap_or_else(|| "no certificate".into())))
}

/// Records the server's end-entity certificate and accepts it; signatures are still checked.
#[derive(Debug)]
struct Recorder {
    seen: Mutex<Option<Vec<u8>>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl Recorder {
    fn taken(&self) -> Option<Vec<u8>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(end_entity.to_vec());
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
pub(crate) mod tests;
