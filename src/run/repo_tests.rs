//! Tests of `repo`: real git repositories in temporary directories.

use std::process::{Command, Stdio};

use super::*;
use crate::run::git::OVERRIDING_ENV;

/// Runs git for test setup, isolated from the user's and system config.
fn git_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    for var in OVERRIDING_ENV {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

fn git(dir: &Path, args: &[&str]) -> String {
    git_env(dir, args, &[])
}

/// A fresh repository (no commits) in a directory whose name has a space
/// and non-ASCII characters.
fn init_repo() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("répo with space");
    fs::create_dir(&root).unwrap();
    git(&root, &["init", "-q", "--initial-branch=main"]);
    git(&root, &["config", "user.name", "Test User"]);
    git(&root, &["config", "user.email", "test@example.com"]);
    git(&root, &["config", "commit.gpgsign", "false"]);
    let root = fs::canonicalize(&root).unwrap();
    (tmp, root)
}

fn write(root: &Path, rel: &str, content: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn commit_all(root: &Path, subject: &str, env: &[(&str, &str)]) -> String {
    git(root, &["add", "-A"]);
    git_env(root, &["commit", "-q", "-m", subject], env);
    git(root, &["rev-parse", "HEAD"])
}

fn state(dir: &Path) -> RepoState {
    capture(dir).unwrap().expect("inside a work tree")
}

#[test]
fn fresh_repository_without_commits() {
    let (_tmp, root) = init_repo();
    let s = state(&root);
    assert_eq!(
        s,
        RepoState {
            root: root.clone(),
            remote_url: String::new(),
            branch: "main".into(),
            head_commit: String::new(),
            tree_hash: String::new(),
            dirty: false,
            diff_digest: String::new(),
        }
    );

    write(&root, "new file.txt", "hello\n");
    let untracked = state(&root);
    assert!(untracked.dirty);
    assert!(untracked.diff_digest.starts_with("sha256:"));
    assert_eq!(untracked.diff_digest.len(), "sha256:".len() + 64);
    assert_eq!(state(&root), untracked);

    // Staging the same content is a different state (index vs empty tree).
    git(&root, &["add", "new file.txt"]);
    let staged = state(&root);
    assert!(staged.dirty);
    assert_ne!(staged.diff_digest, untracked.diff_digest);
    assert_eq!(staged.head_commit, "");

    assert_eq!(commits_between(&root, "", "").unwrap(), vec![]);
}

#[test]
fn dirty_states_change_the_digest_and_equal_states_do_not() {
    let (_tmp, root) = init_repo();
    write(&root, "a.txt", "one\n");
    write(&root, "dir with space/ünïcode file.txt", "zwei\n");
    let head = commit_all(&root, "initial", &[]);

    let clean = state(&root);
    assert_eq!(clean.head_commit, head);
    assert_eq!(clean.tree_hash, git(&root, &["rev-parse", "HEAD^{tree}"]));
    assert!(!clean.dirty);
    assert_eq!(clean.diff_digest, "");

    // Unstaged change to a tracked file (with a unicode path).
    write(&root, "dir with space/ünïcode file.txt", "drei\n");
    let modified = state(&root);
    assert!(modified.dirty);
    assert!(modified.diff_digest.starts_with("sha256:"));
    assert_eq!(state(&root), modified, "stable when nothing changes");

    // From a subdirectory: the same repository and state.
    assert_eq!(state(&root.join("dir with space")), modified);

    // A staged new file.
    write(&root, "staged.txt", "staged\n");
    git(&root, &["add", "staged.txt"]);
    let staged = state(&root);
    assert!(staged.dirty);
    assert_ne!(staged.diff_digest, modified.diff_digest);

    // An untracked file.
    write(&root, "untracked dir/notes.md", "aaaa\n");
    let untracked = state(&root);
    assert_ne!(untracked.diff_digest, staged.diff_digest);
    assert_eq!(state(&root), untracked);

    // Same-size content change of the untracked file, then back.
    write(&root, "untracked dir/notes.md", "bbbb\n");
    let changed = state(&root);
    assert_ne!(changed.diff_digest, untracked.diff_digest);
    write(&root, "untracked dir/notes.md", "aaaa\n");
    assert_eq!(state(&root), untracked, "equal states, equal digests");

    // Ignored files do not count.
    write(&root, ".git/info/exclude", "*.log\n");
    write(&root, "build.log", "noise\n");
    assert_eq!(state(&root), untracked);

    // Back to clean: the digest is empty again.
    git(&root, &["reset", "-q", "--hard"]);
    git(&root, &["clean", "-q", "-fd"]);
    assert_eq!(state(&root), clean);
}

#[test]
fn capture_never_writes_or_locks_the_index() {
    let (_tmp, root) = init_repo();
    write(&root, "a.txt", "one\n");
    commit_all(&root, "initial", &[]);
    // Same content, new mtime: porcelain `git diff` would refresh and
    // rewrite the index.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    write(&root, "a.txt", "one\n");
    let index = fs::read(root.join(".git/index")).unwrap();
    let s = state(&root);
    assert!(!s.dirty, "a touched but unchanged file is clean");
    assert_eq!(fs::read(root.join(".git/index")).unwrap(), index);

    // Works while someone else holds the index lock, and leaves it alone.
    write(&root, ".git/index.lock", "");
    write(&root, "a.txt", "two\n");
    let s = state(&root);
    assert!(s.dirty);
    assert!(root.join(".git/index.lock").exists());
    assert_eq!(fs::read(root.join(".git/index")).unwrap(), index);
}

#[test]
fn detached_head() {
    let (_tmp, root) = init_repo();
    write(&root, "a.txt", "one\n");
    let first = commit_all(&root, "first", &[]);
    write(&root, "a.txt", "two\n");
    commit_all(&root, "second", &[]);
    git(&root, &["checkout", "-q", "--detach", &first]);
    let s = state(&root);
    assert_eq!(s.branch, "");
    assert_eq!(s.head_commit, first);
    assert_eq!(s.tree_hash, git(&root, &["rev-parse", "HEAD^{tree}"]));
    assert!(!s.dirty);
}

#[test]
fn branch_name_is_unambiguous_short_name() {
    let (_tmp, root) = init_repo();
    write(&root, "a.txt", "one\n");
    commit_all(&root, "first", &[]);
    git(&root, &["checkout", "-q", "-b", "feature/x"]);
    // A tag with the same name would make `--short` print "heads/…".
    git(&root, &["tag", "feature/x"]);
    assert_eq!(state(&root).branch, "feature/x");
}

#[test]
fn commits_between_lists_new_commits_oldest_first() {
    let (_tmp, root) = init_repo();
    write(&root, "a.txt", "one\n");
    let base = commit_all(&root, "base", &[]);
    write(&root, "a.txt", "two\n");
    let c1 = commit_all(
        &root,
        "first change",
        &[
            ("GIT_AUTHOR_NAME", "Ada Agent"),
            ("GIT_AUTHOR_EMAIL", "ada@example.com"),
            ("GIT_AUTHOR_DATE", "2024-05-06T07:08:09+02:00"),
        ],
    );
    write(&root, "b.txt", "three\n");
    let c2 = commit_all(
        &root,
        "second change: ünïcode",
        &[("GIT_AUTHOR_DATE", "2024-05-06T08:00:00-05:00")],
    );

    let commits = commits_between(&root, &base, &c2).unwrap();
    assert_eq!(
        commits,
        vec![
            Commit {
                id: c1.clone(),
                author: "Ada Agent <ada@example.com>".into(),
                time: "2024-05-06T07:08:09+02:00".into(),
                subject: "first change".into(),
            },
            Commit {
                id: c2.clone(),
                author: "Test User <test@example.com>".into(),
                time: "2024-05-06T08:00:00-05:00".into(),
                subject: "second change: ünïcode".into(),
            },
        ]
    );

    // From a repository that had no commits: everything, oldest first.
    let all = commits_between(&root, "", &c2).unwrap();
    let ids: Vec<&str> = all.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, [base.as_str(), &c1, &c2]);

    assert_eq!(commits_between(&root, &c2, &c2).unwrap(), vec![]);
    assert!(matches!(
        commits_between(&root, "0123456789abcdef0123456789abcdef01234567", &c2),
        Err(RepoError::Git { .. })
    ));
}

