//! What the exporter is told: where the collector is, how to talk to it,
//! and how much content leaves the journal.

use std::path::PathBuf;
use std::time::Duration;

/// How much message content goes on spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentMode {
    /// Whole input and output messages on every chat span.
    Full,
    /// Only the messages new in each turn, plus the digest of the whole input.
    Delta,
    /// Digests and metadata only.
    None,
}

impl std::str::FromStr for ContentMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "full" => Ok(Self::Full),
            "delta" => Ok(Self::Delta),
            "none" => Ok(Self::None),
            other => Err(format!(
                "unknown content mode {other:?}; expected \"full\", \"delta\" or \"none\""
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// For HTTP, the full traces URL (…/v1/traces); for gRPC, the server URL.
    pub endpoint: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub gzip: bool,
    /// Per export request.
    pub timeout: Duration,
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportConfig {
    /// None: no collector configured, nothing exported (the journal alone).
    pub otlp: Option<OtlpConfig>,
    pub content: ContentMode,
    /// Content attributes longer than this are cut, keeping the digest of the whole.
    pub max_attribute_size: usize,
    /// On shutdown, how long to keep exporting what is left.
    pub shutdown_timeout: Duration,
    /// Extra resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, Kubernetes downward API).
    pub resource: Vec<(String, String)>,
}

impl Default for ExportConfig {
    fn default() -> Self {
        Self {
            otlp: None,
            content: ContentMode::Delta,
            max_attribute_size: 64 * 1024,
            shutdown_timeout: Duration::from_secs(10),
            resource: Vec::new(),
        }
    }
}
