//! sidetrace's own certificate authority, for HTTPS_PROXY mode: after a
//! `CONNECT host:443`, the proxy terminates the agent's TLS with a leaf for
//! `host` signed by this CA (which the agent has been told to trust), records
//! the exchange, and talks to the real host with the ordinary upstream client.
//!
//! Guarantees: the CA is one ECDSA P-256 key (`ca-key.pem`, PKCS#8, 0600)
//! and one self-signed certificate (`ca-cert.pem`) in one directory (0700 if
//! sidetrace creates it). `load_or_create` loads both, or creates both, or
//! fails saying which file is wrong and what to do; it never overwrites a
//! file and never leaves half a key (see `store`). A loaded CA is checked by
//! issuing and verifying a throwaway leaf, so an expired CA, a certificate
//! that is not a CA, or a key that does not match fails at start, not at the
//! first handshake. The key never leaves the process; only certificates do.
//! Bounds: leaves live 30 days (the CA ten years); at most 1000 hosts' leaves
//! are cached (`resolver`). Failure: `CaError`, whose messages say what to do.
//!
//! rcgen builds and signs every certificate; rustls (ring) serves them.

mod bundle;
mod issuer;
mod resolver;
mod store;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{Issuer, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sha2::{Digest as _, Sha256};

pub use bundle::Bundle;
use issuer::LeafName;
use resolver::Leaves;
pub use store::CERT_FILE;
use store::{Found, KEY_FILE, Published};

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{present} exists but {missing} does not. If you have not trusted this CA anywhere yet, \
delete {present} and run `sidetrace ca init` to create a new CA; otherwise restore {missing}"
    )]
    Incomplete { present: String, missing: String },
    #[error(
        "{path} is not a usable private key ({reason}); it must be an unencrypted PKCS#8 PEM key \
(\"-----BEGIN PRIVATE KEY-----\"; convert with `openssl pkcs8 -topk8 -nocrypt`), or delete both CA files \
to have a new CA created"
    )]
    Key { path: String, reason: String },
    #[error(
        "{path} is not a usable CA certificate ({reason}); it must hold exactly one PEM certificate, \
the one issued for ca-key.pem, or delete both CA files to have a new CA created"
    )]
    Cert { path: String, reason: String },
    #[error(
        "{key} and {cert} do not belong together (the certificate is for a different key); restore \
the matching pair, or delete both to have a new CA created (and trust the new certificate)"
    )]
    Mismatch { key: String, cert: String },
    #[error(
        "the CA in {dir} cannot be used: {reason}. Delete ca-key.pem and ca-cert.pem there and run \
`sidetrace ca init` to create a new CA, then trust the new certificate"
    )]
    Unusable { dir: String, reason: String },
    #[error(
        "{dir}: another process was creating the CA at the same time and its files did not appear \
complete; run the command again"
    )]
    Contended { dir: String },
    #[error("cannot issue a certificate for {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("generating a certificate: {0}")]
    Generate(#[source] rcgen::Error),
    #[error("TLS setup: {0}")]
    Rustls(#[source] rustls::Error),
    #[error(
        "no system root certificates could be loaded ({0}). A bundle without them would make every \
connection sidetrace does not intercept fail. Install the system's CA certificates (e.g. the \
ca-certificates package) or point SSL_CERT_FILE / SSL_CERT_DIR at them; a tool that adds extra CAs to \
its own roots (NODE_EXTRA_CA_CERTS) only needs `sidetrace ca cert`"
    )]
    NoSystemRoots(String),
}

impl CaError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// sidetrace's certificate authority: its certificate, its signing key (held
/// in memory, never exposed) and the per-host leaf cache.
pub struct Authority {
    dir: PathBuf,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaves: Arc<Leaves>,
    /// Built once; per-connection configs are cheap clones of it that share
    /// its TLS session cache.
    base: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("dir", &self.dir)
            .field("fingerprint", &self.fingerprint_sha256())
            .finish_non_exhaustive()
    }
}

/// How long to wait for another process that is creating the same CA.
const CREATE_WAIT: std::time::Duration = std::time::Duration::from_millis(20);
const CREATE_TRIES: u32 = 50;

impl Authority {
    /// `$XDG_DATA_HOME/sidetrace/ca`: beside the default journal.
    pub fn default_dir() -> PathBuf {
        let journal = crate::journal::default_path();
        journal
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default()
            .join("ca")
    }

