//! The MCP part of `sidetrace show`: one line per JSON-RPC exchange, and
//! the tool calls MCP servers ran, each with the model call it served.

use std::collections::HashMap;
use std::io::Write;

use crate::capture::mcp::link::{McpLink, link_tool_calls};
use crate::journal::reader::ExecutionView;
use crate::record::{Interaction, McpExchange, as_duration};

use super::summary::{clip, or_dash, when};

/// The first line of an MCP interaction.
pub fn head(n: usize, it: &Interaction, m: &McpExchange) -> String {
    let timing = it.timing.unwrap_or_default();
    let server = if m.server_name.is_empty() {
        "mcp".to_owned()
    } else {
        format!("mcp {}", m.server_name)
    };
    let what = if !m.transport_event.is_empty() {
        format!(
            "({}) {}",
            m.transport_event,
            it.http.as_ref().map_or("", |h| h.path.as_str())
        )
    } else if m.malformed || m.oversized {
        format!(
            "{} from the {} ({} bytes)",
            if m.oversized {
                "oversized message"
            } else {
                "malformed message"
            },
            m.initiator,
            m.request_size
        )
    } else if m.orphan_response {
        format!("response to {} with no request", or_dash(&m.request_id))
    } else {
        let mut s = m.method.clone();
        if m.initiator == "server" {
            s.push_str(" (from the server)");
        }
        if m.notification {
            s.push_str(" (notification)");
            if !m.related_request_id.is_empty() {
                s.push_str(&format!(" for [{}]", m.related_request_id));
            }
        } else {
            s.push_str(&format!(" [{}]", m.request_id));
        }
        if m.unknown_method {
            s.push_str(" (not an MCP method)");
        }
        let target = [&m.tool_name, &m.resource_uri, &m.prompt_name]
            .into_iter()
            .find(|t| !t.is_empty());
        if let Some(t) = target {
            s.push_str(&format!(" {t}"));
        }
        if !m.tool_arguments.is_empty() {
            s.push_str(&format!(" {}", clip(&m.tool_arguments, 200)));
        }
        s
    };
    let mut line = format!("  #{n} {}  {server}  {what}", when(&timing.start_time));
    let outcome = if m.error.is_some() {
        "error"
    } else if m.tool_is_error {
        "tool error"
    } else if !m.unanswered.is_empty() {
        "no answer"
    } else if !m.result_digest.is_empty() {
        "ok"
    } else {
        ""
    };
    if !outcome.is_empty() {
        line.push_str(&format!("  -> {outcome}"));
    }
    if let Some(d) = &timing.duration
        && !m.notification
        && !m.malformed
        && !m.oversized
    {
        line.push_str(&format!("  {}ms", as_duration(d).as_millis()));
    }
    if m.progress_notifications > 0 {
        line.push_str(&format!("  ({} progress)", m.progress_notifications));
    }
    if let Some(c) = &m.client_info
        && m.method == "initialize"
    {
        line.push_str(&format!("  client {} {}", c.name, c.version));
    }
    if let Some(s) = &m.server_info
        && m.method == "initialize"
    {
        line.push_str(&format!("  server {} {}", s.name, s.version));
    }
    if !m.protocol_version.is_empty() && m.method == "initialize" {
        line.push_str(&format!("  protocol {}", m.protocol_version));
    }
    line
}

/// The model tool calls MCP servers served, by call id.
pub fn links(v: &ExecutionView) -> Vec<McpLink> {
    link_tool_calls(&v.interactions)
}

/// Every `tools/call` an MCP server ran, with the model call it served.
pub fn write_calls(
    out: &mut impl Write,
    v: &ExecutionView,
    links: &[McpLink],
) -> std::io::Result<()> {
    let index: HashMap<&str, usize> = v
        .interactions
        .iter()
        .enumerate()
        .map(|(n, it)| (it.id.as_str(), n + 1))
        .collect();
    let calls: Vec<(usize, &Interaction, &McpExchange)> = v
        .interactions
        .iter()
        .enumerate()
        .filter_map(|(n, it)| {
            let m = it.mcp.as_ref()?;
            (m.method == "tools/call" && !m.notification).then_some((n + 1, it, m))
        })
        .collect();
    if calls.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(out, "  mcp tool calls")?;
    for (n, it, m) in calls {
        let result = if !m.unanswered.is_empty() {
            format!("no answer: {}", m.unanswered)
        } else if let Some(e) = &m.error {
            format!("error {}: {}", e.code, clip(&e.message, 200))
        } else if m.tool_is_error {
            format!("tool error: {}", clip(&it.error_message, 200))
        } else {
            format!("ok: {}", or_dash(&m.result_digest))
        };
        let served = match links.iter().find(|l| l.mcp_interaction_id == it.id) {
            Some(l) => format!(
                "  <- model call {} [{}] in #{}",
                l.model_tool_name,
                l.call_id,
                index
                    .get(l.model_interaction_id.as_str())
                    .copied()
                    .unwrap_or(0)
            ),
            None => String::new(),
        };
        writeln!(
            out,
            "     #{n} {} {} {}  {result}{served}",
            or_dash(&m.server_name),
            m.tool_name,
            clip(&m.tool_arguments, 200)
        )?;
    }
    Ok(())
}

/// For a model call: which MCP exchange ran it, if one did.
pub fn served_by(
    v: &ExecutionView,
    links: &[McpLink],
    call_id: &str,
    model_interaction: &str,
) -> Option<String> {
    let l = links
        .iter()
        .find(|l| l.call_id == call_id && l.model_interaction_id == model_interaction)?;
    let (n, it) = v
        .interactions
        .iter()
        .enumerate()
        .find(|(_, it)| it.id == l.mcp_interaction_id)?;
    let m = it.mcp.as_ref()?;
    Some(format!(
        "ran by MCP {} {} in #{}",
        or_dash(&m.server_name),
        m.tool_name,
        n + 1
    ))
}
