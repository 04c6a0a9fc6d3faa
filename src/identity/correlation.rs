//! What a request's work belongs to — change, repository, branch, revision,
//! pipeline run and job — from, first match wins: verified token claims,
//! `Sidetrace-*` headers, W3C `baggage`, the operator's flags/config, and
//! the CI environment sidetrace runs in (GitLab CI, GitHub Actions). Each
//! value records its source; values only an environment variable claims are
//! marked unsigned.

use std::collections::HashMap;

use http::HeaderMap;
use serde_json::{Map, Value};

use crate::record::Correlation;

/// The correlation fields, with their header and baggage names.
const FIELDS: &[(&str, &str, &str)] = &[
    ("change_id", "sidetrace-change-id", "sidetrace.change.id"),
    (
        "repository_url",
        "sidetrace-repository",
        "sidetrace.repository",
    ),
    ("ref_name", "sidetrace-branch", "sidetrace.branch"),
    ("revision", "sidetrace-revision", "sidetrace.revision"),
    (
        "pipeline_run_id",
        "sidetrace-pipeline-run-id",
        "sidetrace.pipeline.run.id",
    ),
    (
        "pipeline_run_url",
        "sidetrace-pipeline-url",
        "sidetrace.pipeline.url",
    ),
    ("job_id", "sidetrace-job-id", "sidetrace.job.id"),
];

/// The static name of a correlation field (`"change_id"`, ...), if it is one.
pub fn field_name(field: &str) -> Option<&'static str> {
    FIELDS
        .iter()
        .find(|(f, _, _)| *f == field)
        .map(|(f, _, _)| *f)
}

/// Values with where they came from, by field name.
pub type Sourced = HashMap<&'static str, (String, String)>;

/// The operator's values (flags or config).
#[derive(Debug, Clone, Default)]
pub struct Configured(pub Sourced);

impl Configured {
    pub fn set(&mut self, field: &str, value: Option<String>, key: &str) {
        if let Some(v) = value.filter(|v| !v.trim().is_empty())
            && let Some((name, _, _)) = FIELDS.iter().find(|(f, _, _)| *f == field)
        {
            self.0
                .insert(name, (v.trim().to_owned(), format!("config {key}")));
        }
    }
}

/// What the CI environment says, read once at startup.
#[derive(Debug, Clone, Default)]
pub struct CiEnvironment {
    pub values: Sourced,
    /// "gitlab" or "github", when detected.
    pub provider: Option<&'static str>,
}

impl CiEnvironment {
    pub fn detect(env: &dyn Fn(&str) -> Option<String>) -> Self {
        let mut values = Sourced::new();
        let mut put = |field: &'static str, var: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                values
                    .entry(field)
                    .or_insert((v, format!("env {var} (unsigned)")));
            }
        };
        let var = |name: &str| env(name).filter(|v| !v.is_empty());
        if var("GITLAB_CI").as_deref() == Some("true") {
            put(
                "change_id",
                "CI_MERGE_REQUEST_IID",
                var("CI_MERGE_REQUEST_IID"),
            );
            put("repository_url", "CI_PROJECT_URL", var("CI_PROJECT_URL"));
            put(
                "ref_name",
                "CI_MERGE_REQUEST_SOURCE_BRANCH_NAME",
                var("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"),
            );
            put("ref_name", "CI_COMMIT_REF_NAME", var("CI_COMMIT_REF_NAME"));
            put("revision", "CI_COMMIT_SHA", var("CI_COMMIT_SHA"));
            put("pipeline_run_id", "CI_PIPELINE_ID", var("CI_PIPELINE_ID"));
            put(
                "pipeline_run_url",
                "CI_PIPELINE_URL",
                var("CI_PIPELINE_URL"),
            );
            put("job_id", "CI_JOB_ID", var("CI_JOB_ID"));
            return Self {
                values,
                provider: Some("gitlab"),
            };
        }
        if var("GITHUB_ACTIONS").as_deref() == Some("true") {
            let server = var("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
            let repo = var("GITHUB_REPOSITORY");
            // refs/pull/42/merge → 42
            let pr = var("GITHUB_REF").and_then(|r| {
                r.strip_prefix("refs/pull/")
                    .and_then(|rest| rest.split('/').next())
                    .map(str::to_owned)
            });
            put("change_id", "GITHUB_REF", pr);
            put(
                "repository_url",
                "GITHUB_REPOSITORY",
                repo.as_ref().map(|r| format!("{server}/{r}")),
            );
            put("ref_name", "GITHUB_HEAD_REF", var("GITHUB_HEAD_REF"));
            put("ref_name", "GITHUB_REF_NAME", var("GITHUB_REF_NAME"));
            put("revision", "GITHUB_SHA", var("GITHUB_SHA"));
            let run = var("GITHUB_RUN_ID");
            put("pipeline_run_id", "GITHUB_RUN_ID", run.clone());
            if let (Some(repo), Some(run)) = (repo, run) {
                put(
                    "pipeline_run_url",
                    "GITHUB_RUN_ID",
                    Some(format!("{server}/{repo}/actions/runs/{run}")),
                );
            }
            put("job_id", "GITHUB_JOB", var("GITHUB_JOB"));
            return Self {
                values,
                provider: Some("github"),
            };
        }
        Self::default()
    }
}

