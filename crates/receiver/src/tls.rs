//! Optional TLS for the webhook listener (`--tls-cert`, `--tls-key`), with
//! rustls on the ring provider only (kube uses ring too; two providers in
//! one process make rustls refuse to pick one).
//!
//! The certificate is reloaded when the files change, off the handshake
//! path: a background task ([`ReloadingCert::spawn`]) reads both files every
//! interval ([`DEFAULT_CHECK_INTERVAL`] in the server) and, when their
//! content changed (SHA-256 of both), parses the pair and publishes it
//! through an [`ArcSwap`]. The resolver only loads that `ArcSwap`: no file
//! I/O and no lock inside a TLS handshake. A changed pair that does not load
//! (half-written, key not matching the certificate, files gone mid-rotation)
//! is logged once and the previous certificate stays in use until the files
//! change again. Content rather than mtime/size: a Secret volume rotation
//! swaps symlinks and a same-size rewrite can keep the mtime within its
//! granularity; hashing two small files every few seconds is cheap.
//!
//! PEM parsing is `rustls-pki-types`' own ([`PemObject`]), on the bytes that
//! were hashed, so the pair that is checked is the pair that is parsed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::{CancellationToken, DropGuard};

/// How often the server's reload task checks the files.
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
    /// The certificate file is not valid PEM.
    #[error("{path}: invalid PEM certificate: {source}")]
    CertificatePem {
        /// Which file.
        path: PathBuf,
        /// Cause.
        #[source]
        source: pem::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no PEM certificate found")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0}: no PEM private key found")]
    NoKey(PathBuf),
    /// The key file is not valid PEM. The parser's detail is left out: it
    /// may quote bytes of the key.
    #[error("{0}: invalid PEM private key")]
    KeyPem(PathBuf),
    /// rustls refused the key or the pair.
    #[error("unusable certificate/key pair: {0}")]
    Rustls(#[from] rustls::Error),
    /// The reload task needs a Tokio runtime, and there is none.
    #[error("the TLS certificate reload task needs a Tokio runtime")]
    NoRuntime,
}

/// The ring provider, installed as the process default once (harmless if
/// already installed).
pub fn provider() -> Arc<CryptoProvider> {
    let provider = rustls::crypto::ring::default_provider();
    let _ = provider.clone().install_default();
    Arc::new(provider)
}

/// Reads a PEM certificate chain and private key into a checked pair
/// (blocking file I/O; the reload task parses the bytes it hashed instead).
#[cfg(test)]
fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    parse_pair(cert, &read(cert)?, key, &read(key)?)
}

/// Parses the PEM contents of the two files (`cert`, `key` name them in errors).
fn parse_pair(
    cert: &Path,
    cert_pem: &[u8],
    key: &Path,
    key_pem: &[u8],
) -> Result<CertifiedKey, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::CertificatePem {
            path: cert.to_owned(),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => TlsError::NoKey(key.to_owned()),
        _ => TlsError::KeyPem(key.to_owned()),
    })?;
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(key_der)?;
    let pair = CertifiedKey::new(chain, signing);
    pair.keys_match()?;
    Ok(pair)
}

/// SHA-256 over both files' contents (length-prefixed, so that bytes moving
/// from one file to the other change it too).
fn digest(cert_pem: &[u8], key_pem: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [cert_pem, key_pem] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// What the reload task has done so far (see [`ReloadingCert::status`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Completed checks of the files.
    pub checks: u64,
    /// Times a changed pair was loaded and published.
    pub reloads: u64,
    /// Times a change was refused (logged), the previous pair kept.
    pub failures: u64,
}

/// A certificate resolver serving the latest good pair, which its
/// background task keeps up to date (see the module docs).
pub struct ReloadingCert {
    current: Arc<ArcSwap<CertifiedKey>>,
    status: watch::Receiver<ReloadStatus>,
    // Dropping the resolver stops its task.
    _stop: DropGuard,
}

impl std::fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReloadingCert")
            .field("status", &*self.status.borrow())
            .finish_non_exhaustive()
    }
}

