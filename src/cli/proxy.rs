//! `sidetrace proxy`: run the recording reverse proxy until SIGTERM/SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::config::{Overrides, ProxyConfig};

use super::record_args::RecordArgs;
use crate::proxy::Server;

/// Flags of `proxy` and `check-config`. Each is also read from the
/// `SIDETRACE_*` variable named in its help.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
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

    /// A route to an MCP server over Streamable HTTP or HTTP+SSE, PREFIX=UPSTREAM_URL
    /// (repeatable; added to the model routes), e.g. /github=https://api.githubcopilot.com/mcp.
    #[arg(
        long = "mcp-route",
        env = "SIDETRACE_MCP_ROUTE",
        value_delimiter = ',',
        value_name = "PREFIX=URL"
    )]
    pub mcp_routes: Vec<String>,

    /// Connect to ADDR instead of HOST:PORT, as curl's --resolve (repeatable), e.g.
    /// api.openai.com:443=127.0.0.1:8443. TLS still checks the certificate for HOST.
    #[arg(
        long = "resolve",
        env = "SIDETRACE_RESOLVE",
        value_delimiter = ',',
        value_name = "HOST:PORT=ADDR"
    )]
    pub resolve: Vec<String>,

    /// A host whose HTTPS_PROXY traffic is intercepted and recorded (repeatable; replaces
    /// the built-in list of model API hosts; `*.example.com` for subdomains).
    #[arg(
        long = "intercept-host",
        env = "SIDETRACE_INTERCEPT_HOST",
        value_delimiter = ',',
        value_name = "HOST"
    )]
    pub intercept_hosts: Vec<String>,

    /// Directory of sidetrace's CA (ca-key.pem, ca-cert.pem), created on first use
    /// [default: $XDG_DATA_HOME/sidetrace/ca].
    #[arg(long, env = "SIDETRACE_CA_DIR", value_name = "DIR")]
    pub ca_dir: Option<PathBuf>,

    /// Require Proxy-Authorization (Basic) from forward-proxy clients: USER:PASSWORD
    /// (repeatable). Reverse routes are unaffected.
    #[arg(
        long = "proxy-auth",
        env = "SIDETRACE_PROXY_AUTH",
        value_delimiter = ',',
        value_name = "USER:PASSWORD"
    )]
    pub proxy_auth: Vec<String>,

    /// Extra PEM CA certificate(s) to trust for upstream TLS, besides the system and webpki roots.
    #[arg(long, env = "SIDETRACE_UPSTREAM_CA", value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// How long to wait for an upstream's response headers before answering 504 [default: 10m].
    #[arg(long, env = "SIDETRACE_UPSTREAM_TIMEOUT", value_name = "DURATION")]
    pub upstream_timeout: Option<String>,

    /// How long to wait for a TCP connection to an upstream [default: 10s].
    #[arg(long, env = "SIDETRACE_CONNECT_TIMEOUT", value_name = "DURATION")]
    pub connect_timeout: Option<String>,

    /// Accept the agent's own Sidetrace-Sponsor header as its sponsor (assurance "header").
    #[arg(long, env = "SIDETRACE_ALLOW_HEADER_SPONSOR")]
    pub allow_header_sponsor: bool,

    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish [default: 30s].
    #[arg(long, env = "SIDETRACE_DRAIN_TIMEOUT", value_name = "DURATION")]
    pub drain_timeout: Option<String>,

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

    #[command(flatten)]
    pub record: RecordArgs,
}

impl ProxyArgs {
    pub fn load(&self) -> Result<ProxyConfig, crate::config::ConfigErrors> {
        let o = Overrides {
            listen: self.listen.clone(),
            admin: self.admin.clone(),
            routes: self.routes.clone(),
            mcp_routes: self.mcp_routes.clone(),
            upstream_ca: self.upstream_ca.clone(),
            upstream_timeout: self.upstream_timeout.clone(),
            connect_timeout: self.connect_timeout.clone(),
            drain_timeout: self.drain_timeout.clone(),
            retention: self.retention.clone(),
            export: crate::config::export::ExportFlags {
                content: self.export_content.clone(),
                endpoint: self.otlp_endpoint.clone(),
                protocol: self.otlp_protocol.clone(),
                shutdown_timeout: self.export_shutdown_timeout.clone(),
            },
            forward: crate::config::forward::ForwardFlags {
                resolve: self.resolve.clone(),
                intercept_hosts: self.intercept_hosts.clone(),
                ca_dir: self.ca_dir.clone(),
                proxy_auth: self.proxy_auth.clone(),
            },
            ..self.record.overrides(self.allow_header_sponsor)
        };
        ProxyConfig::load(self.record.config.as_deref(), o)
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
