//! The cluster's certificates: one CA per cluster, one certificate per node.
//!
//! Mutual TLS needs every node to hold a certificate signed by the cluster
//! CA; each side checks the other's chain against that CA alone (no
//! system roots), so a peer with no certificate or another CA's is refused.
//!
//! A certificate is a node: every node certificate carries two subject
//! alternative names,
//!
//! - the URI `gossip://<cluster label>/<node>` ([`node_uri`]): which node of
//!   which cluster holds it. Both ends of every handshake read it from the
//!   verified certificate and refuse a certificate without exactly one such
//!   URI, of another cluster (so one CA shared by two clusters does not
//!   merge them), or of a denied node; the transport hands the name to the
//!   core with every message, which refuses envelopes claiming another
//!   node;
//! - the DNS name [`server_name`]`(cluster)`, the SNI every dial presents
//!   (a dial goes to an address, not to a name the dialer knows, so the
//!   DNS name is the cluster's, and the node's name comes from the URI).
//!
//! Node certificates are valid for [`DEFAULT_NODE_VALIDITY`] (one year)
//! unless issued otherwise; an expired certificate fails the handshake.
//! Rotate by issuing a fresh one into the same directory and calling
//! [`QuicTransport::reload_identity`](crate::QuicTransport::reload_identity)
//! on the running node. `ca.pem` may hold several CA certificates (the old
//! and the new one during a CA rotation): all are trusted.
//!
//! On disk a cluster is a directory of PEM files:
//!
//! | file | what |
//! |---|---|
//! | `ca.pem` | the CA certificate (give it to every node) |
//! | `ca.key` | the CA private key (keep it away from nodes; needed only to issue more) |
//! | `NODE.pem` | node `NODE`'s certificate |
//! | `NODE.key` | node `NODE`'s private key (mode 0600) |
//!
//! ```no_run
//! # fn main() -> Result<(), gossip_quic::CertError> {
//! use gossip_quic::certs::{write_cluster, NodeIdentity};
//! // Once, by the operator: a CA and three node certificates.
//! write_cluster("certs".as_ref(), "prod", &["a", "b", "c"])?;
//! // On node `a`: its identity for `QuicConfig::new`.
//! let identity = NodeIdentity::load("certs".as_ref(), "a")?;
//! # let _ = identity; Ok(()) }
//! ```

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CertError;

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// How long a node certificate is valid unless issued otherwise: one year.
pub const DEFAULT_NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// How long a CA certificate is valid unless generated otherwise: ten years.
pub const DEFAULT_CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Scheme of the URI naming a node in its certificate.
const URI_SCHEME: &str = "gossip://";

/// The DNS name every node certificate of `cluster` carries, and the SNI
/// every dial presents: the cluster name made a DNS label, plus `.gossip`
/// (`"Prod EU"` → `"prod-eu.gossip"`).
pub fn server_name(cluster: &str) -> String {
    format!("{}.gossip", cluster_label(cluster))
}

/// The URI SAN naming node `node` of `cluster` in its certificate:
/// `gossip://<cluster label>/<node>` (`("Prod EU", "a")` →
/// `"gossip://prod-eu/a"`). Clusters whose names have the same label (see
/// [`server_name`]) are one cluster as far as certificates go.
pub fn node_uri(cluster: &str, node: &str) -> String {
    format!("{URI_SCHEME}{}/{node}", cluster_label(cluster))
}

/// The node a certificate names, as read from its [`node_uri`] SAN.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertName {
    /// The cluster label (the DNS form of the cluster name).
    pub cluster: String,
    /// The node name.
    pub node: String,
}

/// Reads the node a DER certificate names: exactly one `gossip://` URI SAN
/// with a valid node name. This does not verify the certificate (the TLS
/// verifier does that first); it only reads it.
pub fn cert_name(der: &[u8]) -> Result<CertName, CertError> {
    let bad = |why: &'static str| CertError::NoNodeName(why);
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| bad("unparsable certificate"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| bad("invalid subject alternative names"))?
        .ok_or(bad("no subject alternative name"))?;
    let mut found = None;
    for name in &san.value.general_names {
        if let x509_parser::extensions::GeneralName::URI(uri) = name {
            if let Some(rest) = uri.strip_prefix(URI_SCHEME) {
                if found.is_some() {
                    return Err(bad("more than one gossip uri"));
                }
                found = Some(rest);
            }
        }
    }
    let rest = found.ok_or(bad("no gossip uri"))?;
    let (cluster, node) = rest.split_once('/').ok_or(bad("malformed gossip uri"))?;
    if cluster.is_empty() || check_name(node).is_err() {
        return Err(bad("malformed gossip uri"));
    }
    Ok(CertName {
        cluster: cluster.to_owned(),
        node: node.to_owned(),
    })
}

