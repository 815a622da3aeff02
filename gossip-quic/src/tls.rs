//! rustls and quinn configuration: TLS 1.3 only, ring provider, ALPN
//! `gossip/<protocol version>`, mutual TLS against the cluster CA.

use std::sync::Arc;

use gossip_core::proto::PROTOCOL_VERSION;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config::{QuicConfig, Security};
use crate::error::QuicError;

/// The ALPN protocol id both ends must speak: `gossip/<PROTOCOL_VERSION>`.
/// A node of another protocol version fails the handshake instead of
/// sending messages the other cannot decode.
pub fn alpn() -> Vec<u8> {
    format!("gossip/{PROTOCOL_VERSION}").into_bytes()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The quinn transport parameters shared by both roles.
fn transport(config: &QuicConfig) -> Result<Arc<TransportConfig>, QuicError> {
    let mut t = TransportConfig::default();
    let idle = IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| QuicError::Config("idle_timeout too large"))?;
    t.max_idle_timeout(Some(idle));
    t.keep_alive_interval(Some(config.keep_alive));
    t.max_concurrent_bidi_streams(VarInt::from_u32(0));
    t.max_concurrent_uni_streams(VarInt::from_u32(config.max_concurrent_streams));
    // Messages go on streams; datagrams have no flow control.
    t.datagram_receive_buffer_size(None);
    Ok(Arc::new(t))
}

/// quinn's server and client configurations for `config`.
pub(crate) fn quinn_configs(
    config: &QuicConfig,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
    let provider = provider();
    let versions = [&rustls::version::TLS13];
    let (mut server, mut client) = match &config.security {
        Security::MutualTls(identity) => {
            let mut roots = RootCertStore::empty();
            roots.add(identity.ca.clone())?;
            let roots = Arc::new(roots);
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()?;
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_client_cert_verifier(verifier)
                .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&versions)?
                .with_root_certificates(roots)
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
            (server, client)
        }
        Security::InsecureDevModeNoAuthentication => {
            let cert = rcgen::generate_simple_self_signed(vec![config.server_name.clone()])
                .map_err(|e| QuicError::Cert(e.into()))?;
            let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_no_client_auth()
                .with_single_cert(vec![cert.cert.der().clone()], key)?;
            let algorithms = provider.signature_verification_algorithms;
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert { algorithms }))
                .with_no_client_auth();
            (server, client)
        }
    };
    server.alpn_protocols = vec![alpn()];
    client.alpn_protocols = vec![alpn()];
    let transport = transport(config)?;
    let server =
        QuicServerConfig::try_from(server).map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(server));
    server.transport_config(transport.clone());
    // Peers are identified by address; a migrating peer would look new.
    server.migration(false);
    let client =
        QuicClientConfig::try_from(client).map_err(|e| QuicError::Crypto(e.to_string()))?;
    let mut client = quinn::ClientConfig::new(Arc::new(client));
    client.transport_config(transport);
    Ok((server, client))
}

/// Insecure development mode only: accepts any server certificate, but
/// still checks the handshake signature (so the session is at least bound
/// to the key the certificate names).
#[derive(Debug)]
struct AcceptAnyServerCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
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
