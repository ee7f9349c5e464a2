//! The DANE certificate check (RFC 7672 section 3): a rustls verifier that
//! accepts a server certificate only when it matches one of the host's TLSA
//! records, and still checks the handshake signatures with the server's key.
//!
//! - DANE-EE (usage 3): the server's own certificate (or its key) matches; its
//!   names and dates are not checked, as the RFC says.
//! - DANE-TA (usage 2): a certificate the server sent matches and is the trust
//!   anchor of the chain to the server's certificate, which must also name the
//!   MX host (checked by webpki, with that certificate as the only root).
//!
//! PKIX usages (0, 1) are unusable for SMTP and never get here.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::DigitallySignedStruct;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

pub const DANE_TA: u8 = 2;
pub const DANE_EE: u8 = 3;

/// One TLSA record (RFC 6698): usage, selector, matching type and the data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

impl Tlsa {
    /// Usable for SMTP (RFC 7672 section 3.1): DANE-TA or DANE-EE, a known
    /// selector and matching type.
    pub fn usable(&self) -> bool {
        matches!(self.usage, DANE_TA | DANE_EE) && self.selector <= 1 && self.matching <= 2
    }

    /// Whether `cert` matches this record.
    pub fn matches(&self, cert: &CertificateDer<'_>) -> bool {
        let selected: Vec<u8> = match self.selector {
            0 => cert.as_ref().to_vec(),
            1 => match webpki::EndEntityCert::try_from(cert) {
                Ok(c) => c.subject_public_key_info().as_ref().to_vec(),
                Err(_) => return false,
            },
            _ => return false,
        };
        match self.matching {
            0 => selected == self.data,
            1 => ring::digest::digest(&ring::digest::SHA256, &selected).as_ref() == self.data.as_slice(),
            2 => ring::digest::digest(&ring::digest::SHA512, &selected).as_ref() == self.data.as_slice(),
            _ => false,
        }
    }
}

/// Which usage matched in the last handshake (0 before one did), for the log.
pub type Matched = Arc<AtomicU8>;

#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    matched: Matched,
}

impl DaneVerifier {
    /// DANE-TA: a certificate of the chain that matches a usage 2 record anchors
    /// a PKIX check of the rest (chain, dates, name).
    fn trust_anchor(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<bool, rustls::Error> {
        let tas = self.records.iter().filter(|r| r.usage == DANE_TA).collect::<Vec<_>>();
        for (i, ca) in intermediates.iter().enumerate() {
            if !tas.iter().any(|r| r.matches(ca)) {
                continue;
            }
            let mut roots = rustls::RootCertStore::empty();
            if roots.add(ca.clone().into_owned()).is_err() {
                continue;
            }
            let pkix = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
            if pkix.verify_server_cert(end_entity, &intermediates[..i], server_name, ocsp, now).is_ok() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.records.iter().any(|r| r.usage == DANE_EE && r.matches(end_entity)) {
            self.matched.store(DANE_EE, Ordering::Relaxed);
            return Ok(ServerCertVerified::assertion());
        }
        if self.trust_anchor(end_entity, intermediates, server_name, ocsp, now)? {
            self.matched.store(DANE_TA, Ordering::Relaxed);
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::General("DANE: the certificate matches none of the host's TLSA records".into()))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The client configuration for a host with usable TLSA records; `matched`
/// says afterwards which usage the certificate matched.
pub fn client_config(records: Vec<Tlsa>, matched: Matched) -> Arc<rustls::ClientConfig> {
    let provider = super::tls::provider();
    let verifier = DaneVerifier { records, provider: provider.clone(), matched };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_records() {
        let t = |usage, selector, matching| Tlsa { usage, selector, matching, data: vec![] };
        assert!(t(3, 1, 1).usable() && t(2, 0, 0).usable() && t(3, 0, 2).usable());
        assert!(!t(0, 1, 1).usable() && !t(1, 1, 1).usable(), "PKIX usages are unusable for SMTP");
        assert!(!t(3, 2, 1).usable() && !t(3, 1, 3).usable());
    }
}
