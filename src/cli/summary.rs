//! The human-readable form of `sidetrace show`: per execution, a summary,
//! each interaction with the messages new in its turn, the tool calls with
//! their results, and the context the agent retrieved.

use std::collections::{HashMap, HashSet};
use std::io::Write;

use crate::journal::reader::ExecutionView;
use crate::record::{
    Api, CompletionStatus, ContextRef, ExecutionIdSource, Interaction, Message, Provider,
    SponsorAssurance, ToolResult, as_duration, part::Kind, system_time,
};

pub(super) fn when(ts: &Option<crate::record::Timestamp>) -> String {
    ts.as_ref()
        .map(|t| humantime::format_rfc3339_millis(system_time(t)).to_string())
        .unwrap_or_else(|| "-".into())
}

/// One execution, for people.
pub fn write(out: &mut impl Write, v: &ExecutionView) -> std::io::Result<()> {
    let e = &v.execution;
    let source = match ExecutionIdSource::try_from(e.id_source).unwrap_or_default() {
        ExecutionIdSource::Header => "from Sidetrace-Execution-Id",
        ExecutionIdSource::Config => "from --execution-id",
        ExecutionIdSource::Generated => "created for one sidetrace run",
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
    if let Some(ev) = &sponsor.evidence {
        writeln!(
            out,
            "  evidence  {} token {} from {} (key {}, {}, claim {})",
            sponsor.source,
            ev.token_digest,
            ev.issuer,
            or_dash(&ev.key_id),
            ev.algorithm,
            ev.sponsor_claim
        )?;
    }
    if let Some(c) = &e.correlation {
        let mut fields: Vec<(&String, &String)> = c.sources.iter().collect();
        fields.sort();
        for (field, source) in fields {
            let value = match field.as_str() {
                "change_id" => &c.change_id,
                "repository_url" => &c.repository_url,
                "ref_name" => &c.ref_name,
                "revision" => &c.revision,
                "pipeline_run_id" => &c.pipeline_run_id,
                "pipeline_run_url" => &c.pipeline_run_url,
                _ => &c.job_id,
            };
            writeln!(out, "  {field:<16} {value}  ({source})")?;
        }
    }
    let ended = if e.end_time.is_some() {
        format!("{} ({})", when(&e.end_time), e.end_reason)
    } else {
        "(open)".into()
    };
    writeln!(out, "  started   {}    ended {ended}", when(&e.start_time))?;
    write_unit_of_work(out, e)?;
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
    let (mut tool_calls, mut errors, mut mcp) = (0usize, 0usize, 0usize);
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
        mcp += usize::from(it.mcp.is_some());
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
        "  {} interactions ({mcp} MCP), {tool_calls} tool calls, {errors} errors; tokens in {input} (cache read {cache_read}, cache write {cache_write}) out {output}",
        v.interactions.len()
    )?;

    let mut seen: HashSet<&str> = HashSet::new();
    let mut systems: HashSet<&str> = HashSet::new();
    for (n, it) in v.interactions.iter().enumerate() {
        writeln!(out)?;
        write_interaction(out, n + 1, it)?;
        if let Some(s) = &it.system_instructions
            && systems.insert(s.digest.as_str())
        {
            write_message(out, "system", s)?;
        }
        // Only messages new in this turn are worth printing: as linked at
        // record time, or else those not seen earlier in this execution.
        let new: Vec<&Message> = if it.turn > 0 {
            it.new_input_indexes
                .iter()
                .filter_map(|&i| crate::record::inputs::input_at(it, i))
                .collect()
        } else {
            it.input_messages
                .iter()
                .filter(|m| m.digest.is_empty() || !seen.contains(m.digest.as_str()))
                .collect()
        };
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
    let links = super::summary_mcp::links(v);
    write_tool_calls(out, v, &links)?;
    super::summary_mcp::write_calls(out, v, &links)?;
    write_context(out, v)?;
    writeln!(out)?;
    Ok(())
}

/// What `sidetrace run` recorded around the work: the task, the repository
/// before and after, the commits made.
fn write_unit_of_work(out: &mut impl Write, e: &crate::record::Execution) -> std::io::Result<()> {
    if let Some(task) = &e.task {
        let first = task.text.lines().next().unwrap_or_default();
        let more = if task.text.lines().nth(1).is_some() {
            " ..."
        } else {
            ""
        };
        writeln!(
            out,
            "  task      {}{more}  ({})",
            clip(first, 100),
            task.digest
        )?;
    }
    let state = |r: &crate::record::RepositoryState| {
        let mut s = format!(
            "{} {} @ {}",
            or_dash(&r.remote_url),
            or_dash(&r.branch),
            or_dash(&r.head_commit[..r.head_commit.len().min(12)])
        );
        if r.dirty {
            s.push_str(&format!(" + uncommitted {}", r.diff_digest));
        }
        s
    };
    if let Some(before) = &e.repository_before {
        writeln!(out, "  repo      before {}", state(before))?;
    }
    if let Some(after) = &e.repository_after {
        writeln!(out, "            after  {}", state(after))?;
        for c in &after.commits {
            writeln!(
                out,
                "  commit    {} {}  ({}, {})",
                &c.id[..c.id.len().min(12)],
                c.subject,
                c.author,
                c.time
            )?;
        }
    }
    if let Some(code) = e.exit_status {
        writeln!(out, "  exit      {code}")?;
    }
    Ok(())
}

/// Every tool call the model made, with the result the agent sent back.
fn write_tool_calls(
    out: &mut impl Write,
    v: &ExecutionView,
    links: &[crate::capture::mcp::link::McpLink],
) -> std::io::Result<()> {
    let calls: Vec<(usize, &str, &crate::record::ToolCall)> = v
        .interactions
        .iter()
        .enumerate()
        .flat_map(|(n, it)| {
            it.tool_calls
                .iter()
                .map(move |c| (n + 1, it.id.as_str(), c))
        })
        .collect();
    if calls.is_empty() {
        return Ok(());
    }
    // The first time each result came back.
    let mut results: HashMap<&str, (usize, &ToolResult)> = HashMap::new();
    for (n, it) in v.interactions.iter().enumerate() {
        for r in &it.tool_results {
            results.entry(r.call_id.as_str()).or_insert((n + 1, r));
        }
    }
    writeln!(out)?;
    writeln!(out, "  tool calls")?;
    for (n, caller, c) in calls {
        let result = match results.get(c.id.as_str()) {
            Some((m, r)) => {
                let took = r
                    .duration
                    .as_ref()
                    .map(|d| format!(" after {}ms", as_duration(d).as_millis()))
                    .unwrap_or_default();
                let error = if r.is_error { " (error)" } else { "" };
                format!(
                    "result in #{m}{took}{error}: {} ({} bytes)",
                    r.result_digest, r.result_size
                )
            }
            None => "no result recorded".into(),
        };
        let served = super::summary_mcp::served_by(v, links, &c.id, caller)
            .map(|s| format!("  {s}"))
            .unwrap_or_default();
        writeln!(
            out,
            "     #{n} {} {}  [{}]{served}  {result}",
            c.name,
            clip(&c.arguments, 200),
            c.id
        )?;
    }
    Ok(())
}

/// What the agent retrieved and showed the model.
fn write_context(out: &mut impl Write, v: &ExecutionView) -> std::io::Result<()> {
    let refs: Vec<(usize, &ContextRef)> = v
        .interactions
        .iter()
        .enumerate()
        .flat_map(|(n, it)| it.context_refs.iter().map(move |r| (n + 1, r)))
        .collect();
    if refs.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "  context")?;
    for (n, r) in refs {
        let from = if r.tool_call_id.is_empty() {
            String::new()
        } else {
            format!("  ({} [{}])", r.tool_name, r.tool_call_id)
        };
        let what = if r.uri.is_empty() {
            r.mime_type.as_str()
        } else {
            r.uri.as_str()
        };
        writeln!(
            out,
            "     #{n} {} {}  {} ({} bytes){from}",
            r.kind,
            clip(what, 200),
            or_dash(&r.digest),
            r.size
        )?;
    }
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
    match &it.mcp {
        Some(m) => writeln!(out, "{}", super::summary_mcp::head(n, it, m))?,
        None => write_model_head(out, n, it)?,
    }
    let status = CompletionStatus::of(it);
    if status != CompletionStatus::Complete {
        let detail = it.completion.as_ref().map_or("", |c| c.detail.as_str());
        writeln!(out, "     ! {}: {detail}", status.short_name())?;
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

fn write_model_head(out: &mut impl Write, n: usize, it: &Interaction) -> std::io::Result<()> {
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
    if it.turn > 0 {
        line.push_str(&format!("  turn {}", it.turn));
    }
    if !it.finish_reasons.is_empty() {
        line.push_str(&format!("  finish {}", it.finish_reasons.join(",")));
    }
    writeln!(out, "{line}")
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

pub(super) fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

/// One line, at most `max` characters.
pub(super) fn clip(s: &str, max: usize) -> String {
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