    /// Loads the CA in `dir`, or creates it if neither file exists.
    /// Returns whether it was created (callers say so: the new certificate
    /// must be trusted before interception works). Blocking: file I/O, key
    /// generation, and up to a second's wait if another process is creating
    /// the same CA; from async code, call it under `spawn_blocking`.
    pub fn load_or_create(dir: &Path) -> Result<(Authority, bool), CaError> {
        for attempt in 1..=CREATE_TRIES {
            match store::read(dir)? {
                Found::Both { key, cert } => {
                    return Ok((Self::from_files(dir, &key, &cert)?, false));
                }
                Found::Neither => {
                    if let Some(created) = Self::create(dir)? {
                        return Ok((created, true));
                    }
                }
                // Possibly another process between writing the key and the
                // certificate: give it a moment before calling it broken.
                Found::One(present, missing) if attempt == CREATE_TRIES => {
                    return Err(CaError::Incomplete {
                        present: present.display().to_string(),
                        missing: missing.display().to_string(),
                    });
                }
                Found::One(..) => {}
            }
            std::thread::sleep(CREATE_WAIT);
        }
        Err(CaError::Contended {
            dir: dir.display().to_string(),
        })
    }

    /// Loads the CA in `dir`; never creates one.
    pub fn load(dir: &Path) -> Result<Authority, CaError> {
        match store::read(dir)? {
            Found::Both { key, cert } => Self::from_files(dir, &key, &cert),
            Found::Neither => Err(CaError::io(
                &dir.join(KEY_FILE),
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no CA here; create one with `sidetrace ca init`",
                ),
            )),
            Found::One(present, missing) => Err(CaError::Incomplete {
                present: present.display().to_string(),
                missing: missing.display().to_string(),
            }),
        }
    }

    /// The directory holding the CA's files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the CA certificate is (the file to hand to tools, e.g.
    /// `NODE_EXTRA_CA_CERTS`).
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// SHA-256 of the certificate's DER, as `AB:CD:...` (what `openssl x509
    /// -fingerprint -sha256` and browsers show).
    pub fn fingerprint_sha256(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A server config that issues leaves by SNI. A client that sends no
    /// SNI is refused; the CONNECT handler should prefer `server_config_for`.
    /// Ring, TLS 1.3 + 1.2, ALPN "h2" then "http/1.1".
    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        self.base.clone()
    }

    /// The server config for one intercepted connection to `host` (the
    /// CONNECT target, without its port; `[::1]` and `::1` both work): leaves
    /// by SNI, and for `host` when the client sends none (clients send no SNI
    /// for IP addresses). Cheap: a clone of the shared config, sharing its
    /// session cache. Errors if `host` is neither a DNS name nor an IP.
    pub fn server_config_for(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, CaError> {
        let name = LeafName::parse(host)?;
        Ok(Arc::new(resolver::config_with_fallback(
            &self.base,
            self.leaves.clone(),
            name,
        )))
    }

    /// The leaf (certificate + key) served for `host`, issuing it if it is
    /// not cached. Handshakes do this themselves, inside rustls's resolver
    /// (a key generation and a signature, well under a millisecond, once per
    /// host per 20 days); call it only to issue ahead of a handshake.
    pub fn certified_key_for(&self, host: &str) -> Result<Arc<CertifiedKey>, CaError> {
        self.leaves.get(&LeafName::parse(host)?)
    }

    /// The system roots plus this CA as one PEM bundle.
    pub fn bundle(&self) -> Result<Bundle, CaError> {
        bundle::build(&self.cert_der, &self.fingerprint_sha256())
    }

    /// Creates a new CA in `dir`; `None` if another process got there first.
    fn create(dir: &Path) -> Result<Option<Authority>, CaError> {
        store::create_dir(dir)?;
        let key = issuer::new_key()?;
        let cert = issuer::ca_params(time::OffsetDateTime::now_utc())
            .self_signed(&key)
            .map_err(CaError::Generate)?;
        let cert_pem = bundle::encode_certificate(cert.der());
        if store::publish_new(dir, KEY_FILE, key.serialize_pem().as_bytes(), 0o600)?
            == Published::AlreadyExists
        {
            return Ok(None);
        }
        if store::publish_new(dir, CERT_FILE, cert_pem.as_bytes(), 0o644)?
            == Published::AlreadyExists
        {
            // A certificate appeared that is not for our key: take our key
            // back and let the caller see what is there.
            store::remove(&dir.join(KEY_FILE))?;
            return Ok(None);
        }
        tracing::debug!(dir = %dir.display(), "created the sidetrace CA");
        let der = cert.der().clone();
        Self::assemble(dir, key, der, cert_pem, false).map(Some)
    }

    fn from_files(dir: &Path, key_pem: &str, cert_pem: &str) -> Result<Authority, CaError> {
        let key_path = dir.join(KEY_FILE);
        let cert_path = dir.join(CERT_FILE);
        let key = KeyPair::from_pem(key_pem).map_err(|e| CaError::Key {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let cert_err = |reason: String| CaError::Cert {
            path: cert_path.display().to_string(),
            reason,
        };
        let der = single_certificate(cert_pem).map_err(cert_err)?;
        let pem = bundle::encode_certificate(&der);
        Self::assemble(dir, key, der, pem, true)
    }

    /// Builds the authority from a key and its certificate; `check` verifies
    /// they match and can issue leaves a client accepts.
    fn assemble(
        dir: &Path,
        key: KeyPair,
        der: CertificateDer<'static>,
        pem: String,
        check: bool,
    ) -> Result<Authority, CaError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cert_err = |reason: String| CaError::Cert {
            path: dir.join(CERT_FILE).display().to_string(),
            reason,
        };
        if check {
            let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
            match CertifiedKey::from_der(vec![der.clone()], key_der, &provider) {
                Ok(_) => {}
                Err(rustls::Error::InconsistentKeys(_)) => {
                    return Err(CaError::Mismatch {
                        key: dir.join(KEY_FILE).display().to_string(),
                        cert: dir.join(CERT_FILE).display().to_string(),
                    });
                }
                Err(e) => return Err(cert_err(e.to_string())),
            }
        }
        let issuer = Issuer::from_ca_cert_der(&der, key).map_err(|e| cert_err(e.to_string()))?;
        if check {
            let unusable = |reason: String| CaError::Unusable {
                dir: dir.display().to_string(),
                reason,
            };
            if let Some(warning) =
                issuer::check_issues_trusted_leaves(&issuer, &der, &provider).map_err(unusable)?
            {
                tracing::warn!(dir = %dir.display(), "the sidetrace CA expires soon: {warning}; delete its files and run `sidetrace ca init`, then trust the new certificate");
            }
        }
        Self::with_capacity(dir, issuer, der, pem, provider, resolver::CACHE_CAPACITY)
    }

    fn with_capacity(
        dir: &Path,
        issuer: Issuer<'static, KeyPair>,
        der: CertificateDer<'static>,
        pem: String,
        provider: Arc<CryptoProvider>,
        capacity: usize,
    ) -> Result<Authority, CaError> {
        let leaves = Arc::new(Leaves::new(issuer, provider.clone(), capacity));
        let base = Arc::new(resolver::base_config(leaves.clone(), provider)?);
        Ok(Authority {
            dir: dir.to_path_buf(),
            cert_pem: pem,
            cert_der: der,
            leaves,
            base,
        })
    }
}

/// The one certificate a PEM file holds.
fn single_certificate(pem: &str) -> Result<CertificateDer<'static>, String> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    <[_; 1]>::try_from(certs)
        .map(|[der]| der)
        .map_err(|c| format!("it holds {} certificates", c.len()))
}

