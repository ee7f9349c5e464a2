//! TLS settings from the control directory.
//!
//! `control/servercert.pem` holds the certificate chain and the private key (qmail's
//! convention; a separate `control/serverkey.pem` is used for the key when it
//! exists). No certificate file means TLS is not offered; a broken one is an error
//! naming the file.

use crate::home::Home;
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
