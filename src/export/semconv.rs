//! Attribute and span names: the OpenTelemetry GenAI, MCP, VCS, CI/CD and
//! Kubernetes conventions (the `semantic-conventions-genai` repository is
//! the reference; the Rust semconv crate's GenAI constants are stale), plus
//! sidetrace's own. Every name sidetrace exports is defined here, once.

// Operations and span names.
pub const OP_INVOKE_AGENT: &str = "invoke_agent";
pub const OP_CHAT: &str = "chat";
pub const OP_EXECUTE_TOOL: &str = "execute_tool";

// GenAI inference.
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const OPENAI_API_TYPE: &str = "openai.api.type";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_REQUEST_STREAM: &str = "gen_ai.request.stream";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_TEMPERATURE: &str = "gen_ai.request.temperature";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK: &str = "gen_ai.response.time_to_first_chunk";
pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const GEN_AI_USAGE_CACHE_WRITE_INPUT_TOKENS: &str = "gen_ai.usage.cache_write.input_tokens";
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";

// GenAI content (JSON strings, governed by the content mode).
pub const GEN_AI_SYSTEM_INSTRUCTIONS: &str = "gen_ai.system_instructions";
pub const GEN_AI_INPUT_MESSAGES: &str = "gen_ai.input.messages";
pub const GEN_AI_OUTPUT_MESSAGES: &str = "gen_ai.output.messages";
pub const GEN_AI_TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

// Tools.
pub const GEN_AI_TOOL_NAME: &str = "gen_ai.tool.name";
pub const GEN_AI_TOOL_CALL_ID: &str = "gen_ai.tool.call.id";
pub const GEN_AI_TOOL_TYPE: &str = "gen_ai.tool.type";
pub const GEN_AI_TOOL_CALL_ARGUMENTS: &str = "gen_ai.tool.call.arguments";
pub const GEN_AI_TOOL_CALL_RESULT: &str = "gen_ai.tool.call.result";

// Network and errors.
pub const SERVER_ADDRESS: &str = "server.address";
pub const SERVER_PORT: &str = "server.port";
pub const ERROR_TYPE: &str = "error.type";
pub const HTTP_RESPONSE_STATUS_CODE: &str = "http.response.status_code";

// Sponsor and correlation: on every span.
pub const ENDUSER_ID: &str = "enduser.id";
pub const VCS_CHANGE_ID: &str = "vcs.change.id";
pub const VCS_REPOSITORY_URL_FULL: &str = "vcs.repository.url.full";
pub const VCS_REF_HEAD_NAME: &str = "vcs.ref.head.name";
pub const VCS_REF_HEAD_REVISION: &str = "vcs.ref.head.revision";
pub const VCS_PROVIDER_NAME: &str = "vcs.provider.name";
pub const CICD_PIPELINE_RUN_ID: &str = "cicd.pipeline.run.id";
pub const CICD_PIPELINE_RUN_URL_FULL: &str = "cicd.pipeline.run.url.full";
pub const CICD_PIPELINE_TASK_RUN_ID: &str = "cicd.pipeline.task.run.id";

// Resource.
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_INSTANCE_ID: &str = "service.instance.id";
pub const K8S_POD_NAME: &str = "k8s.pod.name";
pub const K8S_NAMESPACE_NAME: &str = "k8s.namespace.name";
pub const K8S_NODE_NAME: &str = "k8s.node.name";

// sidetrace's own.
pub const SIDETRACE_EXECUTION_ID: &str = "sidetrace.execution.id";
pub const SIDETRACE_SPONSOR_ASSURANCE: &str = "sidetrace.sponsor.assurance";
pub const SIDETRACE_INTERACTION_ID: &str = "sidetrace.interaction.id";
pub const SIDETRACE_INPUT_DIGEST: &str = "sidetrace.input.digest";
pub const SIDETRACE_OUTPUT_DIGEST: &str = "sidetrace.output.digest";
pub const SIDETRACE_SYSTEM_INSTRUCTIONS_DIGEST: &str = "sidetrace.system_instructions.digest";
pub const SIDETRACE_TOOL_DEFINITIONS_DIGEST: &str = "sidetrace.tool.definitions.digest";
pub const SIDETRACE_TOOL_CALL_ARGUMENTS_DIGEST: &str = "sidetrace.tool.call.arguments.digest";
pub const SIDETRACE_TOOL_CALL_RESULT_DIGEST: &str = "sidetrace.tool.call.result.digest";
pub const SIDETRACE_TOOL_CALL_RESULT_SIZE: &str = "sidetrace.tool.call.result.size";
pub const SIDETRACE_TURN: &str = "sidetrace.conversation.turn";
pub const SIDETRACE_COMPLETION: &str = "sidetrace.completion";
pub const SIDETRACE_EXECUTION_END_REASON: &str = "sidetrace.execution.end_reason";
pub const SIDETRACE_AGENT_USER_AGENT: &str = "sidetrace.agent.user_agent";
pub const SIDETRACE_AGENT_CREDENTIAL: &str = "sidetrace.agent.credential_fingerprint";
/// Prefix: `sidetrace.truncated.<attribute>` = "<digest> <full size>".
pub const SIDETRACE_TRUNCATED_PREFIX: &str = "sidetrace.truncated.";