#[test]
fn remote_url_credentials_are_stripped() {
    let (_tmp, root) = init_repo();
    git(
        &root,
        &["remote", "add", "aaa", "https://example.com/other.git"],
    );
    git(
        &root,
        &[
            "remote",
            "add",
            "origin",
            "https://user:s3cret-token@git.example.com/org/repo.git",
        ],
    );
    assert_eq!(
        state(&root).remote_url,
        "https://git.example.com/org/repo.git"
    );
    git(&root, &["remote", "remove", "origin"]);
    assert_eq!(state(&root).remote_url, "https://example.com/other.git");
}

#[test]
fn strip_credentials_forms() {
    let cases = [
        ("https://user:token@host/x.git", "https://host/x.git"),
        ("https://ghp_token@github.com/o/r", "https://github.com/o/r"),
        (
            "http://gitlab-ci-token:abc@host:8080/g/p.git",
            "http://host:8080/g/p.git",
        ),
        (
            "https://host/path@with-at.git",
            "https://host/path@with-at.git",
        ),
        ("https://host/x.git", "https://host/x.git"),
        ("ssh://git@host:2222/o/r.git", "ssh://git@host:2222/o/r.git"),
        ("ssh://git:pw@host/o/r.git", "ssh://git@host/o/r.git"),
        ("git+ssh://u:pw@host/r", "git+ssh://u@host/r"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
    ];
    for (input, want) in cases {
        assert_eq!(strip_credentials(input), want, "{input}");
    }
}

#[test]
fn outside_any_repository_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(capture(tmp.path()).unwrap(), None);

    // Inside .git and in a bare repository: no work tree.
    let (_repo_tmp, root) = init_repo();
    assert_eq!(capture(&root.join(".git")).unwrap(), None);
    let bare = tmp.path().join("bare.git");
    git(tmp.path(), &["init", "-q", "--bare", "bare.git"]);
    assert_eq!(capture(&bare).unwrap(), None);

    assert!(matches!(
        capture(&tmp.path().join("missing")),
        Err(RepoError::NotADirectory(_))
    ));
}

