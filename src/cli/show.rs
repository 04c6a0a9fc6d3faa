//! `sidetrace show`: what the journal recorded, per execution — a readable
//! summary, or JSON lines (`--json`) of the canonical proto JSON with message
//! contents resolved from blobs.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;

use crate::capture::exchange::resolve_messages;
use crate::journal::reader::{ExecutionView, JournalReader};
use crate::record::{
    Api, CompletionStatus, ExecutionIdSource, Interaction, Message, Provider, ShowRecord,
    SponsorAssurance, as_duration, part::Kind, show_record::Record, system_time,
};

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
        views.iter().try_for_each(|v| write_summary(&mut out, v))
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

fn when(ts: &Option<crate::record::Timestamp>) -> String {
    ts.as_ref()
        .map(|t| humantime::format_rfc3339_millis(system_time(t)).to_string())
        .unwrap_or_else(|| "-".into())
}

fn write_summary(out: &mut impl Write, v: &ExecutionView) -> std::io::Result<()> {
    let e = &v.execution;
    let source = match ExecutionIdSource::try_from(e.id_source).unwrap_or_default() {
        ExecutionIdSource::Header => "from Sidetrace-Execution-Id",
        ExecutionIdSource::Config => "from --execution-id",
        ExecutionIdSource::Generated => "created for one proxy run",
        ExecutionIdSource::AgentSession => "the agent's session",
        ExecutionIdSource::Unspecified => "",
    };
    writeln!(out, "execution {}  ({source})", e.id)?;
    let sponsor = e.sponsor.clone().unwrap_or_default();
    let assurance = match SponsorAssurance::try_from(sponsor.assurance).unwrap_or_default() {
        SponsorAssurance::Header => "claimed by header",
        SponsorAssurance::Static => "set by operator",
        SponsorAssurance::Oidc => "verified OIDC",
        SponsorAssurance::None | SponsorAssurance::Unspecified => "none",
    };
    let sponsor_id = if sponsor.id.is_empty() {
        "(none)"
    } else {
        &sponsor.id
    };
    let change = e
        .correlation
        .as_ref()
        .map(|c| c.change_id.as_str())
        .unwrap_or_default();
    writeln!(
        out,
        "  sponsor   {sponsor_id} ({assurance})    change {}",
        if change.is_empty() { "(none)" } else { change }
    )?;
    let ended = if e.end_time.is_some() {
        format!("{} ({})", when(&e.end_time), e.end_reason)
    } else {
        "(open)".into()
    };
    writeln!(out, "  started   {}    ended {ended}", when(&e.start_time))?;
    if let Some(agent) = &e.agent
        && !agent.user_agent.is_empty()
    {
        writeln!(
            out,
            "  agent     {}  credential {}",
            agent.user_agent,
            or_dash(&agent.credential_fingerprint)
        )?;
    }

    let mut models: Vec<String> = Vec::new();
    let (mut tool_calls, mut errors) = (0usize, 0usize);
    let (mut input, mut output, mut cache_read, mut cache_write) = (0u64, 0u64, 0u64, 0u64);
    for it in &v.interactions {
        let pair = match (it.requested_model.as_str(), it.served_model.as_str()) {
            ("", "") => continue_model(),
            (r, "") => r.to_owned(),
            (r, s) if r == s || r.is_empty() => s.to_owned(),
            (r, s) => format!("{r} -> {s}"),
        };
        if !pair.is_empty() && !models.contains(&pair) {
            models.push(pair);
        }
        tool_calls += it.tool_calls.len();
        if is_error(it) {
            errors += 1;
        }
        if let Some(u) = &it.usage {
            input += u.total_input_tokens;
            output += u.output_tokens;
            cache_read += u.cache_read_input_tokens;
            cache_write += u.cache_write_input_tokens;
        }
    }
    writeln!(
        out,
        "  models    {}",
        if models.is_empty() {
            "-".into()
        } else {
            models.join(", ")
        }
    )?;
    writeln!(
        out,
        "  {} interactions, {tool_calls} tool calls, {errors} errors; tokens in {input} (cache read {cache_read}, cache write {cache_write}) out {output}",
        v.interactions.len()
    )?;

    let mut seen: HashSet<&str> = HashSet::new();
    for (n, it) in v.interactions.iter().enumerate() {
        writeln!(out)?;
        write_interaction(out, n + 1, it)?;
        // Only messages new in this turn are worth printing.
        let new: Vec<&Message> = it
            .input_messages
            .iter()
            .filter(|m| m.digest.is_empty() || !seen.contains(m.digest.as_str()))
            .collect();
        if n == 0
            && let Some(s) = &it.system_instructions
        {
            write_message(out, "system", s)?;
        }
        for m in new {
            write_message(out, &m.role, m)?;
        }
        for m in &it.output_messages {
            write_message(out, "=> model", m)?;
        }
        for m in it.input_messages.iter().chain(&it.output_messages) {
            seen.insert(m.digest.as_str());
        }
    }
    writeln!(out)?;
    Ok(())
}

