//! Decides which execution and agent session a request belongs to, and who
//! the agent is (sponsor and correlation come from `crate::identity`).
//!
//! Execution id, first match wins: the `Sidetrace-Execution-Id` header, the
//! operator's `--execution-id`, the agent's own session id (each agent
//! session is its own unit of work), else one execution per proxy run.
//! The registry remembers which executions this process has opened (one
//! `Execution` entry each per run) and when each was last used, so session
//! executions can be closed when idle; its size is bounded by that sweep.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use dashmap::DashMap;
use http::HeaderMap;
use sha2::{Digest, Sha256};

use super::redact::Fingerprinter;
use super::{AgentIdentity, Correlation, Execution, ExecutionIdSource, Sponsor, timestamp};
use crate::identity::Resolved;

pub const HEADER_EXECUTION_ID: &str = "sidetrace-execution-id";

/// Headers agents put their session id in: Claude Code, Codex CLI (both), others.
pub const DEFAULT_SESSION_HEADERS: &[&str] = &[
    "x-claude-code-session-id",
    "session-id",
    "thread-id",
    "x-session-id",
];

const MAX_ID_LEN: usize = 200;

/// Operator-supplied defaults.
#[derive(Debug, Clone)]
pub struct ExecutionDefaults {
    pub execution_id: Option<String>,
    pub sponsor: Option<String>,
    pub change_id: Option<String>,
    /// Where agents send their session id, in order of preference.
    pub session_headers: Vec<String>,
}

impl Default for ExecutionDefaults {
    fn default() -> Self {
        Self {
            execution_id: None,
            sponsor: None,
            change_id: None,
            session_headers: DEFAULT_SESSION_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect(),
        }
    }
}

/// The agent's own session identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    /// The header it came in.
    pub header: String,
}

/// Who and what one request belongs to.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub execution_id: String,
    pub sponsor: Sponsor,
    pub correlation: Correlation,
    pub agent: AgentIdentity,
    pub session: Option<Session>,
}

struct Opened {
    source: ExecutionIdSource,
    /// Milliseconds since the registry's epoch.
    last_seen: AtomicU64,
    /// Opened and closed by someone else (`sidetrace run`): this registry
    /// neither journals its start nor closes it.
    adopted: bool,
}

pub struct ExecutionRegistry {
    defaults: ExecutionDefaults,
    run_execution_id: String,
    fingerprinter: Fingerprinter,
    opened: DashMap<String, Opened>,
    epoch: Instant,
}

/// A request whose `Sidetrace-*` headers cannot be accepted.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidContext(pub String);

impl ExecutionRegistry {
    pub fn new(defaults: ExecutionDefaults, fingerprinter: Fingerprinter) -> Self {
        Self {
            defaults,
            run_execution_id: uuid::Uuid::now_v7().to_string(),
            fingerprinter,
            opened: DashMap::new(),
            epoch: Instant::now(),
        }
    }

    /// The execution this proxy run records into when neither a header, the
    /// operator, nor an agent session names one.
    pub fn default_execution_id(&self) -> &str {
        self.defaults
            .execution_id
            .as_deref()
            .unwrap_or(&self.run_execution_id)
    }

    fn session(&self, headers: &HeaderMap) -> Option<Session> {
        self.defaults.session_headers.iter().find_map(|name| {
            let v = headers.get(name.as_str())?.to_str().ok()?.trim();
            (!v.is_empty() && v.len() <= MAX_ID_LEN).then(|| Session {
                id: v.to_owned(),
                header: name.clone(),
            })
        })
    }

