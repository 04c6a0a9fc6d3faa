//! Leaf certificates on demand, for rustls's certificate resolver.
//!
//! Guarantees: a handshake for host H is served a leaf for H (the SNI name,
//! or the connection's fallback host when the client sends no SNI) signed by
//! the CA, never one past its renewal point (leaves are re-issued once less
//! than a third of their 30 days remain, or if the clock moved before their
//! start). Bounds: at most `capacity` hosts are cached (1000 in production);
//! inserting one more evicts the least recently used (an O(capacity) scan,
//! paid only when a new leaf was just signed). The mutex is held only to look
//! up or insert, never while generating a key or signing; two handshakes
//! racing for a new host may both sign, and the first insert wins.
//! Failure: a leaf that cannot be issued fails that one handshake (rustls
//! sends an alert; a warning is logged); other hosts are unaffected.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rcgen::{Issuer, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

use super::CaError;
use super::issuer::{self, BACKDATE, LEAF_VALIDITY, LeafName};

/// How many hosts' leaves the production cache keeps.
pub(super) const CACHE_CAPACITY: usize = 1000;
/// A cached leaf is re-issued once it has this little validity left.
const RENEW_BEFORE_EXPIRY: Duration = Duration::days(10);

/// The CA's signing side: issues leaves and caches them per host.
pub(super) struct Leaves {
    issuer: Issuer<'static, KeyPair>,
    provider: Arc<CryptoProvider>,
    capacity: usize,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Entry>,
    /// Incremented on every use; an entry's `last_used` orders evictions.
    clock: u64,
}

struct Entry {
    key: Arc<CertifiedKey>,
    /// The leaf's notBefore: before it the cached leaf is useless.
    valid_from: OffsetDateTime,
    renew_at: OffsetDateTime,
    last_used: u64,
}

impl Entry {
    fn fresh(&self, now: OffsetDateTime) -> bool {
        self.valid_from <= now && now < self.renew_at
    }
}

impl Leaves {
    pub(super) fn new(
        issuer: Issuer<'static, KeyPair>,
        provider: Arc<CryptoProvider>,
        capacity: usize,
    ) -> Self {
        Self {
            issuer,
            provider,
            capacity: capacity.max(1),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The leaf for `name`, from the cache or newly issued.
    pub(super) fn get(&self, name: &LeafName) -> Result<Arc<CertifiedKey>, CaError> {
        let host = name.as_string();
        let now = OffsetDateTime::now_utc();
        if let Some(key) = self.lookup(&host, now) {
            return Ok(key);
        }
        let key = self.issue(name, now)?;
        tracing::debug!(host = %host, "issued an interception certificate");
        Ok(self.insert(host, key, now))
    }

    /// How many hosts are cached (for tests and metrics).
    pub(super) fn cached(&self) -> usize {
        self.lock().entries.len()
    }

    fn issue(&self, name: &LeafName, now: OffsetDateTime) -> Result<Arc<CertifiedKey>, CaError> {
        let (cert, key) = issuer::issue_leaf(&self.issuer, name, now)?;
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing_key = self
            .provider
            .key_provider
            .load_private_key(der)
            .map_err(CaError::Rustls)?;
        Ok(Arc::new(CertifiedKey::new(vec![cert], signing_key)))
    }

    fn lookup(&self, host: &str, now: OffsetDateTime) -> Option<Arc<CertifiedKey>> {
        let mut cache = self.lock();
        cache.clock += 1;
        let clock = cache.clock;
        let entry = cache.entries.get_mut(host)?;
        if !entry.fresh(now) {
            return None;
        }
        entry.last_used = clock;
        Some(entry.key.clone())
    }

    /// Caches `key` for `host` unless a fresh one got there first (then
    /// returns that one), evicting the least recently used host if full.
    fn insert(
        &self,
        host: String,
        key: Arc<CertifiedKey>,
        now: OffsetDateTime,
    ) -> Arc<CertifiedKey> {
        let mut cache = self.lock();
        cache.clock += 1;
        let clock = cache.clock;
        if let Some(existing) = cache.entries.get_mut(&host)
            && existing.fresh(now)
        {
            existing.last_used = clock;
            return existing.key.clone();
        }
        if !cache.entries.contains_key(&host) && cache.entries.len() >= self.capacity {
            let oldest = cache
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(h, _)| h.clone());
            if let Some(oldest) = oldest {
                cache.entries.remove(&oldest);
            }
        }
        let entry = Entry {
            key: key.clone(),
            valid_from: now - BACKDATE,
            renew_at: now + LEAF_VALIDITY - RENEW_BEFORE_EXPIRY,
            last_used: clock,
        };
        cache.entries.insert(host, entry);
        key
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Leaves {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaves")
            .field("capacity", &self.capacity)
            .field("cached", &self.cached())
            .finish_non_exhaustive()
    }
}

/// rustls's hook: picks the leaf by SNI, else by the connection's fallback.
#[derive(Debug)]
pub(super) struct Resolver {
    pub(super) leaves: Arc<Leaves>,
    pub(super) fallback: Option<LeafName>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let name = match hello.server_name() {
            Some(sni) => match LeafName::parse(sni) {
                Ok(name) => name,
                Err(e) => {
                    tracing::warn!(error = %e, "TLS interception: unusable SNI; handshake refused");
                    return None;
                }
            },
            None => match &self.fallback {
                Some(name) => name.clone(),
                None => {
                    tracing::warn!(
                        "TLS interception: the client sent no SNI and no fallback host was given; \
                         handshake refused (use Authority::server_config_for with the CONNECT host)"
                    );
                    return None;
                }
            },
        };
        match self.leaves.get(&name) {
            Ok(key) => Some(key),
            Err(e) => {
                tracing::warn!(host = %name.as_string(), error = %e, "TLS interception: could not issue a certificate; handshake refused");
                None
            }
        }
    }
}

/// The shared server configuration: ring, TLS 1.3 and 1.2, no client
/// certificates, ALPN "h2" then "http/1.1", leaves by SNI (no fallback).
pub(super) fn base_config(
    leaves: Arc<Leaves>,
    provider: Arc<CryptoProvider>,
) -> Result<rustls::ServerConfig, CaError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(CaError::Rustls)?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Resolver {
            leaves,
            fallback: None,
        }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `base` with a resolver that falls back to `host` when there is no SNI.
/// The clone shares the base's session cache, so resumption works across
/// connections.
pub(super) fn config_with_fallback(
    base: &rustls::ServerConfig,
    leaves: Arc<Leaves>,
    host: LeafName,
) -> rustls::ServerConfig {
    let mut config = base.clone();
    config.cert_resolver = Arc::new(Resolver {
        leaves,
        fallback: Some(host),
    });
    config
}
