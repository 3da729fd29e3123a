//! TLS for the API listener: a given certificate, or a self-signed one made with rcgen.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::options::TlsOptions;

/// The API certificate could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen failed.
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The PEM holds no certificate or no key.
    #[error("PEM: {0}")]
    Pem(String),
    /// rustls refused the certificate or key.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
}

/// The acceptor and, for a generated certificate, its PEM (to trust as a CA).
pub fn acceptor(
    opts: &TlsOptions,
) -> Result<(tokio_rustls::TlsAcceptor, Option<String>), TlsError> {
    let (certs, key, generated) = match opts {
        TlsOptions::Generate { subject_alt_names } => {
            let names = if subject_alt_names.is_empty() {
                vec!["localhost".to_string(), "127.0.0.1".to_string()]
            } else {
                subject_alt_names.clone()
            };
            let ck = rcgen::generate_simple_self_signed(names)?;
            let pem = ck.cert.pem();
            let key = PrivateKeyDer::try_from(ck.signing_key.serialize_der())
                .map_err(|e| TlsError::Pem(e.to_string()))?;
            (vec![ck.cert.der().clone()], key, Some(pem))
        }
        TlsOptions::Pem { cert_pem, key_pem } => {
            use rustls::pki_types::pem::PemObject;
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                    .collect::<Result<_, _>>()
                    .map_err(|e| TlsError::Pem(e.to_string()))?;
            if certs.is_empty() {
                return Err(TlsError::Pem("no certificate".into()));
            }
            // The parser's detail can quote key bytes: not repeated.
            let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
                .map_err(|_| TlsError::Pem("no usable private key".into()))?;
            (certs, key, None)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    // Harbor's API over TLS speaks HTTP/1.1 to API clients through its nginx as well.
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(cfg)), generated))
}
