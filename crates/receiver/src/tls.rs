//! Optional TLS for the webhook listener (`--tls-cert`, `--tls-key`), with
//! rustls on the ring provider only (kube uses ring too; two providers in
//! one process make rustls refuse to pick one).
//!
//! The certificate is reloaded when the files change: the resolver checks
//! the files' modification time and size at most every
//! [`DEFAULT_CHECK_INTERVAL`] during handshakes and re-reads them when they
//! changed. A pair that does not load (half-written, key not matching the
//! certificate) is logged and the previous certificate stays in use until
//! the files change again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use thiserror::Error;

/// How often the files are checked for changes, at most.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Why a certificate could not be loaded.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key found")]
    NoKey(PathBuf),
    /// rustls refused the key or the pair.
    #[error("unusable certificate/key pair: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The ring provider, installed as the process default once (harmless if
/// already installed).
pub fn provider() -> Arc<CryptoProvider> {
    let provider = rustls::crypto::ring::default_provider();
    let _ = provider.clone().install_default();
    Arc::new(provider)
}

/// Reads a PEM certificate chain and private key into a checked pair.
pub fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_der: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: key.to_owned(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey(key.to_owned()))?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()?;
    Ok(pair)
}

type Stamp = [(Option<SystemTime>, u64); 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    let one = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| (m.modified().ok(), m.len()))
            .unwrap_or((None, 0))
    };
    [one(cert), one(key)]
}

struct State {
    current: Arc<CertifiedKey>,
    stamp: Stamp,
    checked: Instant,
}

/// A certificate resolver that reloads its files when they change.
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    state: Mutex<State>,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair now (an error here stops the program) and checks for
    /// changes at most every `interval`.
    pub fn new(cert: &Path, key: &Path, interval: Duration) -> Result<Self, TlsError> {
        let stamp = stamp(cert, key);
        let current = Arc::new(load_pair(cert, key)?);
        Ok(Self {
            cert: cert.to_owned(),
            key: key.to_owned(),
            interval,
            state: Mutex::new(State {
                current,
                stamp,
                checked: Instant::now(),
            }),
        })
    }

    /// The certificate to present, reloaded first if the files changed.
    pub fn current(&self) -> Arc<CertifiedKey> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked.elapsed() >= self.interval {
            state.checked = Instant::now();
            let now = stamp(&self.cert, &self.key);
            if now != state.stamp {
                match load_pair(&self.cert, &self.key) {
                    Ok(pair) => {
                        state.current = Arc::new(pair);
                        state.stamp = now;
                        tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                    }
                    Err(error) => {
                        tracing::warn!(%error, "TLS certificate changed but does not load; keeping the previous one")
                    }
                }
            }
        }
        state.current.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// A rustls server configuration (h2 and HTTP/1.1 by ALPN) serving the
/// reloading certificate.
pub fn server_config(
    cert: &Path,
    key: &Path,
    interval: Duration,
) -> Result<ServerConfig, TlsError> {
    let resolver = ReloadingCert::new(cert, key, interval)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Test support: writes a self-signed certificate for `localhost` with the
/// `openssl` command into `dir`, returning (cert, key) paths.
#[doc(hidden)]
pub fn self_signed_with_openssl(dir: &Path, name: &str) -> std::io::Result<(PathBuf, PathBuf)> {
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}"))
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("openssl failed: {status}")));
    }
    Ok((cert, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(pair: &CertifiedKey) -> Vec<u8> {
        pair.cert[0].as_ref().to_vec()
    }

    #[test]
    fn loads_and_reloads_when_files_change() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (c1, k1) = self_signed_with_openssl(&dir, "one").unwrap();
        let (c2, k2) = self_signed_with_openssl(&dir, "two").unwrap();
        let cert = dir.join("tls.crt");
        let key = dir.join("tls.key");
        std::fs::copy(&c1, &cert).unwrap();
        std::fs::copy(&k1, &key).unwrap();
        let r = ReloadingCert::new(&cert, &key, Duration::ZERO).unwrap();
        let first = subject(&r.current());
        assert_eq!(first, subject(&load_pair(&c1, &k1).unwrap()));
        // Half-rotated: new cert, old key → refused, old pair kept.
        std::fs::copy(&c2, &cert).unwrap();
        assert_eq!(subject(&r.current()), first);
        // Rotation completes → new pair served.
        std::fs::copy(&k2, &key).unwrap();
        let second = subject(&r.current());
        assert_eq!(second, subject(&load_pair(&c2, &k2).unwrap()));
        assert_ne!(first, second);
        // Files gone → keep serving.
        std::fs::remove_file(&cert).unwrap();
        assert_eq!(subject(&r.current()), second);
    }

    #[test]
    fn bad_files_are_refused_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_owned();
        let (c1, k1) = self_signed_with_openssl(&dir, "one").unwrap();
        let missing = dir.join("missing");
        let err = ReloadingCert::new(&missing, &k1, DEFAULT_CHECK_INTERVAL).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
        let err = ReloadingCert::new(&k1, &k1, DEFAULT_CHECK_INTERVAL).unwrap_err();
        assert!(err.to_string().contains("no PEM certificate"), "{err}");
        let err = ReloadingCert::new(&c1, &c1, DEFAULT_CHECK_INTERVAL).unwrap_err();
        assert!(err.to_string().contains("no PEM private key"), "{err}");
        assert!(server_config(&c1, &k1, DEFAULT_CHECK_INTERVAL).is_ok());
    }
}
