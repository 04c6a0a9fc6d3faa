//! `sidetrace run [options] -- <command> [args...]`: record a whole unit of
//! work. The flags are `sidetrace proxy`'s, plus the task and `--proxy`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::proxy::ProxyArgs;
use crate::run::{RunOptions, Task};

#[derive(Debug, Args)]
#[command(after_help = "Examples:\n  \
sidetrace run --sponsor alice@example.com --change-id '!1234' -- claude -p \"fix the failing test\"\n  \
sidetrace run --task-file TASK.md -- codex exec \"$(cat TASK.md)\"\n  \
sidetrace run --proxy http://127.0.0.1:4480 --ca-dir /etc/sidetrace/ca -- ./agent.sh\n\n\
The command runs with HTTPS_PROXY/HTTP_PROXY pointing at the recorder, NO_PROXY=localhost,127.0.0.1, \
and NODE_EXTRA_CA_CERTS, SSL_CERT_FILE, REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE trusting sidetrace's CA; \
SIDETRACE_EXECUTION_ID, SIDETRACE_JOURNAL and the sponsor settings are set so that MCP servers wrapped \
with `sidetrace mcp --` join the same execution. Without --proxy the recorder runs in-process on an \
ephemeral loopback port. The exit status is the command's (127 if it cannot be found).")]
pub struct RunArgs {
    /// A file holding the task the agent was given (recorded with its digest)
    /// [default: the command line].
    #[arg(
        long = "task",
        visible_alias = "task-file",
        value_name = "FILE",
        conflicts_with = "task_text"
    )]
    pub task: Option<PathBuf>,

    /// The task the agent was given, as text [default: the command line].
    #[arg(long, value_name = "TEXT")]
    pub task_text: Option<String>,

    /// Use a running sidetrace (a sidecar) at URL instead of starting one, e.g.
    /// http://127.0.0.1:4480. Its journal (--journal) and CA (--ca-dir) must be
    /// reachable from here; the command's traffic is tagged with this run's execution.
    #[arg(long = "proxy", value_name = "URL")]
    pub proxy_url: Option<String>,

    /// Do not print the summary when the command is done.
    #[arg(long)]
    pub quiet: bool,

    #[command(flatten)]
    pub proxy: ProxyArgs,

    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = args.proxy.load()?;
    let task = match (args.task, args.task_text) {
        (Some(file), _) => Task::File(file),
        (None, Some(text)) => Task::Text(text),
        (None, None) => Task::CommandLine,
    };
    crate::run::run(RunOptions {
        config,
        listen_given: args.proxy.listen.is_some(),
        admin_given: args.proxy.admin.is_some(),
        task,
        proxy_url: args.proxy_url,
        recording_env: recording_env(&args.proxy),
        command: args.command,
        summary: !args.quiet,
    })
}

/// The recording flags given, as the `SIDETRACE_*` variables `sidetrace mcp`
/// reads, so a wrapper started by the command records the same way.
fn recording_env(p: &ProxyArgs) -> Vec<(String, String)> {
    let r = &p.record;
    let path = |p: &Option<PathBuf>| {
        p.as_ref().map(|p| {
            std::path::absolute(p)
                .unwrap_or_else(|_| p.clone())
                .display()
                .to_string()
        })
    };
    let list = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
    [
        ("SIDETRACE_CONFIG", path(&r.config)),
        ("SIDETRACE_CAPTURE_MAX_BODY", r.capture_max_body.clone()),
        ("SIDETRACE_SPONSOR", r.sponsor.clone()),
        ("SIDETRACE_SPONSOR_FILE", path(&r.sponsor_file)),
        ("SIDETRACE_SPONSOR_TOKEN_FILE", path(&r.sponsor_token_file)),
        ("SIDETRACE_SPONSOR_REQUIRE", r.sponsor_require.clone()),
        ("SIDETRACE_OIDC_ISSUER", list(&r.oidc_issuers)),
        ("SIDETRACE_OIDC_AUDIENCE", r.oidc_audience.clone()),
        ("SIDETRACE_CHANGE_ID", r.change_id.clone()),
        ("SIDETRACE_REPOSITORY", r.repository.clone()),
        ("SIDETRACE_BRANCH", r.branch.clone()),
        ("SIDETRACE_REVISION", r.revision.clone()),
        ("SIDETRACE_PIPELINE_RUN_ID", r.pipeline_run_id.clone()),
        ("SIDETRACE_PIPELINE_URL", r.pipeline_url.clone()),
        ("SIDETRACE_JOB_ID", r.job_id.clone()),
        ("SIDETRACE_DURABILITY", r.durability.clone()),
        ("SIDETRACE_JOURNAL_MAX_SIZE", r.journal_max_size.clone()),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
    .collect()
}
