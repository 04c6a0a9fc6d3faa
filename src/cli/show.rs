//! `sidetrace show`: what the journal recorded, per execution — a readable
//! summary, or JSON lines (`--json`) of the canonical proto JSON with message
//! contents resolved from blobs.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::capture::exchange::resolve_messages;
use crate::journal::reader::{ExecutionView, JournalReader};
use crate::record::{ShowRecord, show_record::Record};

use super::summary;

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Journal file [default: $XDG_DATA_HOME/sidetrace/journal.db].
    #[arg(long, env = "SIDETRACE_JOURNAL", value_name = "PATH")]
    pub journal: Option<PathBuf>,

    /// Only this execution.
    #[arg(long, value_name = "ID")]
    pub execution: Option<String>,

    /// JSON lines: each execution record followed by its interactions (proto3 canonical JSON).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ShowArgs) -> anyhow::Result<ExitCode> {
    let path = args.journal.unwrap_or_else(crate::journal::default_path);
    let reader = JournalReader::open(&path)?;
    let mut views = reader.executions(args.execution.as_deref())?;
    if views.is_empty() {
        match &args.execution {
            Some(id) => {
                eprintln!("no execution {id:?} in {}", path.display());
                return Ok(ExitCode::from(1));
            }
            None => {
                eprintln!("the journal {} has no executions yet", path.display());
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
    let mut load = |digest: &str| reader.blob(digest).ok().flatten();
    for view in &mut views {
        for it in &mut view.interactions {
            resolve_messages(it, &mut load);
        }
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let written = if args.json {
        write_json(&mut out, &views)
    } else {
        views.iter().try_for_each(|v| summary::write(&mut out, v))
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        // `sidetrace show | head` is fine.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

fn write_json(out: &mut impl Write, views: &[ExecutionView]) -> std::io::Result<()> {
    for v in views {
        let line = |record| {
            serde_json::to_string(&ShowRecord {
                record: Some(record),
            })
            .map_err(std::io::Error::other)
        };
        writeln!(out, "{}", line(Record::Execution(v.execution.clone()))?)?;
        for it in &v.interactions {
            writeln!(out, "{}", line(Record::Interaction(it.clone()))?)?;
        }
    }
    Ok(())
}
