//! `sidetrace proxy`: run the recording reverse proxy until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::{Overrides, ProxyConfig};
use crate::proxy::Server;

/// Flags shared by `proxy` and `check-config`. Each is also read from the
/// `SIDETRACE_*` variable named in its help.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// TOML config file (routes, upstream, capture, journal, execution sections).
    #[arg(long, env = "SIDETRACE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address agents connect to [default: 127.0.0.1:4480].
    #[arg(long, env = "SIDETRACE_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,

    /// Address of /healthz, /readyz and /metrics [default: 127.0.0.1:4481].
    #[arg(long, env = "SIDETRACE_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,

    /// A reverse route, PREFIX=UPSTREAM_URL (repeatable; replaces the config file's routes).
    /// The API is detected from the path. Without any route: /openai=https://api.openai.com
    /// and /anthropic=https://api.anthropic.com.
    #[arg(
        long = "route",
        env = "SIDETRACE_ROUTE",
        value_delimiter = ',',
        value_name = "PREFIX=URL"
    )]
    pub routes: Vec<String>,

    /// Extra PEM CA certificate(s) to trust for upstream TLS, besides the system and webpki roots.
    #[arg(long, env = "SIDETRACE_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// How long to wait for an upstream's response headers before answering 504 [default: 10m].
    #[arg(long, env = "SIDETRACE_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    pub upstream_timeout: Option<String>,

    /// How long to wait for a TCP connection to an upstream [default: 10s].
    #[arg(long, env = "SIDETRACE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Largest body kept in the record; larger bodies are forwarded whole and
    /// recorded by prefix and digest [default: 32MiB].
    #[arg(long, env = "SIDETRACE_CAPTURE_MAX_BODY", value_name = "SIZE")]
    pub capture_max_body: Option<String>,

    /// Execution id for requests without a Sidetrace-Execution-Id header
    /// [default: one is created per proxy run].
    #[arg(long, env = "SIDETRACE_EXECUTION_ID", value_name = "ID")]
    pub execution_id: Option<String>,

    /// The human sponsor of this run's work, set by the operator (assurance "static").
    #[arg(long, env = "SIDETRACE_SPONSOR", value_name = "WHO")]
    pub sponsor: Option<String>,

    /// A file holding the sponsor (e.g. written by the Kubernetes downward API from an annotation).
    #[arg(long, env = "SIDETRACE_SPONSOR_FILE", value_name = "FILE")]
    pub sponsor_file: Option<PathBuf>,

    /// A file holding the sponsor's OIDC token (e.g. a projected service-account token or a CI
    /// id_token); re-read when it changes. Verified against the trusted issuers (assurance "oidc").
    #[arg(long, env = "SIDETRACE_SPONSOR_TOKEN_FILE", value_name = "FILE")]
    pub sponsor_token_file: Option<PathBuf>,

    /// The least sponsor a request needs: "none", "any" or "oidc"; requests below it are
    /// refused with a 403 [default: any].
    #[arg(long, env = "SIDETRACE_SPONSOR_REQUIRE", value_name = "LEVEL")]
    pub sponsor_require: Option<String>,

    /// Accept the agent's own Sidetrace-Sponsor header as its sponsor (assurance "header").
    #[arg(long, env = "SIDETRACE_ALLOW_HEADER_SPONSOR")]
    pub allow_header_sponsor: bool,

    /// A trusted OIDC issuer, exactly as its tokens' iss says (repeatable; keys from its
    /// /.well-known/openid-configuration). Needs --oidc-audience.
    #[arg(
        long = "oidc-issuer",
        env = "SIDETRACE_OIDC_ISSUER",
        value_delimiter = ',',
        value_name = "URL"
    )]
    pub oidc_issuers: Vec<String>,

    /// The audience sponsor tokens from --oidc-issuer must be minted for.
    #[arg(long, env = "SIDETRACE_OIDC_AUDIENCE", value_name = "AUD")]
    pub oidc_audience: Option<String>,

    /// The change (merge/pull request) id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_CHANGE_ID", value_name = "ID")]
    pub change_id: Option<String>,

    /// The repository URL, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_REPOSITORY", value_name = "URL")]
    pub repository: Option<String>,

    /// The source branch, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_BRANCH", value_name = "NAME")]
    pub branch: Option<String>,

    /// The head revision (commit), when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_REVISION", value_name = "SHA")]
    pub revision: Option<String>,

    /// The CI pipeline run id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_PIPELINE_RUN_ID", value_name = "ID")]
    pub pipeline_run_id: Option<String>,

    /// The CI pipeline run URL, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_PIPELINE_URL", value_name = "URL")]
    pub pipeline_url: Option<String>,

    /// The CI job id, when neither a token nor the request says.
    #[arg(long, env = "SIDETRACE_JOB_ID", value_name = "ID")]
    pub job_id: Option<String>,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish [default: 30s].
    #[arg(long, env = "SIDETRACE_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,

    /// "batched" (group commit off the request path) or "write-ahead" (each
    /// request is fsynced to the journal before it goes upstream) [default: batched].
    #[arg(long, env = "SIDETRACE_DURABILITY", value_name = "MODE")]
    pub durability: Option<String>,

    /// Ed25519 key (PKCS#8 PEM) that signs journal checkpoints; created 0600
    /// if missing [default: signing-key.pem beside the journal].
    #[arg(long, env = "SIDETRACE_SIGNING_KEY", value_name = "FILE")]
    pub signing_key: Option<PathBuf>,

    /// Largest the journal file may grow; past it, writes fail as on a full disk.
    #[arg(long, env = "SIDETRACE_JOURNAL_MAX_SIZE", value_name = "SIZE")]
    pub journal_max_size: Option<String>,

    /// OTLP collector to stream spans to, e.g. http://localhost:4318 (http/protobuf)
    /// or http://localhost:4317 (grpc) [default: OTEL_EXPORTER_OTLP_ENDPOINT; none: no export].
    #[arg(long, env = "SIDETRACE_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,

    /// "grpc" or "http/protobuf" [default: OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf].
    #[arg(long, env = "SIDETRACE_OTLP_PROTOCOL", value_name = "PROTOCOL")]
    pub otlp_protocol: Option<String>,

    /// How much message content goes on spans: "full", "delta" or "none" [default: delta].
    #[arg(long, env = "SIDETRACE_EXPORT_CONTENT", value_name = "MODE")]
    pub export_content: Option<String>,

    /// On shutdown, how long to keep exporting spans not yet sent [default: 10s];
    /// whatever is left goes out on the next start.
    #[arg(
        long,
        env = "SIDETRACE_EXPORT_SHUTDOWN_TIMEOUT",
        value_name = "DURATION"
    )]
    pub export_shutdown_timeout: Option<String>,

    /// How long executions are kept, e.g. "400d" (applied by `sidetrace journal prune`).
    #[arg(long, env = "SIDETRACE_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
}

