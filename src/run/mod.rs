//! `sidetrace run -- <command>`: one command records a whole unit of work.
//!
//! The run opens an execution (the task, the sponsor, the repository it
//! starts from), runs the command with every common HTTP stack pointed at a
//! recorder — its own, in-process on an ephemeral loopback port, or a
//! running sidecar (`--proxy`) — and, when the command exits, records the
//! repository it leaves (new commits, uncommitted diff) and closes the
//! execution with the exit status.
//!
//! Guarantees: the command's stdio is its own, signals sent to sidetrace
//! reach it, and sidetrace exits with its status (127/126 when it cannot be
//! started, which is recorded too). The closing record is journalled after
//! the recorder has flushed every capture of the run, so nothing the
//! command did is recorded after its execution ended. Outside a git
//! repository the work is recorded without repository state.

mod environment;
mod git;
mod record;
pub mod repo;
mod summary;

use std::net::SocketAddr;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use http::HeaderMap;
use tokio::sync::oneshot;

use crate::ca::{Authority, TrustAnchor};
use crate::config::ProxyConfig;
use crate::identity::Identity;
use crate::journal::Journal;
use crate::journal::reader::JournalReader;
use crate::metrics::Metrics;
use crate::proxy::Server;
use crate::proxy::connect::EXECUTION_PROXY_USER;

pub use record::Task;
use record::{Opening, Outcome};

pub struct RunOptions {
    pub config: ProxyConfig,
    /// `--listen` / `--admin` were given; otherwise ephemeral loopback ports.
    pub listen_given: bool,
    pub admin_given: bool,
    pub task: Task,
    /// A running recorder to use instead of an in-process one.
    pub proxy_url: Option<String>,
    pub command: Vec<String>,
    /// `SIDETRACE_*` settings passed on, so that a `sidetrace mcp` wrapper
    /// the command starts records the same way.
    pub recording_env: Vec<(String, String)>,
    /// Print the summary when done.
    pub summary: bool,
}

pub fn run(opts: RunOptions) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sidetrace-run")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run_command(opts))
}

/// The recorder the command talks to.
enum Recorder {
    InProcess {
        closing: oneshot::Sender<crate::record::ExecutionEnd>,
        stop: oneshot::Sender<()>,
        task: tokio::task::JoinHandle<()>,
    },
    Sidecar {
        journal: Journal,
        writer: crate::journal::WriterThread,
    },
}

async fn run_command(mut o: RunOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let start = SystemTime::now();
    anyhow::ensure!(
        !o.command.is_empty(),
        "no command given; usage: sidetrace run [options] -- <command> [args...]"
    );
    let id_given = o.config.execution.execution_id.is_some();
    let execution_id = o
        .config
        .execution
        .execution_id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    o.config.execution.execution_id = Some(execution_id.clone());
    let ephemeral = SocketAddr::from(([127, 0, 0, 1], 0));
    if !o.listen_given {
        o.config.listen = ephemeral;
    }
    if !o.admin_given {
        o.config.admin = ephemeral;
    }

    let task = record::task_spec(&o.task, &o.command).map_err(anyhow::Error::msg)?;
    let workdir = record::working_dir();
    let before = record::capture_repository(workdir.clone()).await;
    if let Some(repo) = &before {
        let ci = o.config.identity.ci.clone();
        record::correlation_from_repository(&mut o.config.identity.configured, &ci, repo);
    }
    let identity = Identity::from_config(&o.config.identity)?;
    let resolved = match identity.resolve(&HeaderMap::new()).await {
        Ok(r) => r,
        Err(refusal) => anyhow::bail!(
            "{} (sidetrace run records the work of a sponsor; the command was not started)",
            refusal.message
        ),
    };

    let authority = certificate_authority(&o).await?;
    let scratch = Scratch::create(&execution_id)?;
    let bundle_path = scratch.path.join("ca-bundle.pem");
    let bundle = authority.bundle().context("building the CA bundle")?;
    bundle
        .write_to(&bundle_path)
        .context("writing the CA bundle")?;

    let journal_path = o.config.journal.path.clone();
    let opening = record::execution(Opening {
        execution_id: &execution_id,
        id_given,
        start,
        identity: &resolved,
        task,
        repository: before.as_ref(),
    });
    let (recorder, proxy_url) = match &o.proxy_url {
        None => {
            let mut server = Server::bind(o.config.clone()).await?;
            server.adopt_execution(&execution_id);
            let closing = server.closing_record();
            if let Err(e) = server.journal().append_execution(opening).await {
                anyhow::bail!("cannot record the execution: {}", e.0);
            }
            let url = format!("http://{}", server.local_addr());
            tracing::debug!(listen = %url, admin = %server.admin_addr(), "recorder started");
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(server.run(async move {
                let _ = stopped.await;
            }));
            (
                Recorder::InProcess {
                    closing,
                    stop,
                    task,
                },
                url,
            )
        }
        Some(url) => {
            let url = environment::with_credentials(url, EXECUTION_PROXY_USER, &execution_id)
                .map_err(|e| anyhow::anyhow!("--proxy {e}"))?;
            let (journal, writer) = Journal::open(&o.config.journal, Arc::new(Metrics::new()))?;
            if let Err(e) = journal.append_execution(opening).await {
                journal.close(writer).await;
                anyhow::bail!("cannot record the execution: {}", e.0);
            }
            (Recorder::Sidecar { journal, writer }, url)
        }
    };

    let mut env = environment::proxy_variables(&environment::Wiring {
        proxy_url: &proxy_url,
        ca_cert: authority.path(),
        ca_bundle: &bundle_path,
    });
    env.extend(o.recording_env.iter().cloned());
    env.push(("SIDETRACE_EXECUTION_ID".into(), execution_id.clone()));
    env.push((
        "SIDETRACE_JOURNAL".into(),
        absolute(&journal_path).display().to_string(),
    ));
    env.push((
        "SIDETRACE_SIGNING_KEY".into(),
        absolute(&o.config.journal.signing_key)
            .display()
            .to_string(),
    ));

    let outcome = run_child(&o.command, &env).await;
    let after = match &before {
        Some(b) => record::capture_repository(b.root.clone()).await,
        None => None,
    };
    let commits = match (&before, &after) {
        (Some(b), Some(a)) => record::commits_made(b, a).await,
        _ => Vec::new(),
    };
    let end = record::execution_end(
        &execution_id,
        &outcome,
        after.as_ref().map(|a| (a, commits.as_slice())),
    );
    match recorder {
        Recorder::InProcess {
            closing,
            stop,
            task,
        } => {
            let _ = closing.send(end);
            let _ = stop.send(());
            if let Err(e) = task.await {
                tracing::error!(error = %e, "the recorder failed while shutting down");
            }
        }
        Recorder::Sidecar { journal, writer } => {
            journal.append_execution_end(end).await;
            journal.close(writer).await;
        }
    }
    drop(scratch);

    if o.summary {
        print_summary(&journal_path, &execution_id, &outcome, started.elapsed());
    }
    Ok(ExitCode::from(outcome.exit_status.clamp(0, 255) as u8))
}