    /// Resolves the context of a request. Returns the `Execution` record to
    /// journal when this is the first request of that execution in this run.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
        identity: Resolved,
    ) -> Result<(RequestContext, Option<Execution>), InvalidContext> {
        let header_id = header_value(headers, HEADER_EXECUTION_ID)?;
        if let Some(id) = &header_id {
            validate_id(HEADER_EXECUTION_ID, id)?;
        }
        let session = self.session(headers);
        let (execution_id, id_source) = match (header_id, &self.defaults.execution_id, &session) {
            (Some(id), _, _) => (id, ExecutionIdSource::Header),
            (None, Some(id), _) => (id.clone(), ExecutionIdSource::Config),
            (None, None, Some(s)) => (session_execution_id(&s.id), ExecutionIdSource::AgentSession),
            (None, None, None) => (self.run_execution_id.clone(), ExecutionIdSource::Generated),
        };

        let user_agent = headers
            .get(http::header::USER_AGENT)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let (name, version) = product(&user_agent);
        let agent = AgentIdentity {
            name,
            version,
            user_agent,
            credential_fingerprint: self.fingerprinter.credential(headers),
        };
        let (sponsor, correlation) = (identity.sponsor, identity.correlation);

        let now_ms = self.epoch.elapsed().as_millis() as u64;
        let opened = match self.opened.get(&execution_id) {
            Some(o) => {
                o.last_seen.store(now_ms, Ordering::Relaxed);
                None
            }
            None => {
                let fresh = self
                    .opened
                    .insert(
                        execution_id.clone(),
                        Opened {
                            source: id_source,
                            last_seen: AtomicU64::new(now_ms),
                            adopted: false,
                        },
                    )
                    .is_none();
                fresh.then(|| Execution {
                    id: execution_id.clone(),
                    id_source: id_source as i32,
                    start_time: Some(timestamp(now)),
                    sponsor: Some(sponsor.clone()),
                    correlation: Some(correlation.clone()),
                    agent: Some(agent.clone()),
                    recorder_version: env!("CARGO_PKG_VERSION").into(),
                    traceparent: headers
                        .get("traceparent")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned(),
                    ..Default::default()
                })
            }
        };
        Ok((
            RequestContext {
                execution_id,
                sponsor,
                correlation,
                agent,
                session,
            },
            opened,
        ))
    }

    /// Executions unused for `idle` — agent sessions and those named by
    /// request headers (the operator's and the run's own last as long as the
    /// run): forgotten here and returned, to be closed. A later request
    /// opens the execution again.
    pub fn take_idle(&self, idle: Duration) -> Vec<String> {
        let Some(cutoff) = self.epoch.elapsed().checked_sub(idle) else {
            return Vec::new();
        };
        let cutoff = cutoff.as_millis() as u64;
        let idle_ids: Vec<String> = self
            .opened
            .iter()
            .filter(|e| {
                !e.adopted
                    && matches!(
                        e.source,
                        ExecutionIdSource::AgentSession | ExecutionIdSource::Header
                    )
                    && e.last_seen.load(Ordering::Relaxed) <= cutoff
            })
            .map(|e| e.key().clone())
            .collect();
        idle_ids
            .into_iter()
            .filter(|id| self.opened.remove(id).is_some())
            .collect()
    }

    /// Takes on an execution someone else opened and will close (its
    /// `Execution` entry is already in the journal).
    pub fn adopt(&self, execution_id: &str) {
        self.opened.insert(
            execution_id.to_owned(),
            Opened {
                source: ExecutionIdSource::Config,
                last_seen: AtomicU64::new(0),
                adopted: true,
            },
        );
    }

    /// Every execution this run has open. At shutdown each is closed: the
    /// record says when sidetrace stopped seeing it (a later run that sees it
    /// again opens a new segment of it).
    pub fn open_executions(&self) -> Vec<String> {
        self.opened
            .iter()
            .filter(|e| !e.adopted)
            .map(|e| e.key().clone())
            .collect()
    }
}

/// `claude-cli/2.1.332 (external, cli)` → ("claude-cli", "2.1.332").
fn product(user_agent: &str) -> (String, String) {
    let first = user_agent.split_whitespace().next().unwrap_or_default();
    match first.split_once('/') {
        Some((n, v)) => (n.to_owned(), v.to_owned()),
        None => (first.to_owned(), String::new()),
    }
}

/// An agent's session id as an execution id: as is when it is a plain id,
/// else a digest of it (ids appear in logs, URLs and file names).
fn session_execution_id(session: &str) -> String {
    if validate_id("", session).is_ok() {
        session.to_owned()
    } else {
        format!(
            "session-{}",
            hex::encode(&Sha256::digest(session.as_bytes())[..16])
        )
    }
}

fn header_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, InvalidContext> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let s = v
                .to_str()
                .map_err(|_| InvalidContext(format!("header {name} must be printable ASCII")))?;
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else if s.len() > MAX_ID_LEN {
                Err(InvalidContext(format!(
                    "header {name} is {} bytes long; the limit is {MAX_ID_LEN}",
                    s.len()
                )))
            } else {
                Ok(Some(s.to_owned()))
            }
        }
    }
}