impl ReloadingCert {
    /// Loads the pair now (an error here stops the program) and spawns the
    /// task that checks the files every `interval`. The task ends when
    /// `stop` is cancelled or the resolver is dropped; the handle tells when
    /// it has. Needs a Tokio runtime.
    pub fn spawn(
        cert: &Path,
        key: &Path,
        interval: Duration,
        stop: CancellationToken,
    ) -> Result<(Self, JoinHandle<()>), TlsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TlsError::NoRuntime)?;
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        let (cert_pem, key_pem) = (read(cert)?, read(key)?);
        let pair = parse_pair(cert, &cert_pem, key, &key_pem)?;
        let current = Arc::new(ArcSwap::from_pointee(pair));
        let (status_tx, status) = watch::channel(ReloadStatus::default());
        let stop = stop.child_token();
        let task = Reloader {
            cert: cert.to_owned(),
            key: key.to_owned(),
            interval,
            seen: digest(&cert_pem, &key_pem),
            unreadable: None,
            current: current.clone(),
            status: status_tx,
        };
        let handle = runtime.spawn(task.run(stop.clone()));
        Ok((
            Self {
                current,
                status,
                _stop: stop.drop_guard(),
            },
            handle,
        ))
    }

    /// The certificate to present: the latest pair that loaded.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.load_full()
    }

    /// The reload task's progress, for waiting on a check or a reload.
    #[cfg(test)]
    fn status(&self) -> watch::Receiver<ReloadStatus> {
        self.status.clone()
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// The background half of [`ReloadingCert`].
struct Reloader {
    cert: PathBuf,
    key: PathBuf,
    interval: Duration,
    /// Digest of the contents last loaded or refused: unchanged files are
    /// neither parsed nor logged again.
    seen: [u8; 32],
    /// The last read error logged, so that a missing file is logged once.
    unreadable: Option<String>,
    current: Arc<ArcSwap<CertifiedKey>>,
    status: watch::Sender<ReloadStatus>,
}

impl Reloader {
    async fn run(mut self, stop: CancellationToken) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first tick is immediate, and the pair was just loaded.
        ticker.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticker.tick() => {}
            }
            let outcome = self.check().await;
            self.status.send_modify(|s| {
                s.checks += 1;
                match outcome {
                    Outcome::Unchanged => {}
                    Outcome::Reloaded => s.reloads += 1,
                    Outcome::Refused => s.failures += 1,
                }
            });
        }
    }

    async fn check(&mut self) -> Outcome {
        let read = |path: PathBuf| async move {
            tokio::fs::read(&path)
                .await
                .map_err(|source| TlsError::Read { path, source })
        };
        let files = match (read(self.cert.clone()).await, read(self.key.clone()).await) {
            (Ok(cert), Ok(key)) => Ok((cert, key)),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        let (cert_pem, key_pem) = match files {
            Ok(files) => {
                self.unreadable = None;
                files
            }
            Err(error) => {
                let text = error.to_string();
                if self.unreadable.as_ref() == Some(&text) {
                    return Outcome::Unchanged;
                }
                tracing::warn!(%error, "TLS certificate files unreadable; keeping the previous certificate");
                self.unreadable = Some(text);
                return Outcome::Refused;
            }
        };
        let now = digest(&cert_pem, &key_pem);
        if now == self.seen {
            return Outcome::Unchanged;
        }
        self.seen = now;
        match parse_pair(&self.cert, &cert_pem, &self.key, &key_pem) {
            Ok(pair) => {
                self.current.store(Arc::new(pair));
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                Outcome::Reloaded
            }
            Err(error) => {
                tracing::warn!(%error, "TLS certificate changed but does not load; keeping the previous one");
                Outcome::Refused
            }
        }
    }
}

enum Outcome {
    Unchanged,
    Reloaded,
    Refused,
}

