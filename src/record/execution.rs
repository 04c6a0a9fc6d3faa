//! Decides which execution, sponsor and correlation a request belongs to.
//!
//! Precedence (first cut; verified identity comes later): the request's
//! `Sidetrace-*` headers, then the operator's flags/config, then an execution
//! created for this proxy run. The registry remembers which executions this
//! process has already opened so each gets exactly one `Execution` entry per
//! run; it holds one small entry per execution id seen.

use std::time::SystemTime;

use dashmap::DashMap;
use http::HeaderMap;

use super::redact::Fingerprinter;
use super::{
    AgentIdentity, Correlation, Execution, ExecutionIdSource, Sponsor, SponsorAssurance, timestamp,
};

pub const HEADER_EXECUTION_ID: &str = "sidetrace-execution-id";
pub const HEADER_SPONSOR: &str = "sidetrace-sponsor";
pub const HEADER_CHANGE_ID: &str = "sidetrace-change-id";

const MAX_ID_LEN: usize = 200;

/// Operator-supplied defaults.
#[derive(Debug, Clone, Default)]
pub struct ExecutionDefaults {
    pub execution_id: Option<String>,
    pub sponsor: Option<String>,
    pub change_id: Option<String>,
}

/// Who and what one request belongs to.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub execution_id: String,
    pub sponsor: Sponsor,
    pub correlation: Correlation,
    pub agent: AgentIdentity,
}

pub struct ExecutionRegistry {
    defaults: ExecutionDefaults,
    run_execution_id: String,
    fingerprinter: Fingerprinter,
    opened: DashMap<String, ()>,
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
        }
    }

    /// The execution this proxy run records into when neither a header nor the
    /// operator names one.
    pub fn default_execution_id(&self) -> &str {
        self.defaults
            .execution_id
            .as_deref()
            .unwrap_or(&self.run_execution_id)
    }

    /// Resolves the context of a request. Returns the `Execution` record to
    /// journal when this is the first request of that execution in this run.
    pub fn resolve(
        &self,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<(RequestContext, Option<Execution>), InvalidContext> {
        let header_id = header_value(headers, HEADER_EXECUTION_ID)?;
        if let Some(id) = &header_id {
            validate_id(HEADER_EXECUTION_ID, id)?;
        }
        let (execution_id, id_source) = match header_id {
            Some(id) => (id, ExecutionIdSource::Header),
            None => match &self.defaults.execution_id {
                Some(id) => (id.clone(), ExecutionIdSource::Config),
                None => (self.run_execution_id.clone(), ExecutionIdSource::Generated),
            },
        };

        let sponsor = match header_value(headers, HEADER_SPONSOR)? {
            Some(id) => Sponsor {
                id,
                assurance: SponsorAssurance::Header as i32,
                source: "header Sidetrace-Sponsor".into(),
            },
            None => match &self.defaults.sponsor {
                Some(id) => Sponsor {
                    id: id.clone(),
                    assurance: SponsorAssurance::Static as i32,
                    source: "operator (--sponsor / execution.sponsor)".into(),
                },
                None => Sponsor {
                    id: String::new(),
                    assurance: SponsorAssurance::None as i32,
                    source: String::new(),
                },
            },
        };
        let change_id = header_value(headers, HEADER_CHANGE_ID)?
            .or_else(|| self.defaults.change_id.clone())
            .unwrap_or_default();
        let correlation = Correlation {
            change_id,
            ..Default::default()
        };
        let agent = AgentIdentity {
            user_agent: headers
                .get(http::header::USER_AGENT)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default(),
            credential_fingerprint: self.fingerprinter.credential(headers),
        };

        let opened = if self.opened.contains_key(&execution_id) {
            None
        } else if self.opened.insert(execution_id.clone(), ()).is_none() {
            Some(Execution {
                id: execution_id.clone(),
                id_source: id_source as i32,
                start_time: Some(timestamp(now)),
                sponsor: Some(sponsor.clone()),
                correlation: Some(correlation.clone()),
                agent: Some(agent.clone()),
                recorder_version: env!("CARGO_PKG_VERSION").into(),
                ..Default::default()
            })
        } else {
            None
        };
        Ok((
            RequestContext {
                execution_id,
                sponsor,
                correlation,
                agent,
            },
            opened,
        ))
    }

    /// Executions this run opened whose end it owns: the operator's or the
    /// generated one. Executions named by request headers are ended by whoever
    /// named them.
    pub fn owned_open_executions(&self) -> Vec<String> {
        let own = self.default_execution_id();
        if self.opened.contains_key(own) {
            vec![own.to_owned()]
        } else {
            Vec::new()
        }
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
    let ok = id
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

    #[test]
    fn header_beats_flag_beats_generated() {
        let r = registry(ExecutionDefaults {
            execution_id: Some("flag-exec".into()),
            sponsor: Some("ops".into()),
            change_id: Some("!1".into()),
        });
        let mut h = HeaderMap::new();
        let (ctx, _) = r.resolve(&h, SystemTime::now()).unwrap();
        assert_eq!(ctx.execution_id, "flag-exec");
        assert_eq!(ctx.sponsor.id, "ops");
        assert_eq!(ctx.sponsor.assurance, SponsorAssurance::Static as i32);
        assert_eq!(ctx.correlation.change_id, "!1");
        h.insert(HEADER_EXECUTION_ID, "hdr-exec".parse().unwrap());
        h.insert(HEADER_SPONSOR, "alice".parse().unwrap());
        h.insert(HEADER_CHANGE_ID, "!42".parse().unwrap());
        let (ctx, opened) = r.resolve(&h, SystemTime::now()).unwrap();
        assert_eq!(ctx.execution_id, "hdr-exec");
        assert_eq!(ctx.sponsor.id, "alice");
        assert_eq!(ctx.sponsor.assurance, SponsorAssurance::Header as i32);
        assert_eq!(ctx.correlation.change_id, "!42");
        let opened = opened.unwrap();
        assert_eq!(opened.id_source, ExecutionIdSource::Header as i32);
    }

    #[test]
    fn execution_opened_once_per_run() {
        let r = registry(ExecutionDefaults::default());
        let (a, first) = r.resolve(&HeaderMap::new(), SystemTime::now()).unwrap();
        let (b, second) = r.resolve(&HeaderMap::new(), SystemTime::now()).unwrap();
        assert_eq!(a.execution_id, b.execution_id);
        assert!(first.is_some());
        assert!(second.is_none());
        assert_eq!(r.owned_open_executions(), vec![a.execution_id]);
    }

    #[test]
    fn bad_execution_id_is_refused() {
        let r = registry(ExecutionDefaults::default());
        let mut h = HeaderMap::new();
        h.insert(HEADER_EXECUTION_ID, "has space".parse().unwrap());
        let err = r.resolve(&h, SystemTime::now()).unwrap_err();
        assert!(err.0.contains("sidetrace-execution-id"));
    }
}
