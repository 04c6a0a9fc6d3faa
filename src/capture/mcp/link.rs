//! Which MCP `tools/call` served which of the model's tool calls.
//!
//! Computed from the records when they are read, because the two sides are
//! often recorded by different processes (the proxy sees the model, a
//! `sidetrace mcp` wrapper sees the tool server). A model call and an MCP
//! call match when they are in the same execution, name the same tool (the
//! model may know it as `mcp__{server}__{tool}` or `{server}__{tool}`), carry
//! equal arguments (as JSON values), and the model's response had ended
//! before the MCP request was sent. Each side links at most once; an MCP
//! call takes the latest unclaimed model call before it, so a call the
//! agent never ran does not steal a later one's link.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::record::{Api, Interaction, system_time};

/// Clocks of two processes on one host agree; this absorbs rounding only.
const SKEW: Duration = Duration::from_millis(500);

/// A model tool call served by an MCP `tools/call`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct McpLink {
    pub execution_id: String,
    /// The interaction whose response asked for the call.
    pub model_interaction_id: String,
    pub call_id: String,
    /// The tool's name as the model knew it.
    pub model_tool_name: String,
    /// The MCP `tools/call` exchange.
    pub mcp_interaction_id: String,
}

struct ModelCall<'a> {
    execution_id: &'a str,
    interaction_id: &'a str,
    call_id: &'a str,
    name: &'a str,
    args: Value,
    at: SystemTime,
}

struct McpCall<'a> {
    execution_id: &'a str,
    interaction_id: &'a str,
    server: &'a str,
    tool: &'a str,
    args: Value,
    at: SystemTime,
}

/// Links across `interactions` (any order, any executions).
pub fn link_tool_calls(interactions: &[Interaction]) -> Vec<McpLink> {
    let mut model = Vec::new();
    let mut mcp = Vec::new();
    for it in interactions {
        let end = it
            .timing
            .as_ref()
            .and_then(|t| t.end_time.as_ref())
            .map(system_time);
        let start = it
            .timing
            .as_ref()
            .and_then(|t| t.start_time.as_ref())
            .map(system_time);
        if it.api == Api::Mcp as i32 {
            let Some(m) = it.mcp.as_ref() else { continue };
            if m.method != "tools/call" || m.tool_name.is_empty() {
                continue;
            }
            mcp.push(McpCall {
                execution_id: &it.execution_id,
                interaction_id: &it.id,
                server: &m.server_name,
                tool: &m.tool_name,
                args: args(&m.tool_arguments),
                at: start.unwrap_or(SystemTime::UNIX_EPOCH),
            });
        } else {
            let at = end.or(start).unwrap_or(SystemTime::UNIX_EPOCH);
            for c in &it.tool_calls {
                model.push(ModelCall {
                    execution_id: &it.execution_id,
                    interaction_id: &it.id,
                    call_id: &c.id,
                    name: &c.name,
                    args: args(&c.arguments),
                    at,
                });
            }
        }
    }
    mcp.sort_by_key(|c| c.at);
    let servers: HashSet<&str> = mcp
        .iter()
        .map(|c| c.server)
        .filter(|s| !s.is_empty())
        .collect();
    let mut claimed: HashSet<(&str, &str)> = HashSet::new();
    let mut links = Vec::new();
    for call in &mcp {
        let best = model
            .iter()
            .filter(|m| m.execution_id == call.execution_id)
            .filter(|m| m.at <= call.at + SKEW)
            .filter(|m| !claimed.contains(&(m.interaction_id, m.call_id)))
            .filter(|m| names_match(m.name, call.server, call.tool))
            .filter(|m| !names_another_server(m.name, call.server, &servers))
            .filter(|m| m.args == call.args)
            .max_by_key(|m| m.at);
        if let Some(m) = best {
            claimed.insert((m.interaction_id, m.call_id));
            links.push(McpLink {
                execution_id: call.execution_id.to_owned(),
                model_interaction_id: m.interaction_id.to_owned(),
                call_id: m.call_id.to_owned(),
                model_tool_name: m.name.to_owned(),
                mcp_interaction_id: call.interaction_id.to_owned(),
            });
        }
    }
    links
}

/// Arguments as a JSON value; none at all counts as `{}`.
fn args(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Default::default());
    }
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// `mcp__{other}__{tool}` where `other` is another server of the
/// execution: the call went there, not to `server`.
fn names_another_server(model_name: &str, server: &str, servers: &HashSet<&str>) -> bool {
    let mut parts = model_name.splitn(3, "__");
    match (parts.next(), parts.next(), parts.next()) {
        (Some("mcp"), Some(named), Some(_)) => named != server && servers.contains(named),
        _ => false,
    }
}

