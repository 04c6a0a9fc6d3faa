//! Verifying sponsor tokens: OIDC JWTs from trusted issuers (GitLab CI
//! `id_tokens`, GitHub Actions, any issuer with a JWKS).
//!
//! Each issuer's keys are fetched from its `jwks_uri` (configured, or
//! discovered from `/.well-known/openid-configuration`), cached, and
//! re-fetched when a token names a key id the cache lacks (at most once per
//! `MIN_REFRESH`, so a flood of bogus key ids cannot hammer the issuer).
//! Verified tokens are cached by digest until they expire. The checks: the
//! algorithm is on the issuer's allow-list (never `none` or a shared-secret
//! HMAC), the signature verifies, `iss` is exactly a trusted issuer, `aud`
//! includes the configured audience, `exp`/`nbf` hold within the leeway.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::record::{SponsorEvidence, Timestamp, digest_of};

/// Keys are re-fetched at least this often...
const JWKS_TTL: Duration = Duration::from_secs(15 * 60);
/// ...and at most this often, even for unknown key ids (rotation is picked
/// up within this; a flood of made-up key ids costs one fetch per interval).
const MIN_REFRESH: Duration = Duration::from_secs(2);
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_CACHED_TOKENS: usize = 10_000;

/// Algorithms accepted unless an issuer says otherwise: asymmetric only.
pub const DEFAULT_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// One trusted issuer.
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    /// Exactly as the tokens' `iss` claim says it.
    pub issuer: String,
    /// The token's `aud` must include one of these.
    pub audiences: Vec<String>,
    /// Skips discovery when set.
    pub jwks_uri: Option<String>,
    /// Claims to take the sponsor from, first present wins.
    pub sponsor_claims: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub ca_file: Option<PathBuf>,
}

impl IssuerConfig {
    /// The sponsor claims an issuer's tokens usually carry.
    pub fn default_claims(issuer: &str) -> Vec<String> {
        let list: &[&str] = if issuer.contains("token.actions.githubusercontent.com") {
            &["actor"]
        } else if issuer.contains("gitlab") {
            &["user_login", "user_email"]
        } else {
            &["email", "preferred_username", "user_login", "actor", "sub"]
        };
        list.iter().map(|s| (*s).to_owned()).collect()
    }
}

/// Claims worth keeping on the execution, from the CI systems' tokens.
const KEPT_CLAIMS: &[&str] = &[
    "project_path",
    "namespace_path",
    "repository",
    "repository_owner",
    "ref",
    "ref_type",
    "sha",
    "pipeline_id",
    "pipeline_source",
    "job_id",
    "run_id",
    "run_attempt",
    "workflow",
    "job_workflow_ref",
    "head_ref",
    "base_ref",
    "event_name",
    "environment",
    "user_login",
    "user_email",
    "actor",
];

/// A verified token.
#[derive(Debug, Clone)]
pub struct Verified {
    pub sponsor: String,
    pub evidence: SponsorEvidence,
    /// All claims, for correlation.
    pub claims: Map<String, Value>,
    expires: SystemTime,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not a JWT ({0})")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not allowed for its issuer")]
    Algorithm(String),
    #[error("the token's issuer {0:?} is not a trusted issuer")]
    UntrustedIssuer(String),
    #[error("the issuer's keys could not be fetched: {0}")]
    Jwks(String),
    #[error("no key {0:?} in the issuer's JWKS")]
    UnknownKey(String),
    #[error("the token is invalid: {0}")]
    Invalid(String),
    #[error("none of the sponsor claims ({0}) is in the token")]
    NoSponsorClaim(String),
}

struct Keys {
    set: JwkSet,
    fetched: Instant,
    jwks_uri: String,
}

pub struct Verifier {
    issuers: Vec<IssuerConfig>,
    leeway: Duration,
    clients: Vec<Client<HttpsConnector<HttpConnector>, Empty<Bytes>>>,
    keys: tokio::sync::Mutex<HashMap<String, Keys>>,
    tokens: Mutex<HashMap<String, Verified>>,
}