/// What verified token claims say (GitLab and GitHub shapes).
fn from_claims(issuer: &str, claims: &Map<String, Value>) -> Sourced {
    let mut out = Sourced::new();
    let text = |k: &str| {
        claims.get(k).and_then(|v| match v {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
    };
    let mut put = |field: &'static str, claim: &str, value: Option<String>| {
        if let Some(v) = value {
            out.entry(field)
                .or_insert((v, format!("oidc claim {claim}")));
        }
    };
    let base = issuer.trim_end_matches('/');
    if let Some(path) = text("project_path") {
        put(
            "repository_url",
            "project_path",
            Some(format!("{base}/{path}")),
        );
        if let Some(p) = text("pipeline_id") {
            put(
                "pipeline_run_url",
                "pipeline_id",
                Some(format!("{base}/{path}/-/pipelines/{p}")),
            );
        }
    }
    if let Some(repo) = text("repository") {
        put(
            "repository_url",
            "repository",
            Some(format!("https://github.com/{repo}")),
        );
        if let Some(run) = text("run_id") {
            put(
                "pipeline_run_url",
                "run_id",
                Some(format!("https://github.com/{repo}/actions/runs/{run}")),
            );
        }
    }
    let pr = text("ref").and_then(|r| {
        r.strip_prefix("refs/pull/")
            .and_then(|x| x.split('/').next())
            .map(str::to_owned)
    });
    put("change_id", "ref", pr);
    put("ref_name", "head_ref", text("head_ref"));
    put("ref_name", "ref", text("ref"));
    put("revision", "sha", text("sha"));
    put("pipeline_run_id", "pipeline_id", text("pipeline_id"));
    put("pipeline_run_id", "run_id", text("run_id"));
    put("job_id", "job_id", text("job_id"));
    out
}

/// W3C baggage (`k=v;props, k2=v2`, values percent-encoded) entries we read.
fn from_baggage(headers: &HeaderMap) -> Sourced {
    let mut out = Sourced::new();
    for value in headers.get_all("baggage") {
        let Ok(text) = value.to_str() else { continue };
        for member in text.split(',') {
            let kv = member.split(';').next().unwrap_or_default();
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), percent_decode(v.trim()));
            if let Some((field, _, key)) = FIELDS.iter().find(|(_, _, b)| *b == k)
                && !v.is_empty()
            {
                out.entry(field).or_insert((v, format!("baggage {key}")));
            }
        }
    }
    out
}

fn from_headers(headers: &HeaderMap) -> Sourced {
    let mut out = Sourced::new();
    for (field, header, _) in FIELDS {
        if let Some(v) = headers
            .get(*header)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            && !v.is_empty()
        {
            out.insert(
                field,
                (v.to_owned(), format!("header {}", display_name(header))),
            );
        }
    }
    out
}

