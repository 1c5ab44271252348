//! TLS on the gRPC port (rustls through tonic, ring as the crypto provider), with mutual
//! authentication: every connection, a member's or a client's, presents a certificate signed
//! by the cluster's CA.
//!
//! A *member* certificate names its node id in a URI subject alternative name,
//! `shardkv://node/<id>` ([`member_uri`]); any other certificate the CA signed is a *client*
//! certificate. The Raft and Shard services accept only member certificates
//! ([`PeerAuth::MemberCertificates`]), and the Raft service drops every batch whose claimed
//! sender is not the id in the certificate of the connection it came on. The Kv and Ctrl
//! services accept any certificate the CA signed.
//!
//! One certificate per process: a server presents it when serving and as its client
//! certificate when it connects to other members (peer streams, another group's Shard
//! service, the controller).

use shardkv_types::NodeId;
use std::fmt;
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, CertificateDer, ClientTlsConfig, Identity, ServerTlsConfig};

/// The scheme and path before the node id in a member certificate's URI SAN.
pub const MEMBER_URI_PREFIX: &str = "shardkv://node/";

/// The URI SAN that makes a certificate the member certificate of node `id`.
pub fn member_uri(id: NodeId) -> String {
    format!("{MEMBER_URI_PREFIX}{}", id.0)
}

/// Why TLS material cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The member id a DER certificate names ([`MEMBER_URI_PREFIX`]), `Ok(None)` for a
/// certificate without one (a client's). A certificate naming two different ids, or a
/// malformed id, is an error: it is no member's.
pub fn member_id(cert_der: &[u8]) -> Result<Option<NodeId>, TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| TlsError(format!("not an X.509 certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| TlsError(format!("bad subject alternative names: {e}")))?;
    let mut found: Option<NodeId> = None;
    let uris = san.iter().flat_map(|s| s.value.general_names.iter());
    for name in uris {
        let x509_parser::extensions::GeneralName::URI(uri) = name else {
            continue;
        };
        let Some(text) = uri.strip_prefix(MEMBER_URI_PREFIX) else {
            continue;
        };
        // Compared as text: no sign, no leading zeros, not 0.
        let id = match text.parse::<u64>() {
            Ok(n) if n > 0 && n.to_string() == text => NodeId(n),
            _ => return Err(TlsError(format!("bad member id in {uri:?}"))),
        };
        if found.is_some_and(|f| f != id) {
            return Err(TlsError("the certificate names two member ids".into()));
        }
        found = Some(id);
    }
    Ok(found)
}

/// Who may use the Raft and Shard services of a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerAuth {
    /// Plaintext port: anyone who reaches it (no TLS configured).
    Open,
    /// TLS port: only connections whose certificate is a member certificate; Raft batches
    /// only from the member the certificate names.
    MemberCertificates,
}

impl PeerAuth {
    /// The member a request's connection authenticated as: `Ok(None)` on an open port,
    /// `Err` (PERMISSION_DENIED) when a member certificate is required and missing.
    pub fn member(
        self,
        certs: Option<&[CertificateDer<'static>]>,
    ) -> Result<Option<NodeId>, tonic::Status> {
        match self {
            PeerAuth::Open => Ok(None),
            PeerAuth::MemberCertificates => {
                let leaf = certs.and_then(<[_]>::first).ok_or_else(|| {
                    tonic::Status::permission_denied("a member certificate is required")
                })?;
                match member_id(leaf) {
                    Ok(Some(id)) => Ok(Some(id)),
                    Ok(None) => Err(tonic::Status::permission_denied(format!(
                        "only members may use this service: the certificate has no \
                         {MEMBER_URI_PREFIX}<id> name"
                    ))),
                    Err(e) => Err(tonic::Status::permission_denied(format!(
                        "not a member certificate: {e}"
                    ))),
                }
            }
        }
    }
}

/// PEM files: a certificate chain, its private key and the CA certificate(s) to trust.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub cacert: PathBuf,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError(format!("cannot read {what} {}: {e}", path.display())))
}