fn continue_model() -> String {
    String::new()
}

fn is_error(it: &Interaction) -> bool {
    let status = it.http.as_ref().map_or(0, |h| h.status);
    status >= 400
        || !it.error_message.is_empty()
        || !matches!(
            CompletionStatus::try_from(it.completion.as_ref().map_or(0, |c| c.status)),
            Ok(CompletionStatus::Complete)
        )
}

fn write_interaction(out: &mut impl Write, n: usize, it: &Interaction) -> std::io::Result<()> {
    let provider = Provider::try_from(it.provider).unwrap_or_default().name();
    let api = Api::try_from(it.api).unwrap_or_default().name();
    let http = it.http.clone().unwrap_or_default();
    let timing = it.timing.unwrap_or_default();
    let mut line = format!(
        "  #{n} {}  {provider}/{api}  {} {}  -> {}",
        when(&timing.start_time),
        http.method,
        http.path,
        if http.status == 0 {
            "-".to_owned()
        } else {
            http.status.to_string()
        }
    );
    if !it.requested_model.is_empty() || !it.served_model.is_empty() {
        line.push_str(&format!(
            "  model {} served {}",
            or_dash(&it.requested_model),
            or_dash(&it.served_model)
        ));
    }
    if it.stream {
        line.push_str("  stream");
    }
    if let Some(d) = &timing.duration {
        line.push_str(&format!("  {}ms", as_duration(d).as_millis()));
    }
    if let Some(t) = &timing.time_to_first_chunk {
        line.push_str(&format!(" (first chunk {}ms)", as_duration(t).as_millis()));
    }
    if let Some(u) = &it.usage {
        line.push_str(&format!(
            "  tokens in {} out {}",
            u.total_input_tokens, u.output_tokens
        ));
    }
    if !it.finish_reasons.is_empty() {
        line.push_str(&format!("  finish {}", it.finish_reasons.join(",")));
    }
    writeln!(out, "{line}")?;
    let completion = it.completion.clone().unwrap_or_default();
    if !matches!(
        CompletionStatus::try_from(completion.status),
        Ok(CompletionStatus::Complete)
    ) {
        let status = CompletionStatus::try_from(completion.status)
            .map(|s| {
                s.as_str_name()
                    .trim_start_matches("COMPLETION_STATUS_")
                    .to_lowercase()
            })
            .unwrap_or_default();
        writeln!(out, "     ! {status}: {}", completion.detail)?;
    }
    if !it.error_message.is_empty() {
        writeln!(
            out,
            "     ! error {}: {}",
            or_dash(&it.error_type),
            clip(&it.error_message, 300)
        )?;
    }
    for issue in &it.capture_issues {
        writeln!(
            out,
            "     ! capture {}: {}",
            issue.kind,
            clip(&issue.detail, 300)
        )?;
    }
    Ok(())
}

fn write_message(out: &mut impl Write, label: &str, m: &Message) -> std::io::Result<()> {
    for p in &m.parts {
        let text = match &p.kind {
            Some(Kind::Text(t)) => format!("{label}: {}", clip(&t.content, 400)),
            Some(Kind::ToolCall(c)) => format!(
                "{label}: tool call {} {}  [{}]",
                c.name,
                clip(&c.arguments, 300),
                c.id
            ),
            Some(Kind::ToolCallResponse(r)) => format!(
                "{label}: tool result [{}]{}: {}",
                r.id,
                if r.is_error { " (error)" } else { "" },
                clip(&r.response, 300)
            ),
            Some(Kind::Reasoning(r)) if r.redacted => format!("{label}: (reasoning, redacted)"),
            Some(Kind::Reasoning(r)) => format!("{label}: (reasoning) {}", clip(&r.content, 200)),
            Some(Kind::Blob(b)) => format!(
                "{label}: [{} {} {} bytes {}]",
                b.modality, b.mime_type, b.size, b.digest
            ),
            Some(Kind::Uri(u)) => format!("{label}: [{} {}]", u.modality, u.uri),
            Some(Kind::Other(o)) => format!("{label}: [{}] {}", o.r#type, clip(&o.json, 200)),
            None => continue,
        };
        writeln!(out, "     {text}")?;
    }
    Ok(())
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// One line, at most `max` characters.
fn clip(s: &str, max: usize) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut t: String = flat.chars().take(max).collect();
        t.push('…');
        t
    }
}
