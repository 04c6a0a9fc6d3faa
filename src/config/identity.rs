//! The `[sponsor]` section and the correlation defaults: who may sponsor
//! requests, which token issuers are trusted, and the operator's values
//! for change, repository and pipeline.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::identity::SponsorPolicy;
use crate::identity::correlation::{CiEnvironment, Configured};
use crate::identity::oidc::{self, IssuerConfig};

use super::checks;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SponsorSection {
    /// "none", "any" (default) or "oidc".
    pub require: Option<String>,
    pub allow_header: Option<bool>,
    #[serde(rename = "static")]
    pub static_sponsor: Option<String>,
    pub file: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub leeway: Option<String>,
    #[serde(default)]
    pub issuer: Vec<IssuerSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    pub issuer: String,
    pub audience: OneOrMany,
    pub jwks_uri: Option<String>,
    pub claims: Option<Vec<String>>,
    pub algorithms: Option<Vec<String>>,
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// Sponsor and correlation values given as flags.
#[derive(Debug, Default, Clone)]
pub struct IdentityFlags {
    pub sponsor: Option<String>,
    pub sponsor_file: Option<PathBuf>,
    pub sponsor_token_file: Option<PathBuf>,
    pub require: Option<String>,
    pub allow_header: bool,
    pub oidc_issuers: Vec<String>,
    pub oidc_audience: Option<String>,
    pub change_id: Option<String>,
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub pipeline_run_id: Option<String>,
    pub pipeline_url: Option<String>,
    pub job_id: Option<String>,
}

/// The `[execution]` keys that are correlation defaults.
#[derive(Debug, Default)]
pub struct CorrelationKeys {
    pub sponsor: Option<String>,
    pub change_id: Option<String>,
    pub repository: Option<String>,
    pub branch: Option<String>,
    pub revision: Option<String>,
    pub pipeline_run_id: Option<String>,
    pub pipeline_url: Option<String>,
    pub job_id: Option<String>,
}

/// Everything `crate::identity::Identity` is built from.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    pub policy: SponsorPolicy,
    pub issuers: Vec<IssuerConfig>,
    pub leeway: Duration,
    pub configured: Configured,
    pub ci: CiEnvironment,
}

pub fn section(
    f: SponsorSection,
    keys: CorrelationKeys,
    flags: IdentityFlags,
    env: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> IdentityConfig {
    let require = match flags.require.or(f.require) {
        None => crate::identity::Require::Any,
        Some(r) => r.parse().unwrap_or_else(|e| {
            errors.push(format!("sponsor.require (--sponsor-require): {e}"));
            crate::identity::Require::Any
        }),
    };
    let policy = SponsorPolicy {
        require,
        allow_header: flags.allow_header || f.allow_header.unwrap_or(false),
        static_sponsor: flags
            .sponsor
            .or(f.static_sponsor)
            .or(keys.sponsor)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        static_file: flags.sponsor_file.or(f.file),
        token_file: flags.sponsor_token_file.or(f.token_file),
    };
    let leeway = checks::duration("sponsor.leeway", f.leeway, "60s", errors);

    let mut issuers = Vec::new();
    for (i, s) in f.issuer.into_iter().enumerate() {
        let key = format!("sponsor.issuer[{i}]");
        let audiences = match s.audience {
            OneOrMany::One(a) => vec![a],
            OneOrMany::Many(a) => a,
        };
        issuers.extend(issuer(
            &key,
            s.issuer,
            audiences,
            s.jwks_uri,
            s.claims,
            s.algorithms,
            s.ca_file,
            errors,
        ));
    }
    for url in flags.oidc_issuers {
        let Some(aud) = flags.oidc_audience.clone() else {
            errors.push(format!(
                "--oidc-issuer {url}: give the audience tokens must be for with --oidc-audience"
            ));
            continue;
        };
        issuers.extend(issuer(
            "--oidc-issuer",
            url,
            vec![aud],
            None,
            None,
            None,
            None,
            errors,
        ));
    }
    if require == crate::identity::Require::Oidc && issuers.is_empty() {
        errors.push("sponsor.require = \"oidc\" needs at least one trusted issuer: add [[sponsor.issuer]] or --oidc-issuer".into());
    }

    let mut configured = Configured::default();
    configured.set(
        "change_id",
        flags.change_id.or(keys.change_id),
        "--change-id",
    );
    configured.set(
        "repository_url",
        flags.repository.or(keys.repository),
        "--repository",
    );
    configured.set("ref_name", flags.branch.or(keys.branch), "--branch");
    configured.set("revision", flags.revision.or(keys.revision), "--revision");
    configured.set(
        "pipeline_run_id",
        flags.pipeline_run_id.or(keys.pipeline_run_id),
        "--pipeline-run-id",
    );
    configured.set(
        "pipeline_run_url",
        flags.pipeline_url.or(keys.pipeline_url),
        "--pipeline-url",
    );
    configured.set("job_id", flags.job_id.or(keys.job_id), "--job-id");

    IdentityConfig {
        policy,
        issuers,
        leeway,
        configured,
        ci: CiEnvironment::detect(env),
    }
}

#[allow(clippy::too_many_arguments)]
fn issuer(
    key: &str,
    issuer: String,
    audiences: Vec<String>,
    jwks_uri: Option<String>,
    claims: Option<Vec<String>>,
    algorithms: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    errors: &mut Vec<String>,
) -> Option<IssuerConfig> {
    let before = errors.len();
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        errors.push(format!(
            "{key}: issuer {issuer:?} must be a URL, exactly as the tokens' iss claim says it"
        ));
    }
    if audiences.is_empty() || audiences.iter().any(|a| a.is_empty()) {
        errors.push(format!(
            "{key}: audience must be set (the aud your tokens are minted for)"
        ));
    }
    let algorithms = algorithms
        .unwrap_or_else(|| {
            oidc::DEFAULT_ALGORITHMS
                .iter()
                .map(|a| (*a).to_owned())
                .collect()
        })
        .iter()
        .filter_map(|a| match oidc::algorithm(a) {
            Ok(alg) => Some(alg),
            Err(e) => {
                errors.push(format!("{key}.algorithms: {e}"));
                None
            }
        })
        .collect();
    if let Some(ca) = &ca_file {
        checks::check_ca_file(ca, errors);
    }
    (errors.len() == before).then(|| IssuerConfig {
        sponsor_claims: claims.unwrap_or_else(|| IssuerConfig::default_claims(&issuer)),
        issuer,
        audiences,
        jwks_uri,
        algorithms,
        ca_file,
    })
}