/// Does the model's name for a tool denote `tool` on `server`?
pub fn names_match(model_name: &str, server: &str, tool: &str) -> bool {
    if model_name == tool {
        return true;
    }
    if !server.is_empty()
        && (model_name == format!("mcp__{server}__{tool}")
            || model_name == format!("{server}__{tool}"))
    {
        return true;
    }
    ["__", ".", "/"].iter().any(|sep| {
        model_name
            .strip_suffix(tool)
            .is_some_and(|head| head.ends_with(sep))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{McpExchange, Timing, ToolCall, timestamp};

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + s)
    }

    fn model(id: &str, end: u64, calls: &[(&str, &str, &str)]) -> Interaction {
        Interaction {
            id: id.into(),
            execution_id: "e".into(),
            api: Api::Messages as i32,
            timing: Some(Timing {
                start_time: Some(timestamp(at(end - 1))),
                end_time: Some(timestamp(at(end))),
                ..Default::default()
            }),
            tool_calls: calls
                .iter()
                .map(|(cid, name, args)| ToolCall {
                    id: (*cid).into(),
                    name: (*name).into(),
                    arguments: (*args).into(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn mcp(id: &str, start: u64, tool: &str, args: &str) -> Interaction {
        Interaction {
            id: id.into(),
            execution_id: "e".into(),
            api: Api::Mcp as i32,
            timing: Some(Timing {
                start_time: Some(timestamp(at(start))),
                ..Default::default()
            }),
            mcp: Some(McpExchange {
                method: "tools/call".into(),
                server_name: "files".into(),
                tool_name: tool.into(),
                tool_arguments: args.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn links_by_name_and_arguments_after_the_call() {
        let records = vec![
            mcp("early", 5, "read_file", r#"{"path":"a"}"#), // before the model asked: no link
            model(
                "m1",
                10,
                &[
                    ("c1", "mcp__files__read_file", r#"{ "path" : "a" }"#),
                    ("c2", "Bash", "{}"),
                ],
            ),
            mcp("x1", 12, "read_file", r#"{"path":"a"}"#),
            mcp("x2", 13, "read_file", r#"{"path":"b"}"#), // other arguments: no link
        ];
        let links = link_tool_calls(&records);
        assert_eq!(links.len(), 1);
        assert_eq!(
            (
                links[0].call_id.as_str(),
                links[0].mcp_interaction_id.as_str()
            ),
            ("c1", "x1")
        );
    }

    #[test]
    fn repeated_calls_link_to_the_latest_unclaimed_call() {
        let records = vec![
            model("m1", 10, &[("c1", "read_file", r#"{"path":"a"}"#)]), // never ran
            model("m2", 20, &[("c2", "read_file", r#"{"path":"a"}"#)]),
            mcp("x1", 21, "read_file", r#"{"path":"a"}"#),
            model(
                "m3",
                30,
                &[
                    ("c3", "read_file", r#"{"path":"a"}"#),
                    ("c4", "read_file", r#"{"path":"a"}"#),
                ],
            ),
            mcp("x2", 31, "read_file", r#"{"path":"a"}"#),
            mcp("x3", 31, "read_file", r#"{"path":"a"}"#),
        ];
        let links = link_tool_calls(&records);
        let pairs: Vec<(&str, &str)> = links
            .iter()
            .map(|l| (l.mcp_interaction_id.as_str(), l.call_id.as_str()))
            .collect();
        assert_eq!(pairs.len(), 3);
        assert!(pairs.contains(&("x1", "c2")));
        let later: HashSet<&str> = pairs[1..].iter().map(|p| p.1).collect();
        assert_eq!(later, HashSet::from(["c3", "c4"]));
    }

    #[test]
    fn a_call_named_for_another_server_is_not_taken() {
        let mut jira = mcp("j1", 12, "search", r#"{"q":"x"}"#);
        jira.mcp.as_mut().unwrap().server_name = "jira".into();
        let mut github = mcp("g1", 11, "search", r#"{"q":"x"}"#);
        github.mcp.as_mut().unwrap().server_name = "github".into();
        let records = vec![
            model("m1", 10, &[("c1", "mcp__jira__search", r#"{"q":"x"}"#)]),
            github,
            jira,
        ];
        let links = link_tool_calls(&records);
        assert_eq!(links.len(), 1);
        assert_eq!(
            links[0].mcp_interaction_id, "j1",
            "github's earlier search does not steal it"
        );
    }

    #[test]
    fn names() {
        assert!(names_match("read_file", "files", "read_file"));
        assert!(names_match("mcp__files__read_file", "files", "read_file"));
        assert!(names_match("files__read_file", "", "read_file"));
        assert!(!names_match("unread_file", "files", "read_file"));
        assert!(!names_match(
            "mcp__files__read_file_2",
            "files",
            "read_file"
        ));
    }
}
