//! The few lines `sidetrace run` prints when the command is done: what was
//! recorded and where to look.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::journal::reader::ExecutionView;
use crate::record::SponsorAssurance;

pub fn write(
    out: &mut impl Write,
    v: &ExecutionView,
    how: &str,
    took: Duration,
    journal: &Path,
) -> std::io::Result<()> {
    let e = &v.execution;
    writeln!(
        out,
        "sidetrace: execution {} recorded in {}",
        e.id,
        journal.display()
    )?;
    let sponsor = e.sponsor.clone().unwrap_or_default();
    let assurance = SponsorAssurance::try_from(sponsor.assurance)
        .unwrap_or_default()
        .as_str_name()
        .trim_start_matches("SPONSOR_ASSURANCE_")
        .to_ascii_lowercase();
    let change = e
        .correlation
        .as_ref()
        .map(|c| c.change_id.as_str())
        .filter(|c| !c.is_empty())
        .unwrap_or("(none)");
    writeln!(
        out,
        "  sponsor   {} ({assurance})    change {change}",
        if sponsor.id.is_empty() {
            "(none)"
        } else {
            &sponsor.id
        }
    )?;
    writeln!(
        out,
        "  command   {how} after {}",
        humantime::format_duration(Duration::from_millis(took.as_millis() as u64))
    )?;

    let mut models: Vec<&str> = Vec::new();
    let (mut tool_calls, mut context, mut tunnels, mut mcp) = (0usize, 0usize, 0usize, 0usize);
    for it in &v.interactions {
        let model = if it.served_model.is_empty() {
            &it.requested_model
        } else {
            &it.served_model
        };
        if !model.is_empty() && !models.contains(&model.as_str()) {
            models.push(model);
        }
        tool_calls += it.tool_calls.len();
        context += it.context_refs.len();
        tunnels += usize::from(it.tunnel.is_some());
        mcp += usize::from(it.mcp.is_some());
    }
    writeln!(
        out,
        "  models    {}",
        if models.is_empty() {
            "-".to_owned()
        } else {
            models.join(", ")
        }
    )?;
    writeln!(
        out,
        "  {} interactions ({mcp} MCP, {tunnels} tunnelled), {tool_calls} tool calls, {context} context references",
        v.interactions.len()
    )?;
    match &e.repository_after {
        Some(after) if !after.commits.is_empty() => {
            writeln!(out, "  commits   {}", after.commits.len())?;
            for c in &after.commits {
                writeln!(
                    out,
                    "            {} {}",
                    &c.id[..c.id.len().min(12)],
                    c.subject
                )?;
            }
        }
        Some(_) => writeln!(out, "  commits   none")?,
        None => writeln!(out, "  commits   - (not in a git repository)")?,
    }
    writeln!(
        out,
        "  details   sidetrace show --journal {} --execution {}",
        journal.display(),
        e.id
    )
}