/// The DER certificates in a PEM buffer; an error if there is none.
fn pem_certs(pem: &[u8], path: &Path) -> Result<Vec<Vec<u8>>, TlsError> {
    let mut certs = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| TlsError(format!("{}: bad PEM: {e}", path.display())))?;
        if block.label == "CERTIFICATE" {
            certs.push(block.contents);
        }
    }
    if certs.is_empty() {
        return Err(TlsError(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// A process's TLS material, read and checked: its certificate names `id` (when loaded
/// with [`MemberTls::load`]).
#[derive(Clone, Debug)]
pub struct MemberTls {
    id: NodeId,
    cert: Vec<u8>,
    key: Vec<u8>,
    ca: Vec<u8>,
}

impl MemberTls {
    /// Reads `files` and checks that the certificate is node `id`'s member certificate.
    pub fn load(files: &TlsFiles, id: NodeId) -> Result<MemberTls, TlsError> {
        let cert = read(&files.cert, "the certificate")?;
        let key = read(&files.key, "the key")?;
        let ca = read(&files.cacert, "the CA certificate")?;
        pem_certs(&ca, &files.cacert)?;
        let leaf = pem_certs(&cert, &files.cert)?.remove(0);
        match member_id(&leaf).map_err(|e| TlsError(format!("{}: {e}", files.cert.display())))? {
            Some(named) if named == id => {}
            Some(named) => {
                return Err(TlsError(format!(
                    "{} is the certificate of {named}, not of this node ({id})",
                    files.cert.display()
                )));
            }
            None => {
                return Err(TlsError(format!(
                    "{} is not a member certificate: it has no {} subject alternative name",
                    files.cert.display(),
                    member_uri(id)
                )));
            }
        }
        Ok(MemberTls { id, cert, key, ca })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The server side: present this certificate, require one signed by the CA from every
    /// connection.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// The client side towards other members: trust the CA, present this certificate.
    pub fn client_config(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(Identity::from_pem(&self.cert, &self.key))
    }
}

/// A client's TLS configuration: trust the CA in `cacert`, present the certificate and key
/// in `cert_key` if given (a server with TLS on refuses a client without one).
pub fn client_config(
    cacert: &Path,
    cert_key: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let ca = read(cacert, "the CA certificate")?;
    pem_certs(&ca, cacert)?;
    let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = cert_key {
        let cert_pem = read(cert, "the certificate")?;
        pem_certs(&cert_pem, cert)?;
        let key_pem = read(key, "the key")?;
        config = config.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(config)
}

/// `http://addr` or, with TLS, `https://addr`.
pub fn endpoint_uri(addr: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://{addr}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, KeyPair, SanType};

    /// A self-signed certificate with `uris` as URI SANs (and a DNS SAN).
    fn cert_with(uris: &[&str]) -> Vec<u8> {
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        for uri in uris {
            let uri = (*uri).try_into().expect("ia5");
            params.subject_alt_names.push(SanType::URI(uri));
        }
        let key = KeyPair::generate().expect("key");
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn a_member_certificate_names_its_id() {
        // Goal: the id comes from the shardkv URI SAN only.
        assert_eq!(
            member_id(&cert_with(&["shardkv://node/7"])),
            Ok(Some(NodeId(7)))
        );
        assert_eq!(member_uri(NodeId(7)), "shardkv://node/7");
        let both = [
            "https://example.com/x",
            "shardkv://node/2",
            "shardkv://node/2",
        ];
        assert_eq!(member_id(&cert_with(&both)), Ok(Some(NodeId(2))));
    }

    #[test]
    fn a_certificate_without_a_member_uri_is_a_clients() {
        assert_eq!(member_id(&cert_with(&[])), Ok(None));
        assert_eq!(member_id(&cert_with(&["shardkv://client/1"])), Ok(None));
    }

    #[test]
    fn malformed_or_ambiguous_member_ids_are_refused() {
        // Goal: an id is compared as the text a CA signed: no zero, sign, leading zeros or
        // second id.
        for bad in ["shardkv://node/0", "shardkv://node/+2", "shardkv://node/02"] {
            assert!(member_id(&cert_with(&[bad])).is_err(), "{bad}");
        }
        assert!(member_id(&cert_with(&["shardkv://node/x"])).is_err());
        assert!(member_id(&cert_with(&["shardkv://node/1", "shardkv://node/2"])).is_err());
        assert!(member_id(b"not a certificate").is_err());
    }

    #[test]
    fn member_services_need_a_member_certificate_on_a_tls_port() {
        let member = CertificateDer::from(cert_with(&["shardkv://node/3"]));
        let client = CertificateDer::from(cert_with(&[]));
        let auth = PeerAuth::MemberCertificates;
        assert_eq!(
            auth.member(Some(std::slice::from_ref(&member))).ok(),
            Some(Some(NodeId(3)))
        );
        let refused = auth.member(Some(std::slice::from_ref(&client)));
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(tonic::Code::PermissionDenied)
        );
        assert!(auth.member(None).is_err());
        assert_eq!(PeerAuth::Open.member(None).ok(), Some(None));
    }

    #[test]
    fn a_server_refuses_a_certificate_of_another_node_or_a_clients() {
        // Goal: a member starts only with its own member certificate. Method: load node 2's
        // certificate as node 2, as node 3, and a client certificate as node 2.
        let dir = std::env::temp_dir().join(format!("shardkv-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let write = |name: &str, uris: &[&str]| {
            let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("p");
            for uri in uris {
                params
                    .subject_alt_names
                    .push(SanType::URI((*uri).try_into().expect("ia5")));
            }
            let key = KeyPair::generate().expect("key");
            let cert = params.self_signed(&key).expect("cert");
            let files = TlsFiles {
                cert: dir.join(format!("{name}.pem")),
                key: dir.join(format!("{name}.key")),
                cacert: dir.join(format!("{name}.pem")),
            };
            std::fs::write(&files.cert, cert.pem()).expect("write");
            std::fs::write(&files.key, key.serialize_pem()).expect("write");
            files
        };
        let n2 = write("n2", &["shardkv://node/2"]);
        let client = write("client", &[]);
        assert_eq!(
            MemberTls::load(&n2, NodeId(2)).map(|t| t.id()),
            Ok(NodeId(2))
        );
        let other = MemberTls::load(&n2, NodeId(3)).expect_err("another node's");
        assert!(
            other.0.contains("certificate of n2, not of this node (n3)"),
            "{other}"
        );
        let not_member = MemberTls::load(&client, NodeId(2)).expect_err("a client's");
        assert!(
            not_member.0.contains("not a member certificate"),
            "{not_member}"
        );
        let missing = TlsFiles {
            cert: dir.join("absent.pem"),
            ..n2
        };
        assert!(MemberTls::load(&missing, NodeId(2)).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
