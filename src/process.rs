//! Child processes sidetrace runs for the user (an MCP server, an agent):
//! the signals sidetrace receives are passed on, the child dies with
//! sidetrace on Linux, and its exit is reported as a shell would.

use std::process::{ExitCode, ExitStatus};

use anyhow::Context as _;
use tokio::process::Command;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// Makes the child receive SIGTERM if sidetrace dies first (Linux).
pub fn die_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only the child's own state.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

/// The signals passed on to the child.
pub struct Forwarder {
    term: Signal,
    int: Signal,
    hup: Signal,
    quit: Signal,
    usr1: Signal,
    usr2: Signal,
}

impl Forwarder {
    /// Installs the handlers (before the child starts, so none is missed).
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
        tracing::debug!(pid, signal, error = %std::io::Error::last_os_error(), "could not signal the child process");
    }
}

/// sidetrace's exit code for the child's exit: its code, or 128 + the
/// signal that killed it; and that in words.
pub fn exit_code(status: ExitStatus) -> (ExitCode, String) {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return (
            ExitCode::from(code.clamp(0, 255) as u8),
            format!("exited with status {code}"),
        );
    }
    let sig = status.signal().unwrap_or(0);
    (
        ExitCode::from((128 + sig).clamp(0, 255) as u8),
        format!("was killed by signal {sig}"),
    )
}
