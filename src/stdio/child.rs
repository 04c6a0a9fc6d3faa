//! The wrapped MCP server process: started with piped stdin/stdout and the
//! wrapper's own stderr, told to die with the wrapper (Linux), sent the
//! signals the wrapper receives, and its exit reported as a shell would.

use std::process::{ExitCode, ExitStatus, Stdio};

use anyhow::Context as _;
use tokio::process::{Child, Command};
use tokio::signal::unix::{Signal, SignalKind, signal};

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
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            // If the wrapper is killed outright, the server must not linger.
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
        .with_context(|| format!("cannot start the MCP server {program:?}"))
}

/// The signals passed on to the server.
pub struct Forwarder {
    term: Signal,
    int: Signal,
    hup: Signal,
    quit: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Forwarder {
    /// Installs the handlers (before the server starts, so none is missed).
    pub fn install() -> anyhow::Result<Self> {
        let on = |kind| signal(kind).context("installing a signal handler");
        Ok(Self {
            term: on(SignalKind::terminate())?,
            int: on(SignalKind::interrupt())?,
            hup: on(SignalKind::hangup())?,
            quit: on(SignalKind::quit())?,
            usr1: on(SignalKind::user_defined1())?,
            usr2: on(SignalKind::user_defined2())?,
        })
    }

    /// Waits for the next signal; returns its number.
    pub async fn next(&mut self) -> i32 {
        tokio::select! {
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.int.recv() => libc::SIGINT,
            _ = self.hup.recv() => libc::SIGHUP,
            _ = self.quit.recv() => libc::SIGQUIT,
            _ = self.usr1.recv() => libc::SIGUSR1,
            _ = self.usr2.recv() => libc::SIGUSR2,
        }
    }
}

/// Sends `signal` to the process `pid`.
pub fn send(pid: u32, signal: i32) {
    // SAFETY: kill has no memory effects; a stale pid only yields ESRCH.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc != 0 {
        tracing::debug!(pid, signal, error = %std::io::Error::last_os_error(), "could not signal the MCP server");
    }
}

/// The wrapper's exit code for the server's exit: its code, or 128 + the
/// signal that killed it.
pub fn exit_code(status: ExitStatus) -> (ExitCode, String) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return (
            ExitCode::from(code.clamp(0, 255) as u8),
            format!("the server exited with status {code}"),
        );
    }
    let sig = status.signal().unwrap_or(0);
    (
        ExitCode::from((128 + sig).clamp(0, 255) as u8),
        format!("the server was killed by signal {sig}"),
    )
}
