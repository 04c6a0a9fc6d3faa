//! `sidetrace mcp [--name NAME] -- <server command> [args...]`: wrap a stdio
//! MCP server so every message between the agent and it is recorded.

use std::process::ExitCode;

use clap::Args;

use crate::config::ProxyConfig;
use crate::stdio::{self, WrapOptions};

use super::record_args::RecordArgs;

#[derive(Debug, Args)]
#[command(
    after_help = "In the agent's MCP configuration, put sidetrace in front of the server's command:\n  \
\"command\": \"sidetrace\", \"args\": [\"mcp\", \"--\", \"npx\", \"-y\", \"@modelcontextprotocol/server-filesystem\", \".\"]\n\
The wrapper records into the same journal and execution as the proxy (set SIDETRACE_JOURNAL, \
SIDETRACE_EXECUTION_ID and the sponsor the same way for both, or let `sidetrace run` do it); \
the proxy exports the records as spans."
)]
pub struct McpArgs {
    /// The server's name in the record [default: the name its initialize answer gives].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,

    #[command(flatten)]
    pub record: RecordArgs,

    /// The MCP server's command and arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: McpArgs) -> anyhow::Result<ExitCode> {
    let config = ProxyConfig::load(args.record.config.as_deref(), args.record.overrides(false))?;
    stdio::run(WrapOptions {
        config,
        name: args.name,
        command: args.command,
    })
}