/// SHA-256 of a certificate's DER, as `AB:CD:...`.
fn fingerprint(der: &CertificateDer<'_>) -> String {
    let digest = Sha256::digest(der.as_ref());
    let hex = hex::encode_upper(digest.as_slice());
    let pairs: Vec<&str> = (0..hex.len()).step_by(2).map(|i| &hex[i..i + 2]).collect();
    pairs.join(":")
}

/// The CA's certificate alone: what a client needs to trust it. Reading it
/// never touches the private key, so a process that only points agents at
/// a proxy (`sidetrace run --proxy`, a bundle init container) needs no
/// access to the key.
pub struct TrustAnchor {
    path: PathBuf,
    pem: String,
    der: CertificateDer<'static>,
}

impl TrustAnchor {
    /// The certificate of the CA in `dir`.
    pub fn load(dir: &Path) -> Result<Self, CaError> {
        let path = dir.join(CERT_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| CaError::io(&path, e))?;
        let der = single_certificate(&text).map_err(|reason| CaError::Cert {
            path: path.display().to_string(),
            reason,
        })?;
        Ok(Self {
            pem: bundle::encode_certificate(&der),
            path,
            der,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn fingerprint_sha256(&self) -> String {
        fingerprint(&self.der)
    }

    /// The system roots plus this CA as one PEM bundle.
    pub fn bundle(&self) -> Result<Bundle, CaError> {
        bundle::build(&self.der, &self.fingerprint_sha256())
    }
}
