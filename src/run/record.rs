//! The records that open and close the execution of `sidetrace run`: what
//! was asked (the task), by whom, and the repository before and after.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::identity::Resolved;
use crate::record::{
    Commit, Execution, ExecutionEnd, ExecutionIdSource, RepositoryState, TaskSpec, digest_of,
    timestamp,
};

use super::repo::{self, RepoState};

/// Where the task came from.
#[derive(Debug, Clone)]
pub enum Task {
    File(PathBuf),
    Text(String),
    /// Neither given: the command line is the task.
    CommandLine,
}

/// The task spec as recorded: its text and digest.
pub fn task_spec(task: &Task, command: &[String]) -> Result<TaskSpec, String> {
    let text = match task {
        Task::File(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the task file {}: {e}", path.display()))?,
        Task::Text(t) => t.clone(),
        Task::CommandLine => command
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    };
    Ok(TaskSpec {
        digest: digest_of(text.as_bytes()),
        text,
    })
}

/// An argument as a POSIX shell would need it.
fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(&b));
    if plain {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// The repository containing `dir`, or None outside one. A failure to read
/// it is logged, not fatal: the work is recorded without repository state.
pub async fn capture_repository(dir: PathBuf) -> Option<RepoState> {
    let shown = dir.display().to_string();
    match tokio::task::spawn_blocking(move || repo::capture(&dir)).await {
        Ok(Ok(state)) => state,
        Ok(Err(e)) => {
            tracing::warn!(dir = %shown, error = %e, "could not read the git repository; recording without repository state");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the git repository failed");
            None
        }
    }
}

/// The commits made between `before` and `after` (on the same work tree).
pub async fn commits_made(before: &RepoState, after: &RepoState) -> Vec<repo::Commit> {
    if before.head_commit == after.head_commit || after.head_commit.is_empty() {
        return Vec::new();
    }
    let (root, base, head) = (
        after.root.clone(),
        before.head_commit.clone(),
        after.head_commit.clone(),
    );
    match tokio::task::spawn_blocking(move || repo::commits_between(&root, &base, &head)).await {
        Ok(Ok(commits)) => commits,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not list the commits made during the run");
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "listing the commits made during the run failed");
            Vec::new()
        }
    }
}

pub fn repository_state(state: &RepoState, commits: &[repo::Commit]) -> RepositoryState {
    RepositoryState {
        remote_url: state.remote_url.clone(),
        branch: state.branch.clone(),
        head_commit: state.head_commit.clone(),
        tree_hash: state.tree_hash.clone(),
        dirty: state.dirty,
        commits_produced: commits.iter().map(|c| c.id.clone()).collect(),
        diff_digest: state.diff_digest.clone(),
        commits: commits
            .iter()
            .map(|c| Commit {
                id: c.id.clone(),
                author: c.author.clone(),
                time: c.time.clone(),
                subject: c.subject.clone(),
            })
            .collect(),
    }
}

/// What opens the run's execution.
pub struct Opening<'a> {
    pub execution_id: &'a str,
    /// The operator named the id (flag or environment).
    pub id_given: bool,
    pub start: SystemTime,
    pub identity: &'a Resolved,
    pub task: TaskSpec,
    pub repository: Option<&'a RepoState>,
}

pub fn execution(o: Opening<'_>) -> Execution {
    Execution {
        id: o.execution_id.to_owned(),
        id_source: if o.id_given {
            ExecutionIdSource::Config
        } else {
            ExecutionIdSource::Generated
        } as i32,
        start_time: Some(timestamp(o.start)),
        sponsor: Some(o.identity.sponsor.clone()),
        correlation: Some(o.identity.correlation.clone()),
        task: Some(o.task),
        repository_before: o.repository.map(|r| repository_state(r, &[])),
        recorder_version: env!("CARGO_PKG_VERSION").to_owned(),
        ..Default::default()
    }
}

/// How the command ended, for the record and for our own exit code.
pub struct Outcome {
    /// The child's exit code, or 128 + signal, or 127/126 when it never ran.
    pub exit_status: i32,
    pub reason: String,
}

pub fn execution_end(
    execution_id: &str,
    outcome: &Outcome,
    after: Option<(&RepoState, &[repo::Commit])>,
) -> ExecutionEnd {
    ExecutionEnd {
        execution_id: execution_id.to_owned(),
        end_time: Some(timestamp(SystemTime::now())),
        reason: outcome.reason.clone(),
        exit_status: Some(outcome.exit_status),
        repository_after: after.map(|(state, commits)| repository_state(state, commits)),
    }
}

/// Fills the correlation fields nobody configured (repository, branch,
/// revision) from the repository the run starts in.
pub fn correlation_from_repository(
    configured: &mut crate::identity::correlation::Configured,
    ci: &crate::identity::correlation::CiEnvironment,
    repo: &RepoState,
) {
    for (field, value) in [
        ("repository_url", &repo.remote_url),
        ("ref_name", &repo.branch),
        ("revision", &repo.head_commit),
    ] {
        if value.is_empty() || ci.values.contains_key(field) {
            continue;
        }
        if let Some(name) = crate::identity::correlation::field_name(field) {
            configured
                .0
                .entry(name)
                .or_insert_with(|| (value.clone(), "git (sidetrace run)".to_owned()));
        }
    }
}

/// The directory the run starts in, for the repository capture.
pub fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| Path::new(".").to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_the_task_when_none_is_given() {
        let command: Vec<String> = ["claude", "-p", "fix the test", "it's"]
            .map(String::from)
            .into();
        let spec = task_spec(&Task::CommandLine, &command).unwrap();
        assert_eq!(spec.text, r#"claude -p 'fix the test' 'it'\''s'"#);
        assert_eq!(spec.digest, digest_of(spec.text.as_bytes()));
        let given = task_spec(&Task::Text("Fix #12".into()), &command).unwrap();
        assert_eq!(given.text, "Fix #12");
        let missing = task_spec(&Task::File("/nonexistent/task.md".into()), &command);
        assert!(missing.unwrap_err().contains("/nonexistent/task.md"));
    }
}