/// The DNS label of a cluster name: lowercase ASCII alphanumerics and `-`.
pub(crate) fn cluster_label(cluster: &str) -> String {
    let mut label: String = cluster
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    label = label.trim_matches('-').to_owned();
    if label.is_empty() {
        label.push_str("cluster");
    }
    label
}

/// `[now, now + validity]` as rcgen dates (saturating far in the future).
fn window(validity: Duration) -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = SystemTime::now();
    let end = now
        .checked_add(validity)
        .unwrap_or(now + Duration::from_secs(100 * 365 * 24 * 3600));
    (now.into(), end.into())
}

/// A cluster's certificate authority: issues node certificates.
pub struct ClusterCa {
    cluster: String,
    cert_pem: String,
    key_pem: String,
}

impl fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterCa")
            .field("cluster", &self.cluster)
            .finish_non_exhaustive()
    }
}

impl ClusterCa {
    /// Creates a fresh CA (ECDSA P-256) for `cluster`, valid for
    /// [`DEFAULT_CA_VALIDITY`].
    pub fn generate(cluster: &str) -> Result<Self, CertError> {
        Self::generate_valid_for(cluster, DEFAULT_CA_VALIDITY)
    }

    /// Creates a fresh CA for `cluster`, valid from now for `validity`.
    pub fn generate_valid_for(cluster: &str, validity: Duration) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        (params.not_before, params.not_after) = window(validity);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("gossip cluster ca {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key)?;
        Ok(ClusterCa {
            cluster: cluster.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A CA from its PEM certificate and key (checked by parsing both).
    pub fn from_pem(cluster: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let key = KeyPair::from_pem(key_pem)?;
        Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(ClusterCa {
            cluster: cluster.to_owned(),
            cert_pem: cert_pem.to_owned(),
            key_pem: key_pem.to_owned(),
        })
    }

    /// Reads `ca.pem` and `ca.key` from `dir`.
    pub fn read(dir: &Path, cluster: &str) -> Result<Self, CertError> {
        let cert = read_string(&dir.join(CA_CERT_FILE))?;
        let key = read_string(&dir.join(CA_KEY_FILE))?;
        Self::from_pem(cluster, &cert, &key)
    }

    /// Writes `ca.pem` and `ca.key` (mode 0600) into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        create_dir(dir)?;
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, false)?;
        write_file(&dir.join(CA_KEY_FILE), &self.key_pem, true)
    }

    /// The cluster this CA serves.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key, PEM (PKCS#8).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for node `node`, valid for
    /// [`DEFAULT_NODE_VALIDITY`]: subject CN = the node name, SANs =
    /// [`node_uri`] and [`server_name`] of the cluster, usable for both TLS
    /// server and client authentication (every node both dials and accepts).
    pub fn issue(&self, node: &str) -> Result<NodeCert, CertError> {
        self.issue_valid_for(node, DEFAULT_NODE_VALIDITY)
    }

    /// As [`issue`](ClusterCa::issue), valid from now for `validity`.
    pub fn issue_valid_for(&self, node: &str, validity: Duration) -> Result<NodeCert, CertError> {
        let (from, until) = window(validity);
        self.issue_between(node, from.into(), until.into())
    }

    /// As [`issue`](ClusterCa::issue), valid from `not_before` to
    /// `not_after` (tests make expired and not-yet-valid certificates so).
    pub fn issue_between(
        &self,
        node: &str,
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<NodeCert, CertError> {
        check_name(node)?;
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![server_name(&self.cluster)])?;
        let uri = node_uri(&self.cluster, node)
            .try_into()
            .map_err(|_| CertError::BadName(node.to_owned()))?;
        params.subject_alt_names.push(SanType::URI(uri));
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.distinguished_name.push(DnType::CommonName, node);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &issuer)?;
        Ok(NodeCert {
            node: node.to_owned(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// One node's certificate and private key, PEM.
pub struct NodeCert {
    /// The node name (certificate CN, file stem).
    pub node: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// The private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeCert")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl NodeCert {
    /// Writes `NODE.pem` and `NODE.key` (mode 0600) into `dir`, creating it.
    pub fn write(&self, dir: &Path) -> Result<(), CertError> {
        check_name(&self.node)?;
        create_dir(dir)?;
        write_file(
            &dir.join(format!("{}.pem", self.node)),
            &self.cert_pem,
            false,
        )?;
        write_file(&dir.join(format!("{}.key", self.node)), &self.key_pem, true)
    }
}

/// Writes a cluster's certificates into `dir`: the CA (reused if `dir`
/// already holds `ca.pem` and `ca.key`, so nodes can be added later) and one
/// certificate per node, valid for [`DEFAULT_NODE_VALIDITY`]. Returns the CA.
pub fn write_cluster(dir: &Path, cluster: &str, nodes: &[&str]) -> Result<ClusterCa, CertError> {
    write_cluster_valid_for(dir, cluster, nodes, DEFAULT_NODE_VALIDITY)
}

/// As [`write_cluster`], with node certificates valid for `validity`.
/// Issuing a node again replaces its certificate and key (a rotation: the
/// running node picks them up with
/// [`QuicTransport::reload_identity`](crate::QuicTransport::reload_identity)).
pub fn write_cluster_valid_for(
    dir: &Path,
    cluster: &str,
    nodes: &[&str],
    validity: Duration,
) -> Result<ClusterCa, CertError> {
    for node in nodes {
        check_name(node)?;
    }
    let ca = if dir.join(CA_CERT_FILE).exists() && dir.join(CA_KEY_FILE).exists() {
        ClusterCa::read(dir, cluster)?
    } else {
        let ca = ClusterCa::generate(cluster)?;
        ca.write(dir)?;
        ca
    };
    for node in nodes {
        ca.issue_valid_for(node, validity)?.write(dir)?;
    }
    Ok(ca)
}

/// What a node presents and trusts: its certificate chain and key, and the
/// cluster CA it requires of peers. Give it to
/// [`QuicConfig::new`](crate::QuicConfig::new).
pub struct NodeIdentity {
    /// The CA certificates trusted (usually one; two during a CA rotation).
    pub(crate) ca: Vec<CertificateDer<'static>>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
    /// Who the certificate says this is.
    pub(crate) name: CertName,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            name: self.name.clone(),
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("name", &self.name)
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads node `node`'s identity from a certificate directory: `ca.pem`,
    /// `NODE.pem`, `NODE.key` (the CA key is not needed). The certificate
    /// must name `node` (its [`node_uri`] SAN).
    pub fn load(dir: &Path, node: &str) -> Result<Self, CertError> {
        check_name(node)?;
        let ca_path = dir.join(CA_CERT_FILE);
        let cert_path = dir.join(format!("{node}.pem"));
        let key_path = dir.join(format!("{node}.key"));
        let ca = certs(&ca_path, &read_string(&ca_path)?)?;
        let chain = certs(&cert_path, &read_string(&cert_path)?)?;
        let key = private_key(&key_path, &read_string(&key_path)?)?;
        let identity = Self::new(ca, chain, key)?;
        if identity.name.node != node {
            return Err(CertError::WrongNode {
                expected: node.to_owned(),
                found: identity.name.node,
            });
        }
        Ok(identity)
    }

    /// An identity from PEM text: the CA certificate(s), the node
    /// certificate (chain), the node private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let here = PathBuf::from("<memory>");
        Self::new(
            certs(&here, ca_pem)?,
            certs(&here, cert_pem)?,
            private_key(&here, key_pem)?,
        )
    }

    fn new(
        ca: Vec<CertificateDer<'static>>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, CertError> {
        let leaf = chain.first().ok_or(CertError::NoNodeName("empty chain"))?;
        let name = cert_name(leaf)?;
        Ok(NodeIdentity {
            ca,
            chain,
            key,
            name,
        })
    }

    /// The node name its certificate carries.
    pub fn node(&self) -> &str {
        &self.name.node
    }

    /// The cluster label its certificate carries (see [`server_name`]).
    pub fn cluster_label(&self) -> &str {
        &self.name.cluster
    }

    /// Issues a certificate for `node` from `ca` and returns the identity,
    /// without touching the disk (tests, embedded clusters).
    pub fn issue(ca: &ClusterCa, node: &str) -> Result<Self, CertError> {
        let cert = ca.issue(node)?;
        Self::from_pem(ca.cert_pem(), &cert.cert_pem, &cert.key_pem)
    }
}

fn certs(path: &Path, pem: &str) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| CertError::Io {
            path: path.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(CertError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

fn private_key(path: &Path, pem: &str) -> Result<PrivateKeyDer<'static>, CertError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|source| CertError::Io {
            path: path.to_owned(),
            source,
        })?
        .ok_or_else(|| CertError::Pem {
            path: path.to_owned(),
            what: "private key",
        })
}

pub(crate) fn check_name(node: &str) -> Result<(), CertError> {
    let ok = !node.is_empty()
        && node.len() <= 64
        && !node.starts_with('.')
        && node != "ca"
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(CertError::BadName(node.to_owned()))
    }
}

fn read_string(path: &Path) -> Result<String, CertError> {
    fs::read_to_string(path).map_err(|source| CertError::Io {
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    fs::create_dir_all(dir).map_err(|source| CertError::Io {
        path: dir.to_owned(),
        source,
    })
}

fn write_file(path: &Path, contents: &str, secret: bool) -> Result<(), CertError> {
    let io = |source| CertError::Io {
        path: path.to_owned(),
        source,
    };
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io)?;
    file.write_all(contents.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_name_is_a_dns_name() {
        assert_eq!(server_name("Prod EU"), "prod-eu.gossip");
        assert_eq!(server_name("--"), "cluster.gossip");
        assert!(rustls::pki_types::ServerName::try_from(server_name("a b_c")).is_ok());
    }

    #[test]
    fn issue_and_reload() -> Result<(), CertError> {
        let ca = ClusterCa::generate("t")?;
        let again = ClusterCa::from_pem("t", ca.cert_pem(), ca.key_pem())?;
        let id = NodeIdentity::issue(&again, "n1")?;
        assert_eq!(id.chain.len(), 1);
        assert_eq!((id.node(), id.cluster_label()), ("n1", "t"));
        assert!(matches!(ca.issue("../x"), Err(CertError::BadName(_))));
        Ok(())
    }

    #[test]
    fn certificates_name_their_node_and_cluster() -> Result<(), CertError> {
        assert_eq!(node_uri("Prod EU", "a"), "gossip://prod-eu/a");
        let ca = ClusterCa::generate("Prod EU")?;
        let id = NodeIdentity::issue(&ca, "web-1")?;
        assert_eq!(
            cert_name(&id.chain[0])?,
            CertName {
                cluster: "prod-eu".into(),
                node: "web-1".into()
            }
        );
        // The CA certificate names no node.
        assert!(matches!(
            cert_name(&id.ca[0]),
            Err(CertError::NoNodeName(_))
        ));
        assert!(matches!(cert_name(b"junk"), Err(CertError::NoNodeName(_))));
        Ok(())
    }

    #[test]
    fn validity_is_finite_and_configurable() -> Result<(), CertError> {
        let ca = ClusterCa::generate("t")?;
        let cert = ca.issue_valid_for("n", Duration::from_secs(3600))?;
        let id = NodeIdentity::from_pem(ca.cert_pem(), &cert.cert_pem, &cert.key_pem)?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&id.chain[0])
            .map_err(|_| CertError::NoNodeName("parse"))?;
        let v = parsed.validity();
        let secs = v.not_after.timestamp() - v.not_before.timestamp();
        assert!((3590..=3610).contains(&secs), "valid {secs} s");
        let (_, ca_parsed) = x509_parser::parse_x509_certificate(&id.ca[0])
            .map_err(|_| CertError::NoNodeName("parse"))?;
        assert!(
            ca_parsed.validity().not_after.timestamp() < 4_000_000_000,
            "the ca expires too"
        );
        Ok(())
    }

    #[test]
    fn nodes_are_added_to_an_existing_directory() -> Result<(), CertError> {
        let dir = std::env::temp_dir().join(format!("gossip-certs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        write_cluster(&dir, "t", &["a"])?;
        let ca_before = read_string(&dir.join(CA_CERT_FILE))?;
        write_cluster(&dir, "t", &["b"])?;
        assert_eq!(
            read_string(&dir.join(CA_CERT_FILE))?,
            ca_before,
            "the ca is kept"
        );
        let a = NodeIdentity::load(&dir, "a")?;
        let b = NodeIdentity::load(&dir, "b")?;
        assert_eq!(a.ca, b.ca);
        // A certificate file under another node's name is refused.
        fs::copy(dir.join("a.pem"), dir.join("c.pem")).map_err(|source| CertError::Io {
            path: dir.clone(),
            source,
        })?;
        fs::copy(dir.join("a.key"), dir.join("c.key")).map_err(|source| CertError::Io {
            path: dir.clone(),
            source,
        })?;
        assert!(matches!(
            NodeIdentity::load(&dir, "c"),
            Err(CertError::WrongNode { .. })
        ));
        let _ = fs::remove_dir_all(&dir);
        Ok(())
    }
}
