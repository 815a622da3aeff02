//! rustls and quinn configuration: TLS 1.3 only, ring provider, ALPN
//! `gossip/<protocol version>`, mutual TLS against the cluster CA, and the
//! verifiers that make a certificate a node (see [`crate::certs`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use gossip_core::proto::PROTOCOL_VERSION;
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, RootCertStore,
    SignatureScheme,
};

use crate::certs::{CertName, NodeIdentity, cert_name, cluster_label};
use crate::config::QuicConfig;
use crate::error::{CertError, QuicError};
use crate::metrics::Counters;

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

/// What both ends of every handshake require of the peer's certificate,
/// beyond a valid chain to the cluster CA: exactly one `gossip://` URI
/// naming a node of our cluster, not on the deny list. Shared by the
/// verifiers of every (re)built configuration, so the deny list and the
/// counters outlive a certificate reload.
pub(crate) struct Policy {
    cluster: String,
    deny: RwLock<HashSet<String>>,
    counters: Arc<Counters>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl Policy {
    pub(crate) fn new(config: &QuicConfig, counters: Arc<Counters>) -> Self {
        Policy {
            cluster: cluster_label(&config.cluster),
            deny: RwLock::new(config.deny.iter().cloned().collect()),
            counters,
        }
    }

    /// Adds `node` to the deny list: its handshakes are refused from now on.
    pub(crate) fn deny(&self, node: &str) {
        self.deny
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.to_owned());
    }

    pub(crate) fn is_denied(&self, node: &str) -> bool {
        self.deny
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(node)
    }

    /// The node `end_entity` names, if it may speak to us.
    fn check(&self, end_entity: &CertificateDer<'_>) -> Result<CertName, rustls::Error> {
        let refuse = |e: CertError| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
        };
        let name = match cert_name(end_entity) {
            Ok(name) => name,
            Err(e) => {
                Counters::inc(&self.counters.tls_no_node_name);
                return Err(refuse(e));
            }
        };
        if name.cluster != self.cluster {
            Counters::inc(&self.counters.tls_wrong_cluster);
            return Err(refuse(CertError::WrongCluster {
                expected: self.cluster.clone(),
                found: name.cluster,
            }));
        }
        if self.is_denied(&name.node) {
            Counters::inc(&self.counters.denied);
            return Err(refuse(CertError::WrongNode {
                expected: "a node not on the deny list".to_owned(),
                found: name.node,
            }));
        }
        Ok(name)
    }
}

/// The peer name of an established connection: the node its verified
/// certificate names. `None` without mutual TLS (or if quinn has no
/// certificate to show, which mutual TLS does not allow).
pub(crate) fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let any = conn.peer_identity()?;
    let chain = any.downcast_ref::<Vec<CertificateDer<'static>>>()?;
    cert_name(chain.first()?).ok().map(|n| n.node)
}

/// Checks the server's chain with webpki (CA, validity, usage, and the
/// cluster's DNS name as the SNI), then the [`Policy`].
#[derive(Debug)]
struct NodeServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    policy: Arc<Policy>,
}

impl ServerCertVerifier for NodeServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        self.policy.check(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Checks the client's chain with webpki (CA, validity, usage; a client
/// certificate is mandatory), then the [`Policy`].
#[derive(Debug)]
struct NodeClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    policy: Arc<Policy>,
}

impl ClientCertVerifier for NodeClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        self.policy.check(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// quinn's server and client configurations: mutual TLS with `identity`
/// (checked against `policy`), or the insecure dev mode without one.
pub(crate) fn quinn_configs(
    config: &QuicConfig,
    identity: Option<&NodeIdentity>,
    policy: &Arc<Policy>,
) -> Result<(quinn::ServerConfig, quinn::ClientConfig), QuicError> {
    let provider = provider();
    let versions = [&rustls::version::TLS13];
    let (mut server, mut client) = match identity {
        Some(identity) => {
            let mut roots = RootCertStore::empty();
            for ca in &identity.ca {
                roots.add(ca.clone())?;
            }
            let roots = Arc::new(roots);
            let client_verifier = Arc::new(NodeClientVerifier {
                inner: WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                    .build()?,
                policy: policy.clone(),
            });
            let server_verifier = Arc::new(NodeServerVerifier {
                inner: WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()?,
                policy: policy.clone(),
            });
            let server = rustls::ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&versions)?
                .with_client_cert_verifier(client_verifier)
                .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
            let client = rustls::ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(&versions)?
                .dangerous()
                .with_custom_certificate_verifier(server_verifier)
                .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())?;
            (server, client)
        }
        None => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::ClusterCa;

    fn check(policy: &Policy, id: &NodeIdentity) -> Result<CertName, rustls::Error> {
        policy.check(&id.chain[0])
    }

    #[test]
    fn policy_requires_our_cluster_and_no_denied_node() -> Result<(), Box<dyn std::error::Error>> {
        let ca = ClusterCa::generate("prod")?;
        let a = NodeIdentity::issue(&ca, "a")?;
        let config = QuicConfig::new("127.0.0.1:0".parse()?, "prod", a.clone()).with_denied("bad");
        let counters = Arc::new(Counters::default());
        let policy = Policy::new(&config, counters.clone());
        assert_eq!(check(&policy, &a)?.node, "a");

        // Same CA key, another cluster: refused by the URI.
        let staging = ClusterCa::from_pem("staging", ca.cert_pem(), ca.key_pem())?;
        assert!(check(&policy, &NodeIdentity::issue(&staging, "x")?).is_err());
        assert_eq!(counters.snapshot().tls_wrong_cluster, 1);

        // Denied, statically and at run time.
        assert!(check(&policy, &NodeIdentity::issue(&ca, "bad")?).is_err());
        policy.deny("a");
        assert!(check(&policy, &a).is_err());
        assert_eq!(counters.snapshot().denied, 2);

        // A certificate of our CA without a node name (the CA's own).
        assert!(policy.check(&a.ca[0]).is_err());
        assert_eq!(counters.snapshot().tls_no_node_name, 1);
        Ok(())
    }
}