fn validate_id(name: &str, id: &str) -> Result<(), InvalidContext> {
    let ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:/@+-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(InvalidContext(format!(
            "header {name} may contain only letters, digits and . _ : / @ + -; got {id:?}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(defaults: ExecutionDefaults) -> ExecutionRegistry {
        ExecutionRegistry::new(defaults, Fingerprinter::new([7; 32]))
    }

    fn resolve(r: &ExecutionRegistry, h: &HeaderMap) -> (RequestContext, Option<Execution>) {
        r.resolve(h, SystemTime::now(), Resolved::default())
            .unwrap()
    }

    #[test]
    fn header_beats_flag_beats_session_beats_generated() {
        let r = registry(ExecutionDefaults {
            execution_id: Some("flag-exec".into()),
            ..Default::default()
        });
        let mut h = HeaderMap::new();
        h.insert("x-claude-code-session-id", "0b7e-session".parse().unwrap());
        h.insert(
            "user-agent",
            "claude-cli/2.1.332 (external, cli)".parse().unwrap(),
        );
        let (ctx, _) = resolve(&r, &h);
        assert_eq!(ctx.execution_id, "flag-exec");
        assert_eq!(ctx.session.as_ref().unwrap().id, "0b7e-session");
        assert_eq!(
            (ctx.agent.name.as_str(), ctx.agent.version.as_str()),
            ("claude-cli", "2.1.332")
        );
        h.insert(HEADER_EXECUTION_ID, "hdr-exec".parse().unwrap());
        let (ctx, opened) = resolve(&r, &h);
        assert_eq!(ctx.execution_id, "hdr-exec");
        assert_eq!(opened.unwrap().id_source, ExecutionIdSource::Header as i32);

        let r = registry(ExecutionDefaults::default());
        let mut a = HeaderMap::new();
        a.insert("x-claude-code-session-id", "sess-a".parse().unwrap());
        let mut b = HeaderMap::new();
        b.insert("session-id", "sess b with spaces".parse().unwrap());
        let (ca, oa) = resolve(&r, &a);
        let (cb, _) = resolve(&r, &b);
        let (cn, _) = resolve(&r, &HeaderMap::new());
        assert_eq!(ca.execution_id, "sess-a");
        assert_eq!(
            oa.unwrap().id_source,
            ExecutionIdSource::AgentSession as i32
        );
        assert!(
            cb.execution_id.starts_with("session-"),
            "{}",
            cb.execution_id
        );
        assert_eq!(cn.execution_id, r.default_execution_id());
        assert_eq!(r.open_executions().len(), 3);
    }

    #[test]
    fn execution_opened_once_per_run() {
        let r = registry(ExecutionDefaults::default());
        let (a, first) = resolve(&r, &HeaderMap::new());
        let (b, second) = resolve(&r, &HeaderMap::new());
        assert_eq!(a.execution_id, b.execution_id);
        assert!(first.is_some());
        assert!(second.is_none());
        assert_eq!(r.open_executions(), vec![a.execution_id]);
    }

    #[test]
    fn idle_sessions_are_taken_and_reopen_later() {
        let r = registry(ExecutionDefaults::default());
        let mut h = HeaderMap::new();
        h.insert("session-id", "s1".parse().unwrap());
        resolve(&r, &h);
        resolve(&r, &HeaderMap::new());
        assert!(r.take_idle(Duration::from_secs(3600)).is_empty());
        assert_eq!(
            r.take_idle(Duration::ZERO),
            vec!["s1".to_owned()],
            "the run's own execution does not idle out"
        );
        let (_, reopened) = resolve(&r, &h);
        assert!(reopened.is_some());
    }

    #[test]
    fn bad_execution_id_is_refused() {
        let r = registry(ExecutionDefaults::default());
        let mut h = HeaderMap::new();
        h.insert(HEADER_EXECUTION_ID, "has space".parse().unwrap());
        let err = r
            .resolve(&h, SystemTime::now(), Resolved::default())
            .unwrap_err();
        assert!(err.0.contains("sidetrace-execution-id"));
    }
}