/// A rustls server configuration (h2 and HTTP/1.1 by ALPN) serving the
/// reloading certificate. Its reload task stops when `stop` (the app's
/// shutdown token) is cancelled or the configuration is dropped; the handle
/// tells when it has ended. Call from within a Tokio runtime.
pub fn reloading_server_config(
    cert: &Path,
    key: &Path,
    interval: Duration,
    stop: CancellationToken,
) -> Result<(ServerConfig, JoinHandle<()>), TlsError> {
    let (resolver, task) = ReloadingCert::spawn(cert, key, interval, stop)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh self-signed pair for `localhost` in `dir`: (cert, key) paths.
    fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        std::fs::write(&cert, certified.cert.pem()).unwrap();
        std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
        (cert, key)
    }

    /// Replaces `dst` with a copy of `src` atomically (write, then rename,
    /// as the kubelet updates a Secret volume), so that the task never reads
    /// a half-written file.
    fn install(src: &Path, dst: &Path) {
        let tmp = dst.with_extension("tmp");
        std::fs::copy(src, &tmp).unwrap();
        std::fs::rename(&tmp, dst).unwrap();
    }

    fn der(pair: &CertifiedKey) -> Vec<u8> {
        pair.cert[0].as_ref().to_vec()
    }

    /// Waits (generously) until the task's status satisfies `done`.
    async fn wait_status(
        r: &ReloadingCert,
        what: &str,
        done: impl FnMut(&ReloadStatus) -> bool,
    ) -> ReloadStatus {
        let mut rx = r.status();
        let waited = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(done))
            .await
            .map(|s| s.map(|s| *s));
        match waited {
            Ok(Ok(s)) => s,
            Ok(Err(_)) => panic!("the reload task ended while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}: {:?}", *r.status().borrow()),
        }
    }

    /// Waits for two more completed checks: one that may have started
    /// before the files were written, and one that surely started after.
    async fn two_more_checks(r: &ReloadingCert) -> ReloadStatus {
        let start = r.status().borrow().checks;
        wait_status(r, "two more checks", |s| s.checks >= start + 2).await
    }

    #[tokio::test]
    async fn reloads_in_the_background_and_keeps_the_old_pair_when_the_new_one_is_broken() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (c1, k1) = self_signed(dir, "one");
        let (c2, k2) = self_signed(dir, "two");
        let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
        install(&c1, &cert);
        install(&k1, &key);
        let (r, _task) = ReloadingCert::spawn(
            &cert,
            &key,
            Duration::from_millis(10),
            CancellationToken::new(),
        )
        .unwrap();
        let first = der(&r.current());
        assert_eq!(first, der(&load_pair(&c1, &k1).unwrap()));

        // Half-rotated: new cert, old key: refused once, old pair kept.
        install(&c2, &cert);
        let s = wait_status(&r, "the refusal", |s| s.failures == 1).await;
        assert_eq!(s.reloads, 0);
        assert_eq!(der(&r.current()), first);
        // The same broken pair is neither retried nor logged again.
        let s = two_more_checks(&r).await;
        assert_eq!((s.failures, s.reloads), (1, 0));

        // Rotation completes: the new pair is served.
        install(&k2, &key);
        wait_status(&r, "the reload", |s| s.reloads == 1).await;
        let second = der(&r.current());
        assert_eq!(second, der(&load_pair(&c2, &k2).unwrap()));
        assert_ne!(first, second);

        // Files gone: logged once, the last good pair still served.
        std::fs::remove_file(&cert).unwrap();
        wait_status(&r, "the unreadable files", |s| s.failures == 2).await;
        let s = two_more_checks(&r).await;
        assert_eq!(s.failures, 2);
        assert_eq!(der(&r.current()), second);

        // Back, with the first pair again: reloaded.
        install(&c1, &cert);
        install(&k1, &key);
        wait_status(&r, "the second reload", |s| s.reloads == 2).await;
        assert_eq!(der(&r.current()), first);
    }

    #[tokio::test]
    async fn the_task_stops_on_cancel_and_when_the_resolver_is_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(tmp.path(), "one");
        let deadline = Duration::from_secs(20);

        let shutdown = CancellationToken::new();
        let (r, task) =
            ReloadingCert::spawn(&cert, &key, Duration::from_secs(3600), shutdown.clone()).unwrap();
        shutdown.cancel();
        tokio::time::timeout(deadline, task)
            .await
            .expect("the task stops on cancel")
            .unwrap();
        // The resolver keeps serving what it has.
        assert_eq!(der(&r.current()), der(&load_pair(&cert, &key).unwrap()));

        let (r, task) = ReloadingCert::spawn(
            &cert,
            &key,
            Duration::from_secs(3600),
            CancellationToken::new(),
        )
        .unwrap();
        drop(r);
        tokio::time::timeout(deadline, task)
            .await
            .expect("the task stops with its resolver")
            .unwrap();
    }

    #[tokio::test]
    async fn the_server_config_s_task_ends_with_the_config_or_on_shutdown() {
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(tmp.path(), "one");
        let deadline = Duration::from_secs(20);
        let hour = Duration::from_secs(3600);

        let (config, task) =
            reloading_server_config(&cert, &key, hour, CancellationToken::new()).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        // The server holds the config in an Arc (its TlsAcceptor).
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        assert!(!task.is_finished());
        drop(acceptor);
        tokio::time::timeout(deadline, task)
            .await
            .expect("the task ends with the config")
            .unwrap();

        let shutdown = CancellationToken::new();
        let (_config, task) = reloading_server_config(&cert, &key, hour, shutdown.clone()).unwrap();
        shutdown.cancel();
        tokio::time::timeout(deadline, task)
            .await
            .expect("the task ends on shutdown")
            .unwrap();
    }

    #[tokio::test]
    async fn bad_files_are_refused_at_start() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let (c1, k1) = self_signed(dir, "one");
        let (_, k2) = self_signed(dir, "two");
        let spawn = |cert: &Path, key: &Path| {
            ReloadingCert::spawn(cert, key, DEFAULT_CHECK_INTERVAL, CancellationToken::new())
                .map(|_| ())
                .unwrap_err()
        };
        let err = spawn(&dir.join("missing"), &k1);
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        let err = spawn(&k1, &k1);
        assert!(matches!(err, TlsError::NoCertificate(_)), "{err}");
        let err = spawn(&c1, &c1);
        assert!(matches!(err, TlsError::NoKey(_)), "{err}");
        let err = spawn(&c1, &k2);
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
        let garbled = dir.join("garbled.key");
        std::fs::write(
            &garbled,
            "-----BEGIN PRIVATE KEY-----\n!!!!\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let err = spawn(&c1, &garbled);
        assert!(matches!(err, TlsError::KeyPem(_)), "{err}");
        assert!(!err.to_string().contains("!!!!"), "{err}");
        assert!(reloading_server_config(
            &c1,
            &k1,
            DEFAULT_CHECK_INTERVAL,
            CancellationToken::new()
        )
        .is_ok());
    }

    #[test]
    fn the_reload_task_needs_a_runtime() {
        let tmp = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(tmp.path(), "one");
        let err = reloading_server_config(
            &cert,
            &key,
            DEFAULT_CHECK_INTERVAL,
            CancellationToken::new(),
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::NoRuntime), "{err}");
    }
}
