//! The command line: `sidetrace <command>`. Each subcommand lives in its own
//! file; this one parses arguments, sets up logging and maps errors to exit
//! codes.

mod ca;
mod check_config;
mod journal;
mod mcp;
mod proxy;
mod record_args;
mod run;
mod show;
mod summary;
mod summary_mcp;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "sidetrace",
    version,
    about = "The flight recorder for AI coding agents",
    long_about = "sidetrace stands between an agent and its model APIs, forwards every byte unchanged, \
and records each exchange (prompts, tool calls, served model versions, usage) into a local journal, \
tagged with the human sponsor and the change it belongs to."
)]
pub struct Cli {
    /// Log format for sidetrace's own logs (stderr).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "SIDETRACE_LOG_FORMAT"
    )]
    log_format: LogFormat,

    /// Log level or filter (e.g. "info", "debug", "sidetrace=debug,hyper=info"); RUST_LOG wins if
    /// set [default: info; warn for `run`, whose stderr is the command's].
    #[arg(long, global = true, env = "SIDETRACE_LOG_LEVEL")]
    log_level: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the recording reverse proxy.
    Proxy(proxy::ProxyArgs),
    /// Print what the journal recorded: executions and their interactions.
    Show(show::ShowArgs),
    /// Validate the configuration (file, environment and flags) and print the effective settings.
    CheckConfig(proxy::ProxyArgs),
    /// Run a stdio MCP server and record every message between the agent and it.
    Mcp(mcp::McpArgs),
    /// Verify the journal's tamper evidence, export its public key, or prune it.
    #[command(subcommand)]
    Journal(journal::JournalCommand),
    /// Run a command (an agent) with its model and tool traffic recorded as one
    /// execution: the task, the repository before and after, every interaction.
    Run(run::RunArgs),
    /// Manage the local certificate authority that HTTPS_PROXY mode uses to
    /// intercept TLS: create it, print its certificate, write a CA bundle.
    #[command(subcommand)]
    Ca(ca::CaCommand),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Run(_) => "warn",
        _ => "info",
    };
    init_logging(
        cli.log_format,
        cli.log_level.as_deref().unwrap_or(default_level),
    );
    let result = match cli.command {
        Command::Proxy(args) => proxy::run(args),
        Command::Show(args) => show::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Journal(c) => journal::run(c),
        Command::Mcp(args) => mcp::run(args),
        Command::Ca(c) => ca::run(c),
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sidetrace: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn init_logging(format: LogFormat, level: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
    }
}
