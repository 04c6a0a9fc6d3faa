//! Who sponsors a request, how sure we are, and what work it belongs to.
//!
//! The sponsor is the strongest of: a verified OIDC token (per request in
//! `Sidetrace-Sponsor-Token`, or from `--sponsor-token-file`), the
//! operator's static sponsor (`--sponsor`, or `--sponsor-file` written by
//! the downward API), and — only if allowed — the agent's own
//! `Sidetrace-Sponsor` header. A request below `sponsor.require` is refused
//! before it reaches the upstream. Files are re-read when they change
//! (projected tokens rotate), checked with one `stat` per request.

pub mod correlation;
pub mod oidc;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use http::HeaderMap;

use crate::record::{Correlation, Sponsor, SponsorAssurance};

use correlation::{CiEnvironment, Configured};
use oidc::Verifier;

pub const HEADER_SPONSOR: &str = "sidetrace-sponsor";
pub const HEADER_SPONSOR_TOKEN: &str = "sidetrace-sponsor-token";

/// The least a request's sponsor must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Require {
    None,
    Any,
    Oidc,
}

impl std::str::FromStr for Require {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Self::None),
            "any" => Ok(Self::Any),
            "oidc" => Ok(Self::Oidc),
            other => Err(format!(
                "unknown requirement {other:?}; expected \"none\", \"any\" or \"oidc\""
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SponsorPolicy {
    pub require: Require,
    /// Accept the agent's own `Sidetrace-Sponsor` header (assurance `header`).
    pub allow_header: bool,
    pub static_sponsor: Option<String>,
    pub static_file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
}

impl Default for SponsorPolicy {
    fn default() -> Self {
        Self {
            require: Require::Any,
            allow_header: false,
            static_sponsor: None,
            static_file: None,
            token_file: None,
        }
    }
}

/// A request's sponsor and correlation.
#[derive(Debug, Clone, Default)]
pub struct Resolved {
    pub sponsor: Sponsor,
    pub correlation: Correlation,
}

/// A request that may not go upstream; what is known is still recorded.
#[derive(Debug)]
pub struct Refusal {
    pub message: String,
    pub known: Resolved,
}

pub struct Identity {
    policy: SponsorPolicy,
    verifier: Verifier,
    issuers: Vec<String>,
    configured: Configured,
    ci: CiEnvironment,
    files: Mutex<HashMap<PathBuf, (SystemTime, String)>>,
}

impl Identity {
    pub fn new(
        policy: SponsorPolicy,
        verifier: Verifier,
        issuers: Vec<String>,
        configured: Configured,
        ci: CiEnvironment,
    ) -> Self {
        Self {
            policy,
            verifier,
            issuers,
            configured,
            ci,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &SponsorPolicy {
        &self.policy
    }

    /// Whether `resolve` could refuse a request that carries no
    /// `Sidetrace-*` header: only when the policy needs a sponsor that no
    /// configured one guarantees (a sponsor file may be missing, a token
    /// may not verify).
    pub fn may_refuse(&self) -> bool {
        match self.policy.require {
            Require::None => false,
            Require::Any => self.policy.static_sponsor.is_none(),
            Require::Oidc => true,
        }
    }

    /// The identity resolver the configuration describes.
    pub fn from_config(
        c: &crate::config::identity::IdentityConfig,
    ) -> Result<Self, crate::tls::TlsSetupError> {
        let verifier = Verifier::new(c.issuers.clone(), c.leeway)?;
        Ok(Self::new(
            c.policy.clone(),
            verifier,
            c.issuers.iter().map(|i| i.issuer.clone()).collect(),
            c.configured.clone(),
            c.ci.clone(),
        ))
    }

    pub async fn resolve(&self, headers: &HeaderMap) -> Result<Resolved, Refusal> {
        let header_token = headers
            .get(HEADER_SPONSOR_TOKEN)
            .map(|v| v.to_str().unwrap_or_default().trim().to_owned());
        let mut verified = None;
        let mut token_problem = None;
        if let Some(token) = header_token {
            match self.verify(&token).await {
                Ok(v) => verified = Some((v, "header Sidetrace-Sponsor-Token")),
                Err(e) => {
                    token_problem = Some(format!(
                        "the sponsor token in the Sidetrace-Sponsor-Token header was rejected: {e}"
                    ))
                }
            }
        } else if let Some(path) = &self.policy.token_file {
            match self.read_file(path) {
                Some(token) => match self.verify(&token).await {
                    Ok(v) => verified = Some((v, "file --sponsor-token-file")),
                    Err(e) => {
                        tracing::warn!(path = %path.display(), error = %e, "the sponsor token file was rejected");
                        token_problem = Some(format!(
                            "the sponsor token in {} was rejected: {e}",
                            path.display()
                        ));
                    }
                },
                None => {
                    token_problem = Some(format!(
                        "the sponsor token file {} cannot be read",
                        path.display()
                    ))
                }
            }
        }

        let claims = verified
            .as_ref()
            .map(|(v, _)| (v.evidence.issuer.as_str(), &v.claims));
        let correlation = correlation::resolve(claims, headers, &self.configured, &self.ci);
        let sponsor = match verified {
            Some((v, source)) => Sponsor {
                id: v.sponsor,
                assurance: SponsorAssurance::Oidc as i32,
                source: source.into(),
                evidence: Some(v.evidence),
            },
            None => self.weaker_sponsor(headers),
        };
        let known = Resolved {
            sponsor,
            correlation,
        };
        let assurance = SponsorAssurance::try_from(known.sponsor.assurance).unwrap_or_default();
        let presented_bad_token =
            token_problem.is_some() && headers.contains_key(HEADER_SPONSOR_TOKEN);
        let refusal = match self.policy.require {
            Require::None => None,
            _ if presented_bad_token => token_problem.clone(),
            Require::Any if assurance == SponsorAssurance::None => {
                Some(self.missing_any(token_problem.as_deref()))
            }
            Require::Oidc if assurance != SponsorAssurance::Oidc => {
                Some(self.missing_oidc(assurance, token_problem.as_deref()))
            }
            _ => None,
        };
        match refusal {
            Some(message) => Err(Refusal { message, known }),
            None => Ok(known),
        }
    }

    async fn verify(&self, token: &str) -> Result<oidc::Verified, String> {
        if !self.verifier.has_issuers() {
            return Err(
                "no trusted issuers are configured ([[sponsor.issuer]] or --oidc-issuer)".into(),
            );
        }
        self.verifier.verify(token).await.map_err(|e| e.to_string())
    }

    fn weaker_sponsor(&self, headers: &HeaderMap) -> Sponsor {
        let from_file = self
            .policy
            .static_file
            .as_ref()
            .and_then(|p| self.read_file(p).map(|v| (v, p)));
        if let Some((id, path)) = from_file {
            return Sponsor {
                id,
                assurance: SponsorAssurance::Static as i32,
                source: format!("file {}", path.display()),
                evidence: None,
            };
        }
        if let Some(id) = &self.policy.static_sponsor {
            return Sponsor {
                id: id.clone(),
                assurance: SponsorAssurance::Static as i32,
                source: "operator (--sponsor / sponsor.static)".into(),
                evidence: None,
            };
        }
        let claimed = headers
            .get(HEADER_SPONSOR)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty() && v.len() <= 200);
        match claimed {
            Some(id) if self.policy.allow_header => Sponsor {
                id: id.to_owned(),
                assurance: SponsorAssurance::Header as i32,
                source: "header Sidetrace-Sponsor".into(),
                evidence: None,
            },
            _ => Sponsor {
                assurance: SponsorAssurance::None as i32,
                ..Default::default()
            },
        }
    }

    fn how_to(&self) -> String {
        let issuers = if self.issuers.is_empty() {
            "none configured yet: add [[sponsor.issuer]] or --oidc-issuer".to_owned()
        } else {
            self.issuers.join(", ")
        };
        format!(
            "an OIDC token from a trusted issuer ({issuers}) in --sponsor-token-file or the Sidetrace-Sponsor-Token header"
        )
    }

    fn missing_any(&self, problem: Option<&str>) -> String {
        let header = if self.policy.allow_header {
            ", or the agent's Sidetrace-Sponsor header"
        } else {
            ""
        };
        let problem = problem.map(|p| format!(" ({p})")).unwrap_or_default();
        format!(
            "sidetrace requires a sponsor for every request (sponsor.require = \"any\") and none was given{problem}. Give one: --sponsor NAME or --sponsor-file when starting sidetrace, {}{header}.",
            self.how_to()
        )
    }

    fn missing_oidc(&self, had: SponsorAssurance, problem: Option<&str>) -> String {
        let had = match had {
            SponsorAssurance::Header => "the sponsor was only claimed in a header",
            SponsorAssurance::Static => "the sponsor was only set by the operator",
            _ => "no sponsor was given",
        };
        let problem = problem.map(|p| format!("; {p}")).unwrap_or_default();
        format!(
            "sidetrace requires a verified OIDC sponsor (sponsor.require = \"oidc\"), but {had}{problem}. Provide {}.",
            self.how_to()
        )
    }

    /// A small file's trimmed content, re-read when its mtime changes.
    fn read_file(&self, path: &Path) -> Option<String> {
        let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
        let mut files = self.files.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, content)) = files.get(path)
            && *seen == mtime
        {
            return Some(content.clone()).filter(|c| !c.is_empty());
        }
        let content = std::fs::read_to_string(path).ok()?.trim().to_owned();
        files.insert(path.to_owned(), (mtime, content.clone()));
        Some(content).filter(|c| !c.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(require: Require, static_sponsor: Option<&str>) -> Identity {
        let policy = SponsorPolicy {
            require,
            static_sponsor: static_sponsor.map(Into::into),
            ..Default::default()
        };
        let verifier = Verifier::new(Vec::new(), std::time::Duration::from_secs(60)).unwrap();
        Identity::new(
            policy,
            verifier,
            Vec::new(),
            Configured::default(),
            CiEnvironment::default(),
        )
    }

    /// Requests nothing could refuse are forwarded before they are resolved.
    #[tokio::test]
    async fn may_refuse_only_when_resolve_can() {
        let no_headers = HeaderMap::new();
        for (require, sponsor, may) in [
            (Require::None, None, false),
            (Require::Any, Some("ops"), false),
            (Require::Any, None, true),
            (Require::Oidc, Some("ops"), true),
        ] {
            let id = identity(require, sponsor);
            assert_eq!(id.may_refuse(), may, "{require:?} {sponsor:?}");
            let refused = id.resolve(&no_headers).await.is_err();
            assert!(may || !refused, "{require:?} {sponsor:?} refused");
        }
        assert!(
            identity(Require::Any, None)
                .resolve(&no_headers)
                .await
                .is_err()
        );
        assert!(
            identity(Require::Oidc, Some("ops"))
                .resolve(&no_headers)
                .await
                .is_err()
        );
    }
}
