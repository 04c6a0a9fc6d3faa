//! Model Context Protocol capture, for both transports: the stdio wrapper
//! (`sidetrace mcp`) and Streamable HTTP / HTTP+SSE routes. Transports hand
//! each message they relay to a session's recorder ([`recorder`]); it pairs
//! requests with responses ([`pairing`]) and turns each finished exchange,
//! notification or malformed message into an `Interaction`
//! ([`interaction`]). Linking MCP `tools/call`s to the model's tool calls
//! happens when the record is read ([`link`]): the wrapper is often another
//! process than the proxy that saw the model's call.

pub mod interaction;
pub mod link;
pub mod message;
pub mod pairing;
pub mod recorder;

use crate::record::{AgentIdentity, Correlation, HttpExchange, Sponsor};

pub use message::Side;

/// The JSON-RPC code of sidetrace's own errors (in the -32000..-32099
/// "server error" range): refusals and unreachable servers.
pub const SIDETRACE_ERROR_CODE: i64 = -32001;

/// `network.transport` values.
pub const TRANSPORT_PIPE: &str = "pipe";
pub const TRANSPORT_TCP: &str = "tcp";

/// A peer as `initialize` (or the 2026 per-request `_meta`) names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Peer {
    pub name: String,
    pub version: String,
}

/// What is known about a session when a message is recorded.
#[derive(Debug, Clone, Default)]
pub struct SessionInfo {
    /// `Mcp-Session-Id` (HTTP), or the wrapper's own id for a stdio session.
    pub session_id: String,
    pub protocol_version: String,
    /// `--name` (stdio); else empty, and records name the server as its
    /// initialize (or 2026 `_meta`) answer does.
    pub server_name: String,
    pub client: Option<Peer>,
    pub server: Option<Peer>,
    /// `pipe` or `tcp`.
    pub transport: &'static str,
}

/// Who and what a message belongs to, and how it travelled.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    pub execution_id: String,
    pub sponsor: Sponsor,
    pub correlation: Correlation,
    pub agent: AgentIdentity,
    /// The route prefix (HTTP) or `stdio`.
    pub route: String,
    /// The HTTP exchange that carried the message (bodies not repeated).
    pub http: Option<HttpExchange>,
}

impl Origin {
    /// The origin of messages in a request resolved to `ctx`.
    pub fn new(
        ctx: &crate::record::execution::RequestContext,
        route: &str,
        http: Option<HttpExchange>,
    ) -> Self {
        Self {
            execution_id: ctx.execution_id.clone(),
            sponsor: ctx.sponsor.clone(),
            correlation: ctx.correlation.clone(),
            agent: ctx.agent.clone(),
            route: route.to_owned(),
            http,
        }
    }
}

/// An HTTP exchange of an MCP route that is not itself a JSON-RPC message:
/// the server's GET stream, the DELETE that ends a session, or an HTTP
/// error with nothing JSON-RPC in it.
#[derive(Debug, Clone)]
pub struct TransportEvent {
    /// "stream", "session_end" or "http_error".
    pub event: &'static str,
    pub origin: std::sync::Arc<Origin>,
    pub start: std::time::SystemTime,
    pub end: std::time::SystemTime,
    pub status: crate::record::CompletionStatus,
    pub detail: String,
    /// The write-ahead start record this completes, if any.
    pub record_id: Option<String>,
}

/// Methods the MCP specification defines (2024-11-05 through 2026-07-28).
pub const KNOWN_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "elicitation/create",
    "roots/list",
    "subscriptions/listen",
    "tasks/get",
    "tasks/result",
    "tasks/list",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/roots/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
    "notifications/subscriptions/acknowledged",
];

pub fn is_known_method(method: &str) -> bool {
    KNOWN_METHODS.contains(&method)
}