// Context references, as span events on the chat span that carried them.
pub const EVENT_CONTEXT_REFERENCE: &str = "sidetrace.context.reference";
pub const SIDETRACE_CONTEXT_KIND: &str = "sidetrace.context.kind";
pub const SIDETRACE_CONTEXT_URI: &str = "sidetrace.context.uri";
pub const SIDETRACE_CONTEXT_DIGEST: &str = "sidetrace.context.digest";
pub const SIDETRACE_CONTEXT_SIZE: &str = "sidetrace.context.size";
pub const SIDETRACE_CONTEXT_MIME_TYPE: &str = "sidetrace.context.mime_type";

// MCP (semantic-conventions-genai `model/mcp`).
pub const MCP_METHOD_NAME: &str = "mcp.method.name";
/// Only for a session an `Mcp-Session-Id` names (never for 2026-07-28+).
pub const MCP_SESSION_ID: &str = "mcp.session.id";
pub const MCP_PROTOCOL_VERSION: &str = "mcp.protocol.version";
pub const MCP_RESOURCE_URI: &str = "mcp.resource.uri";
pub const JSONRPC_REQUEST_ID: &str = "jsonrpc.request.id";
pub const RPC_RESPONSE_STATUS_CODE: &str = "rpc.response.status_code";
pub const GEN_AI_PROMPT_NAME: &str = "gen_ai.prompt.name";
pub const NETWORK_TRANSPORT: &str = "network.transport";
pub const NETWORK_PROTOCOL_NAME: &str = "network.protocol.name";
/// The protocol revision MCP 2026-07-28 made sessionless.
pub const MCP_SESSIONLESS_VERSION: &str = "2026-07-28";
pub const SIDETRACE_MCP_SESSION_ID: &str = "sidetrace.mcp.session.id";
pub const SIDETRACE_MCP_SERVER_NAME: &str = "sidetrace.mcp.server.name";
pub const SIDETRACE_MCP_INITIATOR: &str = "sidetrace.mcp.initiator";
pub const SIDETRACE_MCP_UNANSWERED: &str = "sidetrace.mcp.unanswered";
pub const SIDETRACE_MCP_PROGRESS_NOTIFICATIONS: &str = "sidetrace.mcp.progress_notifications";
pub const SIDETRACE_MCP_RELATED_REQUEST_ID: &str = "sidetrace.mcp.related_request.id";
pub const SIDETRACE_MCP_RESULT_DIGEST: &str = "sidetrace.mcp.result.digest";
/// The span name of a message that is not readable JSON-RPC.
pub const SPAN_MCP_INVALID: &str = "mcp invalid message";

// Connections recorded as metadata: blind CONNECT tunnels and WebSockets.
pub const SIDETRACE_CONNECTION_BYTES_TO_UPSTREAM: &str = "sidetrace.connection.bytes_to_upstream";
pub const SIDETRACE_CONNECTION_BYTES_TO_CLIENT: &str = "sidetrace.connection.bytes_to_client";
pub const SIDETRACE_TUNNEL_INTERCEPTED: &str = "sidetrace.tunnel.intercepted";
pub const SIDETRACE_WEBSOCKET_MESSAGES_TO_UPSTREAM: &str =
    "sidetrace.websocket.messages_to_upstream";
pub const SIDETRACE_WEBSOCKET_MESSAGES_TO_CLIENT: &str = "sidetrace.websocket.messages_to_client";
pub const SIDETRACE_WEBSOCKET_CLOSE_CODE: &str = "sidetrace.websocket.close_code";
pub const SIDETRACE_WEBSOCKET_TURNS: &str = "sidetrace.websocket.turns";
pub const SIDETRACE_WEBSOCKET_CONNECTION_ID: &str = "sidetrace.websocket.connection.id";
