//! Integration tests: the proxy in-process or as the real binary, against a
//! mock upstream, driven by the official SDKs, curl, raw HTTP and a real agent.

mod common;

mod agent;
mod agent_mcp;
mod cli;
mod durability;
mod export;
mod failures;
mod forward_proxy;
mod journal_tamper;
mod linking;
mod mcp_http;
mod mcp_link;
mod mcp_stdio;
mod passthrough;
mod run;
mod run_agents;
mod sdk_anthropic;
mod sdk_openai;
mod sponsor;
mod storage;
mod websocket;