impl ProxyArgs {
    pub fn load(&self) -> Result<ProxyConfig, crate::config::ConfigErrors> {
        let o = Overrides {
            listen: self.listen.clone(),
            admin: self.admin.clone(),
            routes: self.routes.clone(),
            upstream_ca: self.upstream_ca.clone(),
            upstream_timeout: self.upstream_timeout.clone(),
            connect_timeout: self.connect_timeout.clone(),
            journal: self.journal.clone(),
            capture_max_body: self.capture_max_body.clone(),
            execution_id: self.execution_id.clone(),
            drain_timeout: self.drain_timeout.clone(),
            durability: self.durability.clone(),
            signing_key: self.signing_key.clone(),
            retention: self.retention.clone(),
            journal_max_size: self.journal_max_size.clone(),
            export: crate::config::export::ExportFlags {
                content: self.export_content.clone(),
                endpoint: self.otlp_endpoint.clone(),
                protocol: self.otlp_protocol.clone(),
                shutdown_timeout: self.export_shutdown_timeout.clone(),
            },
            identity: crate::config::identity::IdentityFlags {
                sponsor: self.sponsor.clone(),
                sponsor_file: self.sponsor_file.clone(),
                sponsor_token_file: self.sponsor_token_file.clone(),
                require: self.sponsor_require.clone(),
                allow_header: self.allow_header_sponsor,
                oidc_issuers: self.oidc_issuers.clone(),
                oidc_audience: self.oidc_audience.clone(),
                change_id: self.change_id.clone(),
                repository: self.repository.clone(),
                branch: self.branch.clone(),
                revision: self.revision.clone(),
                pipeline_run_id: self.pipeline_run_id.clone(),
                pipeline_url: self.pipeline_url.clone(),
                job_id: self.job_id.clone(),
            },
        };
        ProxyConfig::load(self.config.as_deref(), o)
    }
}

pub fn run(args: ProxyArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidetrace")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let routes: Vec<String> = config
            .routes
            .iter()
            .map(|r| format!("{} -> {}", r.prefix, r.upstream))
            .collect();
        let journal = config.journal.path.display().to_string();
        let durability = format!("{:?}", config.journal.durability).to_lowercase();
        let shutdown = shutdown_signal()?;
        let server = Server::bind(config).await?;
        tracing::info!(
            listen = %server.local_addr(),
            admin = %server.admin_addr(),
            journal = %journal,
            durability = %durability,
            execution = %server.default_execution_id(),
            routes = %routes.join(", "),
            "sidetrace proxy listening"
        );
        server.run(shutdown).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed
/// when this is called, not when the future is first polled: a signal sent
/// right after sidetrace says it is listening must not kill it outright.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