/// The CA the command must trust: the sidecar's (whose certificate must
/// exist; its key is not needed here), or ours (created on first use).
async fn certificate_authority(o: &RunOptions) -> anyhow::Result<TrustAnchor> {
    let dir = o.config.forward.ca_dir.clone();
    let sidecar = o.proxy_url.is_some();
    tokio::task::spawn_blocking(move || {
        if sidecar {
            return TrustAnchor::load(&dir).with_context(|| {
                format!(
                    "--proxy: the command must trust that proxy's CA, but its certificate is not in {} \
                     (give its directory with --ca-dir)",
                    dir.display()
                )
            });
        }
        let (authority, created) = Authority::load_or_create(&dir)
            .with_context(|| format!("creating the CA in {}", dir.display()))?;
        if created {
            tracing::info!(
                dir = %dir.display(),
                fingerprint = %authority.fingerprint_sha256(),
                "created sidetrace's CA (the command trusts it through its environment)"
            );
        }
        Ok(TrustAnchor::load(&dir)?)
    })
    .await
    .context("loading the CA")?
}

/// Runs the command to its end with `env` added, passing signals on.
async fn run_child(command: &[String], env: &[(String, String)]) -> Outcome {
    let (program, args) = command.split_first().expect("checked non-empty");
    let mut signals = match crate::process::Forwarder::install() {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                exit_status: 1,
                reason: format!("could not install signal handlers: {e:#}"),
            };
        }
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::inherit())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .kill_on_drop(false);
    crate::process::die_with_parent(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let exit_status = match e.kind() {
                std::io::ErrorKind::PermissionDenied => 126,
                _ => 127,
            };
            eprintln!("sidetrace run: cannot run {program:?}: {e}");
            return Outcome {
                exit_status,
                reason: format!("the command could not be started: {e}"),
            };
        }
    };
    let pid = child.id().unwrap_or(0);
    // A terminal delivers Ctrl-C and Ctrl-\ to the whole foreground group,
    // the command included; passing them on too would deliver them twice.
    let from_terminal = {
        use std::io::IsTerminal;
        std::io::stdin().is_terminal()
    };
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            sig = signals.next() => {
                let delivered = from_terminal && (sig == libc::SIGINT || sig == libc::SIGQUIT);
                if !delivered {
                    crate::process::send(pid, sig);
                }
            }
        }
    };
    match status {
        Ok(s) => {
            let (_, how) = crate::process::exit_code(s);
            use std::os::unix::process::ExitStatusExt;
            let exit_status = s
                .code()
                .or_else(|| s.signal().map(|n| 128 + n))
                .unwrap_or(1);
            Outcome {
                exit_status,
                reason: format!("the command {how}"),
            }
        }
        Err(e) => Outcome {
            exit_status: 1,
            reason: format!("waiting for the command failed: {e}"),
        },
    }
}

fn print_summary(
    journal: &std::path::Path,
    execution_id: &str,
    outcome: &Outcome,
    took: std::time::Duration,
) {
    let view = JournalReader::open(journal)
        .and_then(|r| r.executions(Some(execution_id)))
        .ok()
        .and_then(|mut v| v.pop());
    let mut err = std::io::stderr().lock();
    let how = outcome.reason.trim_start_matches("the command ");
    match view {
        Some(v) => {
            let _ = summary::write(&mut err, &v, how, took, journal);
        }
        None => {
            use std::io::Write as _;
            let _ = writeln!(
                err,
                "sidetrace: execution {execution_id}: the command {how}; the journal {} could not be read back",
                journal.display()
            );
        }
    }
}

fn absolute(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Files of one run (the CA bundle), removed when it ends.
struct Scratch {
    path: std::path::PathBuf,
}

impl Scratch {
    fn create(execution_id: &str) -> anyhow::Result<Self> {
        let safe: String = execution_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path =
            std::env::temp_dir().join(format!("sidetrace-run-{}-{safe}", std::process::id()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
