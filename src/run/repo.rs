//! Git repository state before and after a unit of work: where the work tree
//! is, which commit and branch it is on, and a digest of everything not yet
//! committed; and the commits made in between.
//!
//! Everything is read through the `git` command line. Only commands that
//! never write the repository are used (plumbing `diff-index`/`diff-files`
//! rather than porcelain `git diff`, which refreshes and rewrites the index),
//! and every invocation runs with `--no-optional-locks`, so capturing never
//! takes the index lock and is safe while an agent works in the repository.
//!
//! The functions block on child processes; call them from a blocking context
//! (`tokio::task::spawn_blocking`) in async code.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use sha2::{Digest, Sha256};

use super::git::{Git, HashWriter, os_str_bytes, os_str_from_bytes, trim_line};

/// Untracked files larger than this are not read; the digest covers their
/// path and size only.
pub const UNTRACKED_CONTENT_LIMIT: u64 = 64 << 20;

/// Domain separator and version of the uncommitted-changes digest input.
const DIGEST_DOMAIN: &[u8] = b"sidetrace.repo.uncommitted.v1\0";

/// Diff options pinned so the output depends on the repository content, not
/// on diff configuration (plumbing ignores most of it anyway).
const DIFF_OPTIONS: &[&str] = &[
    "-p",
    "--binary",
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--unified=3",
    "--inter-hunk-context=0",
    "--diff-algorithm=myers",
    "--indent-heuristic",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--submodule=short",
];

/// `git log` format: id, author name, author email, strict ISO 8601 author
/// date, subject; NUL-separated (with `-z`, commits are NUL-terminated too).
const LOG_FORMAT: &str = "--format=%H%x00%an%x00%ae%x00%aI%x00%s";
const LOG_FIELDS: usize = 5;

/// The state of a git work tree at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoState {
    /// The work tree's top level, as git reports it (symlinks resolved).
    pub root: PathBuf,
    /// `origin`'s URL, or the first remote's (alphabetically) when there is
    /// no `origin`; `url.<base>.insteadOf` applied, credentials stripped.
    /// Empty without remotes.
    pub remote_url: String,
    /// The current branch (`main`, not `refs/heads/main`); empty when HEAD is
    /// detached. Set in a repository without commits (the unborn branch).
    pub branch: String,
    /// The full id of the commit HEAD points at; empty without commits.
    pub head_commit: String,
    /// The id of `head_commit`'s tree; empty without commits.
    pub tree_hash: String,
    /// Whether anything is uncommitted: staged or unstaged changes to tracked
    /// files, or untracked files that are not ignored.
    pub dirty: bool,
    /// `sha256:<hex>` over the uncommitted changes (staged diff, unstaged
    /// diff, untracked files); empty when clean. Relative to `head_commit`.
    pub diff_digest: String,
}

/// One commit, as `commits_between` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// Full commit id.
    pub id: String,
    /// `Name <email>` of the author (as recorded, no mailmap).
    pub author: String,
    /// The author date, strict ISO 8601 (`2024-05-06T07:08:09+02:00`; git
    /// may print `Z` for UTC).
    pub time: String,
    /// The first line (paragraph) of the message.
    pub subject: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error("{}: not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("running `{command}`: {source}")]
    Run { command: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Git {
        command: String,
        status: ExitStatus,
        stderr: String,
    },
    #[error("`{command}` printed unexpected output: {detail}")]
    Output { command: String, detail: String },
}

/// Captures the state of the git work tree containing `dir` (which may be
/// any directory inside it). `Ok(None)` when `dir` is not inside a work tree
/// (outside any repository, inside `.git`, a bare repository) or git is not
/// installed. Variables such as `GIT_DIR` in our environment are ignored: the
/// repository is always the one containing `dir`.
pub fn capture(dir: &Path) -> Result<Option<RepoState>, RepoError> {
    capture_with(OsStr::new("git"), dir, UNTRACKED_CONTENT_LIMIT)
}

/// Commits reachable from `head` and not from `base`, oldest first (parents
/// before children). An empty `base` (the repository had no commits) gives
/// all commits of `head`; an empty `head` gives none.
pub fn commits_between(root: &Path, base: &str, head: &str) -> Result<Vec<Commit>, RepoError> {
    commits_between_with(OsStr::new("git"), root, base, head)
}

/// Removes credentials from a remote URL: the user information of
/// `scheme://user:password@host/…` URLs (for ssh URLs only the password; the
/// user name is kept). scp-like `user@host:path` and local paths are returned
/// unchanged.
pub fn strip_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let scheme = &url[..scheme_end];
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return url.to_owned();
    }
    let authority_start = scheme_end + 3;
    let rest = &url[authority_start..];
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_len].rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &rest[..at];
    let host_and_rest = &rest[at + 1..];
    let ssh = scheme
        .to_ascii_lowercase()
        .split('+')
        .any(|part| part == "ssh");
    let user = userinfo.split(':').next().filter(|u| ssh && !u.is_empty());
    match user {
        Some(user) => format!("{scheme}://{user}@{host_and_rest}"),
        None => format!("{scheme}://{host_and_rest}"),
    }
}

