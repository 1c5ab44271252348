//! The throw-away certificates of `shardkv up --tls` (rcgen): a CA, one member certificate
//! per node (URI SAN `shardkv://node/<id>`, plus `localhost` and `127.0.0.1`, the addresses
//! `up` serves on) and one client certificate (no member URI: it may use the Kv and Ctrl
//! services only). All under `<data-dir>/tls/`, keys readable by the owner only. A later
//! `up` on the same directory reuses them if they are all there, so the client flags stay
//! valid; otherwise it makes a new set.

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use shardkv_client::tls::member_uri;
use shardkv_types::NodeId;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Where one certificate and its key are.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of `up --tls`.
#[derive(Clone, Debug)]
pub struct ClusterCerts {
    pub ca: PathBuf,
    pub client: CertFiles,
    /// By node id.
    pub members: Vec<(u64, CertFiles)>,
}

impl ClusterCerts {
    /// The certificates of nodes `1..=replicas` under `dir`: the ones there, or new ones.
    pub fn ensure(dir: &Path, replicas: u64) -> Result<ClusterCerts> {
        let pair = |name: &str| CertFiles {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        let certs = ClusterCerts {
            ca: dir.join("ca.pem"),
            client: pair("client"),
            members: (1..=replicas)
                .map(|id| (id, pair(&format!("n{id}"))))
                .collect(),
        };
        let complete = std::iter::once(&certs.client)
            .chain(certs.members.iter().map(|(_, f)| f))
            .flat_map(|f| [&f.cert, &f.key])
            .chain([&certs.ca])
            .all(|p| p.exists());
        if complete {
            return Ok(certs);
        }
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        certs.generate()?;
        Ok(certs)
    }

    fn generate(&self) -> Result<()> {
        let mut ca_params = CertificateParams::default();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "shardkv up throw-away CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);
        for (id, files) in &self.members {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
            params
                .distinguished_name
                .push(DnType::CommonName, format!("shardkv member n{id}"));
            params
                .subject_alt_names
                .push(SanType::URI(member_uri(NodeId(*id)).try_into()?));
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            write_pair(files, &params, &issuer)?;
        }
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "shardkv client");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        write_pair(&self.client, &params, &issuer)?;
        write_file(&self.ca, ca_cert.pem().as_bytes(), 0o644)
    }
}

/// A new key and a certificate for it, signed by `issuer`.
fn write_pair(
    files: &CertFiles,
    params: &CertificateParams,
    issuer: &Issuer<KeyPair>,
) -> Result<()> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    write_file(&files.key, key.serialize_pem().as_bytes(), 0o600)?;
    write_file(&files.cert, cert.pem().as_bytes(), 0o644)
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let _ = fs::remove_file(path);
    let mut f = fs::File::options()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}