impl Verifier {
    pub fn new(
        issuers: Vec<IssuerConfig>,
        leeway: Duration,
    ) -> Result<Self, crate::tls::TlsSetupError> {
        let clients = issuers
            .iter()
            .map(|i| {
                let tls = crate::tls::client_config(i.ca_file.as_deref(), None)?;
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_connect_timeout(Some(FETCH_TIMEOUT));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                Ok(Client::builder(TokioExecutor::new()).build(https))
            })
            .collect::<Result<_, crate::tls::TlsSetupError>>()?;
        Ok(Self {
            issuers,
            leeway,
            clients,
            keys: tokio::sync::Mutex::new(HashMap::new()),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    pub fn has_issuers(&self) -> bool {
        !self.issuers.is_empty()
    }

    pub async fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let digest = digest_of(token.as_bytes());
        if let Some(v) = self.cached(&digest) {
            return Ok(v);
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let (index, issuer) = self.issuer_of(token)?;
        if !issuer.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let kid = header.kid.clone().unwrap_or_default();
        let (key, jwks_uri) = self.key(index, &kid).await?;
        let mut validation = Validation::new(header.alg);
        // The header's algorithm is on the allow-list (checked above); jsonwebtoken wants
        // only algorithms of the key's family here.
        validation.algorithms = vec![header.alg];
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&issuer.audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = self.leeway.as_secs();
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| TokenError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let (sponsor_claim, sponsor) = issuer
            .sponsor_claims
            .iter()
            .find_map(|c| {
                claims
                    .get(c)
                    .and_then(Value::as_str)
                    .filter(|v| !v.is_empty())
                    .map(|v| (c.clone(), v.to_owned()))
            })
            .ok_or_else(|| TokenError::NoSponsorClaim(issuer.sponsor_claims.join(", ")))?;
        let time = |name: &str| {
            claims.get(name).and_then(Value::as_u64).map(|s| Timestamp {
                seconds: s as i64,
                nanos: 0,
            })
        };
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let kept = KEPT_CLAIMS
            .iter()
            .filter_map(|k| {
                let v = claims.get(*k)?;
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                Some(((*k).to_owned(), text))
            })
            .collect();
        let expires = claims
            .get("exp")
            .and_then(Value::as_u64)
            .map_or(UNIX_EPOCH, |s| UNIX_EPOCH + Duration::from_secs(s));
        let verified = Verified {
            sponsor,
            evidence: SponsorEvidence {
                issuer: issuer.issuer.clone(),
                subject: claims
                    .get("sub")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                audience,
                key_id: kid,
                algorithm: format!("{:?}", header.alg),
                token_digest: digest.clone(),
                issued_at: time("iat"),
                expires_at: time("exp"),
                sponsor_claim,
                claims: kept,
                jwks_uri,
            },
            claims,
            expires,
        };
        self.remember(digest, verified.clone());
        Ok(verified)
    }

    fn cached(&self, digest: &str) -> Option<Verified> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(digest)
            .filter(|v| v.expires + self.leeway > SystemTime::now())
            .cloned()
    }

    fn remember(&self, digest: String, v: Verified) {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_CACHED_TOKENS {
            let now = SystemTime::now();
            tokens.retain(|_, t| t.expires > now);
            if tokens.len() >= MAX_CACHED_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(digest, v);
    }

    /// The trusted issuer a token claims to be from (unverified until the signature checks).
    fn issuer_of(&self, token: &str) -> Result<(usize, &IssuerConfig), TokenError> {
        use base64::Engine as _;
        let payload = token
            .split('.')
            .nth(1)
            .ok_or_else(|| TokenError::Malformed("no payload".into()))?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| TokenError::Malformed(e.to_string()))?;
        let claims: Map<String, Value> =
            serde_json::from_slice(&bytes).map_err(|e| TokenError::Malformed(e.to_string()))?;
        let iss = claims
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, i)| i.issuer == iss)
            .ok_or_else(|| TokenError::UntrustedIssuer(iss.to_owned()))
    }