fn capture_with(program: &OsStr, dir: &Path, limit: u64) -> Result<Option<RepoState>, RepoError> {
    if !dir.is_dir() {
        return Err(RepoError::NotADirectory(dir.to_owned()));
    }
    let Some(root) = work_tree_root(program, dir)? else {
        return Ok(None);
    };
    let git = Git {
        program,
        dir: &root,
    };
    let branch = branch(&git)?;
    let head_commit = git.rev_parse_verify("HEAD^{commit}")?;
    let tree_hash = if head_commit.is_empty() {
        String::new()
    } else {
        let tree = git.rev_parse_verify(&format!("{head_commit}^{{tree}}"))?;
        if tree.is_empty() {
            return Err(git.unexpected(
                &["rev-parse", "--verify", "--quiet", "<commit>^{tree}"],
                format!("commit {head_commit} has no tree"),
            ));
        }
        tree
    };
    let remote_url = remote_url(&git)?;
    let diff_digest = uncommitted_digest(&git, &head_commit, limit)?;
    Ok(Some(RepoState {
        dirty: diff_digest.is_some(),
        diff_digest: diff_digest.unwrap_or_default(),
        root,
        remote_url,
        branch,
        head_commit,
        tree_hash,
    }))
}

/// The top level of the work tree containing `dir`, or None.
fn work_tree_root(program: &OsStr, dir: &Path) -> Result<Option<PathBuf>, RepoError> {
    let git = Git { program, dir };
    let args = ["rev-parse", "--is-inside-work-tree"];
    let out = match git.output(&args) {
        Err(RepoError::Run { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(dir = %dir.display(), "git is not installed; not capturing repository state");
            return Ok(None);
        }
        result => result?,
    };
    if !out.status.success() {
        if String::from_utf8_lossy(&out.stderr).contains("not a git repository") {
            tracing::debug!(dir = %dir.display(), "not inside a git repository");
            return Ok(None);
        }
        return Err(git.failed(&args, &out));
    }
    match trim_line(&out.stdout) {
        b"true" => {}
        b"false" => {
            tracing::debug!(dir = %dir.display(), "inside a git directory or bare repository, not a work tree");
            return Ok(None);
        }
        other => {
            return Err(git.unexpected(&args, String::from_utf8_lossy(other).into_owned()));
        }
    }
    let args = ["rev-parse", "--show-toplevel"];
    let top = git.run(&args)?;
    let top = trim_line(&top);
    if top.is_empty() {
        return Err(git.unexpected(&args, "no top level".to_owned()));
    }
    Ok(Some(PathBuf::from(os_str_from_bytes(top).into_owned())))
}

/// The current branch; empty when HEAD is detached.
fn branch(git: &Git) -> Result<String, RepoError> {
    let args = ["symbolic-ref", "--quiet", "HEAD"];
    let out = git.output(&args)?;
    match out.status.code() {
        Some(0) => {
            let full = String::from_utf8_lossy(trim_line(&out.stdout)).into_owned();
            Ok(full
                .strip_prefix("refs/heads/")
                .map(str::to_owned)
                .unwrap_or(full))
        }
        // --quiet: HEAD is not a symbolic ref, i.e. detached.
        Some(1) => Ok(String::new()),
        _ => Err(git.failed(&args, &out)),
    }
}

/// `origin`'s URL, else the first remote's; empty without remotes.
fn remote_url(git: &Git) -> Result<String, RepoError> {
    let names = git.run(&["remote"])?;
    let names = String::from_utf8_lossy(&names);
    let Some(name) = names
        .lines()
        .find(|n| *n == "origin")
        .or_else(|| names.lines().find(|n| !n.is_empty()))
    else {
        return Ok(String::new());
    };
    let args = ["remote", "get-url", "--", name];
    let out = git.output(&args)?;
    if out.status.success() {
        return Ok(strip_credentials(&String::from_utf8_lossy(trim_line(
            &out.stdout,
        ))));
    }
    if String::from_utf8_lossy(&out.stderr).contains("No such remote") {
        // Configured without a URL (e.g. only a fetch refspec).
        tracing::debug!(remote = name, "remote has no URL");
        return Ok(String::new());
    }
    Err(git.failed(&args, &out))
}

/// The digest of the uncommitted changes, None when there are none.
///
/// Input: a domain tag; the staged diff (index against `head`, or against the
/// empty tree without commits) and the unstaged diff (work tree against
/// index), each as SHA-256 and byte length of git's output; then the
/// untracked, non-ignored files sorted by path bytes, each as its path and a
/// description of its content (see `Untracked`).
fn uncommitted_digest(git: &Git, head: &str, limit: u64) -> Result<Option<String>, RepoError> {
    let base = if head.is_empty() {
        empty_tree(git)?
    } else {
        head.to_owned()
    };
    let mut staged_args = vec!["-c", "core.quotePath=true", "diff-index", "--cached"];
    staged_args.extend_from_slice(DIFF_OPTIONS);
    staged_args.extend_from_slice(&[base.as_str(), "--"]);
    let mut staged = HashWriter::default();
    git.stream(&staged_args, &mut staged)?;

    let mut unstaged_args = vec!["-c", "core.quotePath=true", "diff-files"];
    unstaged_args.extend_from_slice(DIFF_OPTIONS);
    unstaged_args.push("--");
    let mut unstaged = HashWriter::default();
    git.stream(&unstaged_args, &mut unstaged)?;

    let untracked = untracked_paths(git)?;
    if staged.len == 0 && unstaged.len == 0 && untracked.is_empty() {
        return Ok(None);
    }

    let mut hasher = Sha256::new();
    hasher.update(DIGEST_DOMAIN);
    for part in [staged, unstaged] {
        hasher.update(part.len.to_be_bytes());
        hasher.update(part.finish());
    }
    hasher.update((untracked.len() as u64).to_be_bytes());
    for path in &untracked {
        hasher.update((path.len() as u64).to_be_bytes());
        hasher.update(path);
        Untracked::inspect(&git.dir.join(os_str_from_bytes(path)), limit).feed(&mut hasher);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Ok(Some(format!("sha256:{}", hex::encode(digest))))
}

/// The empty tree's id in this repository's object format.
fn empty_tree(git: &Git) -> Result<String, RepoError> {
    let args = ["hash-object", "-t", "tree", "--stdin"];
    let out = git.run(&args)?;
    let id = String::from_utf8_lossy(trim_line(&out)).into_owned();
    if id.is_empty() {
        return Err(git.unexpected(&args, "no object id".to_owned()));
    }
    Ok(id)
}

/// Untracked, non-ignored files relative to the top level, sorted by bytes.
/// Embedded repositories are listed as `dir/`.
fn untracked_paths(git: &Git) -> Result<Vec<Vec<u8>>, RepoError> {
    let out = git.run(&["ls-files", "-z", "--others", "--exclude-standard"])?;
    let mut paths: Vec<Vec<u8>> = out
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    paths.sort_unstable();
    paths.dedup();
    Ok(paths)
}

/// What the digest records of one untracked path.
#[derive(Debug, PartialEq, Eq)]
enum Untracked {
    /// A regular file: its length and SHA-256.
    File {
        executable: bool,
        len: u64,
        digest: [u8; 32],
    },
    /// A regular file over the content limit: its length only.
    Large { executable: bool, len: u64 },
    /// A symbolic link: its target (never followed).
    Symlink(Vec<u8>),
    /// A directory (an embedded repository).
    Directory,
    /// A FIFO, socket or device: never opened.
    Special,
    /// Gone since git listed it.
    Vanished,
    /// Could not be read (e.g. permissions).
    Unreadable,
}

impl Untracked {
    fn inspect(path: &Path, limit: u64) -> Self {
        let vanished_or_unreadable = |e: io::Error| {
            if e.kind() == io::ErrorKind::NotFound {
                Self::Vanished
            } else {
                Self::Unreadable
            }
        };
        let meta = match fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) => return vanished_or_unreadable(e),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            return match fs::read_link(path) {
                Ok(target) => Self::Symlink(os_str_bytes(target.as_os_str())),
                Err(e) => vanished_or_unreadable(e),
            };
        }
        if kind.is_dir() {
            return Self::Directory;
        }
        if !kind.is_file() {
            return Self::Special;
        }
        let file = match open_no_follow(path) {
            Ok(file) => file,
            Err(e) => return vanished_or_unreadable(e),
        };
        // What we opened, not what the path named a moment ago.
        let meta = match file.metadata() {
            Ok(meta) => meta,
            Err(_) => return Self::Unreadable,
        };
        if !meta.is_file() {
            return Self::Special;
        }
        let executable = is_executable(&meta);
        if meta.len() > limit {
            return Self::Large {
                executable,
                len: meta.len(),
            };
        }
        let mut hash = HashWriter::default();
        match io::copy(&mut file.take(limit), &mut hash) {
            Ok(_) => Self::File {
                executable,
                len: hash.len,
                digest: hash.finish(),
            },
            Err(_) => Self::Unreadable,
        }
    }

    fn feed(&self, hasher: &mut Sha256) {
        match self {
            Self::File {
                executable,
                len,
                digest,
            } => {
                hasher.update([b'f', u8::from(*executable)]);
                hasher.update(len.to_be_bytes());
                hasher.update(digest);
            }
            Self::Large { executable, len } => {
                hasher.update([b'F', u8::from(*executable)]);
                hasher.update(len.to_be_bytes());
            }
            Self::Symlink(target) => {
                hasher.update([b'l']);
                hasher.update((target.len() as u64).to_be_bytes());
                hasher.update(target);
            }
            Self::Directory => hasher.update([b'd']),
            Self::Special => hasher.update([b's']),
            Self::Vanished => hasher.update([b'v']),
            Self::Unreadable => hasher.update([b'u']),
        }
    }
}

