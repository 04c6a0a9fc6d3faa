//! Running git read-only in one directory: every invocation with
//! `--no-optional-locks`, a fixed locale, no prompts, and the variables that
//! would point it at another repository removed; output read whole or
//! streamed into a sink, stderr capped for error messages.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use sha2::{Digest, Sha256};

use super::repo::RepoError;

/// How much of a streaming git command's stderr is kept for error messages.
const STDERR_LIMIT: usize = 16 << 10;

/// Environment variables that would point git at another repository, index
/// or object store than the one containing the directory we were given, or
/// change diff output. Removed from every invocation.
pub(super) const OVERRIDING_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_PREFIX",
    "GIT_DIFF_OPTS",
    "GIT_EXTERNAL_DIFF",
];

/// Runs git in one directory.
pub(super) struct Git<'a> {
    pub(super) program: &'a OsStr,
    pub(super) dir: &'a Path,
}

impl Git<'_> {
    pub(super) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.arg("--no-pager")
            .arg("--no-optional-locks")
            .arg("-C")
            .arg(self.dir)
            .args(args)
            .env("LC_ALL", "C")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_OPTIONAL_LOCKS", "0")
            .stdin(Stdio::null());
        for var in OVERRIDING_ENV {
            cmd.env_remove(var);
        }
        cmd
    }

    /// The command line, for error messages.
    pub(super) fn describe(&self, args: &[&str]) -> String {
        let mut line = format!(
            "{} -C {}",
            self.program.to_string_lossy(),
            quote(&self.dir.to_string_lossy())
        );
        for arg in args {
            line.push(' ');
            line.push_str(&quote(arg));
        }
        line
    }

    /// Runs to completion, whatever the exit status.
    pub(super) fn output(&self, args: &[&str]) -> Result<Output, RepoError> {
        self.command(args)
            .output()
            .map_err(|source| self.run_error(args, source))
    }

    /// Runs to completion; stdout, or an error unless git exited 0.
    pub(super) fn run(&self, args: &[&str]) -> Result<Vec<u8>, RepoError> {
        let out = self.output(args)?;
        if !out.status.success() {
            return Err(self.failed(args, &out));
        }
        Ok(out.stdout)
    }

    /// Streams stdout into `sink` without buffering it; an error unless git
    /// exited 0.
    pub(super) fn stream(&self, args: &[&str], sink: &mut dyn Write) -> Result<(), RepoError> {
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| self.run_error(args, source))?;
        // Drain stderr concurrently so git never blocks on a full pipe.
        let stderr = child
            .stderr
            .take()
            .map(|stderr| std::thread::spawn(move || read_capped(stderr, STDERR_LIMIT)));
        let copied = match child.stdout.take() {
            Some(mut stdout) => io::copy(&mut stdout, sink).map(drop),
            None => Ok(()),
        };
        // stdout is closed by now: if copying failed, git gets EPIPE.
        if copied.is_err() {
            let _ = child.kill();
        }
        let status = child.wait();
        let stderr = stderr.and_then(|t| t.join().ok()).unwrap_or_default();
        copied.map_err(|source| self.run_error(args, source))?;
        let status = status.map_err(|source| self.run_error(args, source))?;
        if !status.success() {
            return Err(RepoError::Git {
                command: self.describe(args),
                status,
                stderr: String::from_utf8_lossy(&stderr).trim().to_owned(),
            });
        }
        Ok(())
    }

    /// `rev-parse --verify --quiet`: the object id, empty when `rev` does not
    /// resolve.
    pub(super) fn rev_parse_verify(&self, rev: &str) -> Result<String, RepoError> {
        let args = ["rev-parse", "--verify", "--quiet", rev];
        let out = self.output(&args)?;
        match out.status.code() {
            Some(0) => Ok(String::from_utf8_lossy(trim_line(&out.stdout)).into_owned()),
            Some(1) if out.stdout.is_empty() => Ok(String::new()),
            _ => Err(self.failed(&args, &out)),
        }
    }

    pub(super) fn run_error(&self, args: &[&str], source: io::Error) -> RepoError {
        RepoError::Run {
            command: self.describe(args),
            source,
        }
    }

    pub(super) fn failed(&self, args: &[&str], out: &Output) -> RepoError {
        RepoError::Git {
            command: self.describe(args),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }
    }

    pub(super) fn unexpected(&self, args: &[&str], detail: String) -> RepoError {
        RepoError::Output {
            command: self.describe(args),
            detail,
        }
    }
}

/// A SHA-256 that counts what it was fed, as an `io::Write` sink.
#[derive(Default)]
pub(super) struct HashWriter {
    hasher: Sha256,
    pub(super) len: u64,
}

impl HashWriter {
    pub(super) fn finish(self) -> [u8; 32] {
        self.hasher.finalize().into()
    }
}

impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Reads `r` to the end, keeping the first `limit` bytes.
pub(super) fn read_capped(mut r: impl Read, limit: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = limit.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    kept
}

/// One line of git output without its line ending.
pub(super) fn trim_line(out: &[u8]) -> &[u8] {
    let out = out.strip_suffix(b"\n").unwrap_or(out);
    out.strip_suffix(b"\r").unwrap_or(out)
}

pub(super) fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && !arg
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '\'' | '"' | '\\'))
    {
        arg.to_owned()
    } else {
        format!("{arg:?}")
    }
}

#[cfg(unix)]
pub(super) fn os_str_from_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, OsStr> {
    use std::os::unix::ffi::OsStrExt;
    std::borrow::Cow::Borrowed(OsStr::from_bytes(bytes))
}

#[cfg(not(unix))]
pub(super) fn os_str_from_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, OsStr> {
    // git writes paths as UTF-8 on other platforms.
    std::borrow::Cow::Owned(String::from_utf8_lossy(bytes).into_owned().into())
}

#[cfg(unix)]
pub(super) fn os_str_bytes(s: &OsStr) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    s.as_bytes().to_vec()
}

#[cfg(not(unix))]
pub(super) fn os_str_bytes(s: &OsStr) -> Vec<u8> {
    s.to_string_lossy().into_owned().into_bytes()
}
