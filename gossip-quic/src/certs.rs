//! The cluster's certificates: one CA per cluster, one certificate per node.
//!
//! Mutual TLS needs every node to hold a certificate signed by the cluster
//! CA; each side checks the other's chain against that CA alone (no
//! system roots), so a node of another cluster or with no certificate is
//! refused. Every node certificate carries the same DNS name,
//! [`server_name`]`(cluster)`, as its subject alternative name: it is the
//! SNI every dial presents, so a node's identity is "signed by our CA",
//! not "reached at this address" (addresses change, certificates should not
//! have to).
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

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::CertError;

/// File name of the CA certificate in a certificate directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// File name of the CA private key in a certificate directory.
pub const CA_KEY_FILE: &str = "ca.key";

/// The DNS name every node certificate of `cluster` carries, and the SNI
/// every dial presents: the cluster name made a DNS label, plus `.gossip`
/// (`"Prod EU"` → `"prod-eu.gossip"`).
pub fn server_name(cluster: &str) -> String {
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
    format!("{label}.gossip")
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
    /// Creates a fresh CA (ECDSA P-256) for `cluster`.
    pub fn generate(cluster: &str) -> Result<Self, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
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

    /// Issues a certificate for node `node`: subject CN = the node name,
    /// SAN = [`server_name`] of the cluster, usable for both TLS server and
    /// client authentication (every node both dials and accepts).
    pub fn issue(&self, node: &str) -> Result<NodeCert, CertError> {
        check_name(node)?;
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, ca_key)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![server_name(&self.cluster)])?;
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
/// certificate per node. Returns the CA.
pub fn write_cluster(dir: &Path, cluster: &str, nodes: &[&str]) -> Result<ClusterCa, CertError> {
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
        ca.issue(node)?.write(dir)?;
    }
    Ok(ca)
}

/// What a node presents and trusts: its certificate chain and key, and the
/// cluster CA it requires of peers. Give it to
/// [`QuicConfig::new`](crate::QuicConfig::new).
pub struct NodeIdentity {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) chain: Vec<CertificateDer<'static>>,
    pub(crate) key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        NodeIdentity {
            ca: self.ca.clone(),
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("chain_len", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl NodeIdentity {
    /// Loads node `node`'s identity from a certificate directory: `ca.pem`,
    /// `NODE.pem`, `NODE.key` (the CA key is not needed).
    pub fn load(dir: &Path, node: &str) -> Result<Self, CertError> {
        check_name(node)?;
        let ca_path = dir.join(CA_CERT_FILE);
        let cert_path = dir.join(format!("{node}.pem"));
        let key_path = dir.join(format!("{node}.key"));
        let ca = first_cert(&ca_path, &read_string(&ca_path)?)?;
        let chain = certs(&cert_path, &read_string(&cert_path)?)?;
        let key = private_key(&key_path, &read_string(&key_path)?)?;
        Ok(NodeIdentity { ca, chain, key })
    }

    /// An identity from PEM text: the CA certificate, the node certificate
    /// (chain), the node private key.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, CertError> {
        let here = PathBuf::from("<memory>");
        Ok(NodeIdentity {
            ca: first_cert(&here, ca_pem)?,
            chain: certs(&here, cert_pem)?,
            key: private_key(&here, key_pem)?,
        })
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

fn first_cert(path: &Path, pem: &str) -> Result<CertificateDer<'static>, CertError> {
    certs(path, pem)?
        .into_iter()
        .next()
        .ok_or_else(|| CertError::Pem {
            path: path.to_owned(),
            what: "certificate",
        })
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

fn check_name(node: &str) -> Result<(), CertError> {
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
        assert!(matches!(ca.issue("../x"), Err(CertError::BadName(_))));
        Ok(())
    }
}
