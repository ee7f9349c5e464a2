//! TLS settings from the control directory.
//!
//! `control/servercert.pem` holds the certificate chain and the private key (qmail's
//! convention; a separate `control/serverkey.pem` is used for the key when it
//! exists). No certificate file means TLS is not offered; a broken one is an error
//! naming the file.

use crate::os::home::Home;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug)]
pub struct TlsError {
    pub path: PathBuf,
    pub problem: String,
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TLS certificate {}: {}", self.path.display(), self.problem)
    }
}

impl crate::error::Classify for TlsError {
    fn kind(&self) -> crate::error::Kind {
        crate::error::Kind::Temporary
    }
}

/// The crypto provider everything in the suite uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration, or None when no certificate is installed.
pub fn server_config(home: &Home) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let cert_path = home.control_file("servercert.pem");
    if !cert_path.exists() {
        return Ok(None);
    }
    let err = |path: &PathBuf, problem: String| TlsError { path: path.clone(), problem };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
        .map_err(|e| err(&cert_path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| err(&cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(&cert_path, "no CERTIFICATE in it".into()));
    }
    let key_path = {
        let k = home.control_file("serverkey.pem");
        if k.exists() {
            k
        } else {
            cert_path.clone()
        }
    };
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| err(&key_path, format!("no usable private key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| err(&cert_path, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| err(&cert_path, e.to_string()))?;
    Ok(Some(Arc::new(config)))
}

// Client side (postern-remote).

/// Accepts any certificate, still checking that the server holds its key: for
/// opportunistic STARTTLS, which protects against listeners, not impostors.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for opportunistic TLS: any certificate is accepted.
pub fn client_config_any() -> Arc<rustls::ClientConfig> {
    let p = provider();
    let config = rustls::ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(p)))
        .with_no_client_auth();
    Arc::new(config)
}

/// The CAs verified client connections trust: those in `ca_file` when given
/// (control/tlsca.pem), else the public web roots.
pub fn root_store(ca_file: Option<&std::path::Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let err = |problem: String| TlsError { path: path.to_path_buf(), problem };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
                roots.add(cert.map_err(|e| err(e.to_string()))?).map_err(|e| err(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(err("no CERTIFICATE in it".into()));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(roots)
}

/// The client configuration that verifies certificates: against the CAs in
/// `ca_file` when given (control/tlsca.pem), else the public web roots.
pub fn client_config_verified(ca_file: Option<&std::path::Path>) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let roots = root_store(ca_file)?;
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError { path: ca_file.map(|p| p.to_path_buf()).unwrap_or_default(), problem: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