    /// The decoding key for `kid`, fetching the issuer's JWKS if needed.
    async fn key(&self, index: usize, kid: &str) -> Result<(DecodingKey, String), TokenError> {
        let issuer = &self.issuers[index];
        let mut keys = self.keys.lock().await;
        let stale = keys.get(&issuer.issuer).is_none_or(|k| {
            k.fetched.elapsed() > JWKS_TTL
                || (find(&k.set, kid).is_none() && k.fetched.elapsed() > MIN_REFRESH)
        });
        if stale {
            match self.fetch(index).await {
                Ok(fresh) => {
                    keys.insert(issuer.issuer.clone(), fresh);
                }
                // Keep using what we had if the issuer is briefly unreachable.
                Err(e) if !keys.contains_key(&issuer.issuer) => return Err(e),
                Err(e) => {
                    tracing::warn!(issuer = %issuer.issuer, error = %e, "could not refresh the issuer's keys; using the cached ones")
                }
            }
        }
        let cached = keys.get(&issuer.issuer).expect("fetched or returned above");
        let jwk = find(&cached.set, kid).ok_or_else(|| TokenError::UnknownKey(kid.to_owned()))?;
        let key = DecodingKey::from_jwk(jwk)
            .map_err(|e| TokenError::Invalid(format!("key {kid:?}: {e}")))?;
        Ok((key, cached.jwks_uri.clone()))
    }

    async fn fetch(&self, index: usize) -> Result<Keys, TokenError> {
        let issuer = &self.issuers[index];
        let jwks_uri = match &issuer.jwks_uri {
            Some(u) => u.clone(),
            None => {
                let url = format!(
                    "{}/.well-known/openid-configuration",
                    issuer.issuer.trim_end_matches('/')
                );
                let doc = self.get_json(index, &url).await?;
                doc.get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| TokenError::Jwks(format!("{url} names no jwks_uri")))?
                    .to_owned()
            }
        };
        let set: JwkSet = serde_json::from_value(self.get_json(index, &jwks_uri).await?)
            .map_err(|e| TokenError::Jwks(format!("{jwks_uri}: {e}")))?;
        tracing::debug!(issuer = %issuer.issuer, keys = set.keys.len(), "fetched the issuer's keys");
        Ok(Keys {
            set,
            fetched: Instant::now(),
            jwks_uri,
        })
    }

    async fn get_json(&self, index: usize, url: &str) -> Result<Value, TokenError> {
        let err = |e: String| TokenError::Jwks(format!("{url}: {e}"));
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
        let req = http::Request::get(uri)
            .header(http::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| err(e.to_string()))?;
        let resp = tokio::time::timeout(FETCH_TIMEOUT, self.clients[index].request(req))
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(err(format!("HTTP {}", resp.status())));
        }
        let body = tokio::time::timeout(FETCH_TIMEOUT, resp.into_body().collect())
            .await
            .map_err(|_| err("timed out".into()))?
            .map_err(|e| err(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| err(e.to_string()))
    }
}

fn find<'a>(set: &'a JwkSet, kid: &str) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    if kid.is_empty() && set.keys.len() == 1 {
        return set.keys.first();
    }
    set.find(kid)
}

/// Parses an algorithm name from config.
pub fn algorithm(name: &str) -> Result<Algorithm, String> {
    let alg: Algorithm = name
        .parse()
        .map_err(|_| format!("unknown algorithm {name:?}"))?;
    if matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) {
        return Err(format!(
            "{name} uses a shared secret; only public-key algorithms can be verified against a JWKS"
        ));
    }
    Ok(alg)
}