/// `sidetrace-change-id` → `Sidetrace-Change-Id`.
fn display_name(header: &str) -> String {
    header
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next().map_or_else(String::new, |f| {
                f.to_ascii_uppercase().to_string() + c.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Merges the sources, first match wins, into a correlation with sources.
pub fn resolve(
    claims: Option<(&str, &Map<String, Value>)>,
    headers: &HeaderMap,
    configured: &Configured,
    ci: &CiEnvironment,
) -> Correlation {
    let layers = [
        claims
            .map(|(iss, c)| from_claims(iss, c))
            .unwrap_or_default(),
        from_headers(headers),
        from_baggage(headers),
        configured.0.clone(),
        ci.values.clone(),
    ];
    let mut c = Correlation::default();
    for (field, _, _) in FIELDS {
        let Some((value, source)) = layers.iter().find_map(|l| l.get(field)) else {
            continue;
        };
        let slot = match *field {
            "change_id" => &mut c.change_id,
            "repository_url" => &mut c.repository_url,
            "ref_name" => &mut c.ref_name,
            "revision" => &mut c.revision,
            "pipeline_run_id" => &mut c.pipeline_run_id,
            "pipeline_run_url" => &mut c.pipeline_run_url,
            _ => &mut c.job_id,
        };
        *slot = value.clone();
        c.sources.insert((*field).to_owned(), source.clone());
    }
    let provider = match (claims.map(|(iss, _)| iss), ci.provider) {
        (Some(iss), _) if iss.contains("githubusercontent") => Some("github"),
        (Some(iss), _) if iss.contains("gitlab") => Some("gitlab"),
        (_, p) => p.or_else(|| {
            let url = &c.repository_url;
            if url.contains("github.com") {
                Some("github")
            } else if url.contains("gitlab") {
                Some("gitlab")
            } else {
                None
            }
        }),
    };
    c.vcs_provider = provider.unwrap_or_default().to_owned();
    c
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn gitlab_and_github_environments() {
        let gl = CiEnvironment::detect(&env_of(&[
            ("GITLAB_CI", "true"),
            ("CI_MERGE_REQUEST_IID", "42"),
            ("CI_PROJECT_URL", "https://gitlab.example.com/team/app"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feature/x"),
            ("CI_COMMIT_REF_NAME", "ignored-when-mr"),
            ("CI_COMMIT_SHA", "abc123"),
            ("CI_PIPELINE_ID", "9001"),
            (
                "CI_PIPELINE_URL",
                "https://gitlab.example.com/team/app/-/pipelines/9001",
            ),
            ("CI_JOB_ID", "777"),
        ]));
        let c = resolve(None, &HeaderMap::new(), &Configured::default(), &gl);
        assert_eq!(
            (c.change_id.as_str(), c.ref_name.as_str(), c.job_id.as_str()),
            ("42", "feature/x", "777")
        );
        assert_eq!(
            c.sources["change_id"],
            "env CI_MERGE_REQUEST_IID (unsigned)"
        );
        assert_eq!(c.vcs_provider, "gitlab");

        let gh = CiEnvironment::detect(&env_of(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/pull/17/merge"),
            ("GITHUB_REPOSITORY", "acme/app"),
            ("GITHUB_HEAD_REF", "fix-bug"),
            ("GITHUB_SHA", "def456"),
            ("GITHUB_RUN_ID", "555"),
            ("GITHUB_JOB", "test"),
        ]));
        let c = resolve(None, &HeaderMap::new(), &Configured::default(), &gh);
        assert_eq!(c.change_id, "17");
        assert_eq!(c.repository_url, "https://github.com/acme/app");
        assert_eq!(
            c.pipeline_run_url,
            "https://github.com/acme/app/actions/runs/555"
        );
        assert_eq!(c.sources["revision"], "env GITHUB_SHA (unsigned)");
        assert_eq!(c.vcs_provider, "github");
    }

    #[test]
    fn precedence_claims_headers_baggage_config_env() {
        let mut h = HeaderMap::new();
        h.insert("sidetrace-change-id", "!header".parse().unwrap());
        h.insert(
            "baggage",
            "sidetrace.change.id=!bag,sidetrace.branch=feat%2Fy;p=1"
                .parse()
                .unwrap(),
        );
        let mut cfg = Configured::default();
        cfg.set("change_id", Some("!flag".into()), "--change-id");
        cfg.set("revision", Some("cafe".into()), "--revision");
        let ci = CiEnvironment::detect(&env_of(&[
            ("GITLAB_CI", "true"),
            ("CI_JOB_ID", "1"),
            ("CI_COMMIT_SHA", "ignored"),
        ]));
        let c = resolve(None, &h, &cfg, &ci);
        assert_eq!(c.change_id, "!header");
        assert_eq!(c.sources["change_id"], "header Sidetrace-Change-Id");
        assert_eq!(
            (c.ref_name.as_str(), c.sources["ref_name"].as_str()),
            ("feat/y", "baggage sidetrace.branch")
        );
        assert_eq!(
            (c.revision.as_str(), c.sources["revision"].as_str()),
            ("cafe", "config --revision")
        );
        assert_eq!(c.sources["job_id"], "env CI_JOB_ID (unsigned)");

        let claims: Map<String, Value> = serde_json::from_str(
            r#"{"project_path":"team/app","ref":"main","sha":"0123","pipeline_id":"88","job_id":99}"#,
        )
        .unwrap();
        let c = resolve(Some(("https://gitlab.example.com", &claims)), &h, &cfg, &ci);
        assert_eq!(c.repository_url, "https://gitlab.example.com/team/app");
        assert_eq!(
            (c.revision.as_str(), c.sources["revision"].as_str()),
            ("0123", "oidc claim sha")
        );
        assert_eq!(
            (c.job_id.as_str(), c.sources["job_id"].as_str()),
            ("99", "oidc claim job_id")
        );
        assert_eq!(
            c.change_id, "!header",
            "no MR in the claims: the header still counts"
        );
    }
}