#[test]
fn git_not_installed_is_none() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-such-git");
    let got = capture_with(missing.as_os_str(), tmp.path(), UNTRACKED_CONTENT_LIMIT);
    assert_eq!(got.unwrap(), None);
}

#[test]
fn large_untracked_files_count_by_path_and_size() {
    let (_tmp, root) = init_repo();
    let digest = |root: &Path| {
        capture_with(OsStr::new("git"), root, 8)
            .unwrap()
            .unwrap()
            .diff_digest
    };
    write(&root, "big.bin", "0123456789");
    let d1 = digest(&root);
    write(&root, "big.bin", "9876543210");
    assert_eq!(digest(&root), d1, "content over the limit is not read");
    write(&root, "big.bin", "98765432101");
    assert_ne!(digest(&root), d1, "size still counts");

    let path = root.join("big.bin");
    assert_eq!(
        Untracked::inspect(&path, 8),
        Untracked::Large {
            executable: false,
            len: 11
        }
    );
    assert!(matches!(
        Untracked::inspect(&path, 64),
        Untracked::File { len: 11, .. }
    ));
}

#[cfg(unix)]
#[test]
fn untracked_special_files_are_not_opened() {
    let (_tmp, root) = init_repo();
    // Following either would hang or read forever.
    std::os::unix::fs::symlink("/dev/zero", root.join("zero")).unwrap();
    let fifo = root.join("pipe");
    let status = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    // An embedded repository is listed as a directory.
    let nested = root.join("nested");
    fs::create_dir(&nested).unwrap();
    git(&nested, &["init", "-q"]);

    let s = state(&root);
    assert!(s.dirty);
    assert_eq!(state(&root), s);
    assert_eq!(
        Untracked::inspect(&root.join("zero"), UNTRACKED_CONTENT_LIMIT),
        Untracked::Symlink(b"/dev/zero".to_vec())
    );
    assert_eq!(
        Untracked::inspect(&fifo, UNTRACKED_CONTENT_LIMIT),
        Untracked::Special
    );
    assert_eq!(
        Untracked::inspect(&root.join("nested/"), UNTRACKED_CONTENT_LIMIT),
        Untracked::Directory
    );
    assert_eq!(
        Untracked::inspect(&root.join("gone"), UNTRACKED_CONTENT_LIMIT),
        Untracked::Vanished
    );
}

#[test]
fn failures_name_the_command_and_stderr() {
    let (_tmp, root) = init_repo();
    let git = Git {
        program: OsStr::new("git"),
        dir: &root,
    };
    let err = git
        .run(&["rev-parse", "--verify", "no-such-rev"])
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("rev-parse --verify no-such-rev"), "{msg}");
    assert!(msg.contains("répo with space"), "{msg}");
    assert!(msg.contains("fatal"), "{msg}");

    let err = git
        .stream(
            &["diff-index", "--cached", "no-such-rev", "--"],
            &mut io::sink(),
        )
        .unwrap_err();
    assert!(
        matches!(&err, RepoError::Git { stderr, .. } if !stderr.is_empty()),
        "{err}"
    );
}
