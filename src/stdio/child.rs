//! The wrapped MCP server process: started with piped stdin/stdout and the
//! wrapper's own stderr, and told to die with the wrapper (Linux). Signals
//! and exit codes are `crate::process`'s.

use std::process::Stdio;

use anyhow::Context as _;
use tokio::process::{Child, Command};

/// Starts `command` (program and arguments).
pub fn spawn(command: &[String]) -> anyhow::Result<Child> {
    let (program, args) = command
        .split_first()
        .context("no server command given; usage: sidetrace mcp -- <command> [args...]")?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    crate::process::die_with_parent(&mut cmd);
    cmd.spawn()
        .with_context(|| format!("cannot start the MCP server {program:?}"))
}