/// Opens a file for reading without following a symlink and without
/// blocking should it have become a FIFO.
fn open_no_follow(path: &Path) -> io::Result<File> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    }
    #[cfg(not(unix))]
    {
        File::open(path)
    }
}

fn is_executable(meta: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        false
    }
}

fn commits_between_with(
    program: &OsStr,
    root: &Path,
    base: &str,
    head: &str,
) -> Result<Vec<Commit>, RepoError> {
    if head.is_empty() {
        return Ok(Vec::new());
    }
    let git = Git { program, dir: root };
    let exclude = format!("^{base}");
    let mut args = vec![
        "log",
        "-z",
        LOG_FORMAT,
        "--reverse",
        "--date-order",
        "--no-color",
        "--no-show-signature",
        "--no-use-mailmap",
        "--end-of-options",
        head,
    ];
    if !base.is_empty() {
        args.push(&exclude);
    }
    args.push("--");
    let out = git.run(&args)?;
    let out = out.strip_suffix(b"\0").unwrap_or(&out);
    if out.is_empty() {
        return Ok(Vec::new());
    }
    let fields: Vec<String> = out
        .split(|b| *b == 0)
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    if !fields.len().is_multiple_of(LOG_FIELDS) {
        return Err(git.unexpected(
            &args,
            format!("{} fields, not a multiple of {LOG_FIELDS}", fields.len()),
        ));
    }
    Ok(fields
        .chunks_exact(LOG_FIELDS)
        .map(|c| Commit {
            id: c[0].clone(),
            author: format!("{} <{}>", c[1], c[2]),
            time: c[3].clone(),
            subject: c[4].clone(),
        })
        .collect())
}

#[cfg(test)]
#[path = "repo_tests.rs"]
mod tests;
