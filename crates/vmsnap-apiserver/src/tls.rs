//! TLS for the API: a CA generated at first start (kept in `dir/tls/`) and a server
//! certificate for the listen address, signed by it. The CA goes into the kubeconfig.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A server certificate and the CA that signed it.
pub struct TlsMaterial {
    /// The CA certificate (PEM), for the kubeconfig.
    pub ca_pem: String,
    /// The rustls server configuration.
    pub server_config: Arc<rustls::ServerConfig>,
}

/// Errors preparing TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing the key material failed.
    #[error("cannot read or write TLS material in {0}")]
    Io(String, #[source] std::io::Error),
    /// Generating or parsing certificates failed.
    #[error("cannot create the TLS certificates: {0}")]
    Certificate(String),
}

/// Loads the CA (creating it at first start, then keeping it, so that kubeconfigs stay valid) and
/// issues a server certificate, at every start, for `ip`, `127.0.0.1`, `localhost` and `names` (IP
/// addresses or DNS names).
pub fn prepare(dir: &Path, ip: IpAddr, names: &[String]) -> Result<TlsMaterial, TlsError> {
    let tls_dir = dir.join("tls");
    std::fs::create_dir_all(&tls_dir).map_err(|e| TlsError::Io(tls_dir.display().to_string(), e))?;
    let ca_cert_path = tls_dir.join("ca.crt");
    let ca_key_path = tls_dir.join("ca.key");
    let cert_err = |e: rcgen::Error| TlsError::Certificate(e.to_string());
    let (ca_pem, ca_key_pem) =
        match (std::fs::read_to_string(&ca_cert_path), std::fs::read_to_string(&ca_key_path)) {
            (Ok(c), Ok(k)) => (c, k),
            _ => {
                let key = KeyPair::generate().map_err(cert_err)?;
                let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                params.distinguished_name.push(DnType::CommonName, "vmsnap CA");
                let cert = params.self_signed(&key).map_err(cert_err)?;
                let (c, k) = (cert.pem(), key.serialize_pem());
                crate::auth::write_private(&ca_key_path, k.as_bytes())
                    .map_err(|e| TlsError::Io(ca_key_path.display().to_string(), e))?;
                std::fs::write(&ca_cert_path, &c)
                    .map_err(|e| TlsError::Io(ca_cert_path.display().to_string(), e))?;
                (c, k)
            }
        };
    let ca_key = KeyPair::from_pem(&ca_key_pem).map_err(cert_err)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key).map_err(cert_err)?;
    let server_key = KeyPair::generate().map_err(cert_err)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).map_err(cert_err)?;
    let mut sans = vec![SanType::IpAddress(IpAddr::from([127, 0, 0, 1]))];
    if !ip.is_unspecified() {
        sans.push(SanType::IpAddress(ip));
    }
    for name in names {
        sans.push(subject_alt_name(name)?);
    }
    for san in sans {
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.distinguished_name.push(DnType::CommonName, "vmsnap apiserver");
    let server_cert = params.signed_by(&server_key, &issuer).map_err(cert_err)?;
    let chain = vec![rustls::pki_types::CertificateDer::from(server_cert.der().to_vec())];
    let key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Certificate(e.to_string()))?;
    Ok(TlsMaterial { ca_pem, server_config: Arc::new(config) })
}

/// An IP address or DNS name as a subject alternative name.
fn subject_alt_name(name: &str) -> Result<SanType, TlsError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|e| TlsError::Certificate(format!("{name:?} is neither an IP address nor a DNS name: {e}")))
}
