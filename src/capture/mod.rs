//! Capture: from copies of the bytes that crossed the proxy to normalized
//! records. Nothing here is on the forwarding path: the tee hands over frames
//! it already holds, and all decoding and parsing happens in a per-exchange
//! task that finishes after the agent has its response.

pub mod anthropic;
pub mod api;
pub mod body;
pub mod context;
pub mod decode;
pub mod exchange;
pub mod linking;
pub mod mcp;
pub mod openai_chat;
pub mod openai_responses;
pub mod parts;
pub mod pool;
mod record_builder;
pub mod session;
pub mod sse;
pub mod websocket;
pub mod websocket_session;

#[cfg(test)]
mod golden_tests;
