//! Context references: what the agent retrieved and showed the model. A
//! tool result becomes a reference when its tool matches a rule (tool name,
//! optionally conditions on arguments) naming the kind and the argument that
//! holds the path, URL, query or command. The rules are data — built-in
//! defaults for common agents' tools, plus the operator's `[[context.tool]]`
//! entries, which are tried first.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::record::conversation::ContextTarget;
use crate::record::{ContextRef, Message, part::Kind};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextRule {
    /// Tool name; `*` matches any run of characters; case-insensitive.
    pub name: String,
    /// "file", "directory", "search", "url", "command_output", "mcp_resource", ...
    pub kind: String,
    /// The argument naming what was retrieved; `a.b` reaches into objects.
    pub argument: String,
    /// Only when these arguments have these values (e.g. `command = "view"`).
    #[serde(default)]
    pub when: BTreeMap<String, String>,
}

fn rule(name: &str, kind: &str, argument: &str) -> ContextRule {
    ContextRule {
        name: name.into(),
        kind: kind.into(),
        argument: argument.into(),
        when: BTreeMap::new(),
    }
}

/// Built-in rules for the common agents' tools (Claude Code, Codex CLI,
/// Anthropic's text editor tool, MCP filesystem/fetch servers) and the
/// usual generic names.
pub fn default_rules() -> Vec<ContextRule> {
    let mut view = rule("str_replace_based_edit_tool", "file", "path");
    view.when.insert("command".into(), "view".into());
    let mut view_old = view.clone();
    view_old.name = "str_replace_editor".into();
    vec![
        // Claude Code
        rule("Read", "file", "file_path"),
        rule("NotebookRead", "file", "notebook_path"),
        rule("LS", "directory", "path"),
        rule("Glob", "search", "pattern"),
        rule("Grep", "search", "pattern"),
        rule("WebFetch", "url", "url"),
        rule("WebSearch", "search", "query"),
        rule("Bash", "command_output", "command"),
        // Codex CLI
        rule("exec_command", "command_output", "cmd"),
        rule("shell", "command_output", "command"),
        rule("view_image", "file", "path"),
        // Anthropic's text editor tool, viewing
        view,
        view_old,
        // MCP servers as agents name them (mcp__server__tool)
        rule("*read_text_file", "file", "path"),
        rule("*read_file", "file", "path"),
        rule("*read_multiple_files", "file", "paths"),
        rule("*list_directory*", "directory", "path"),
        rule("*directory_tree", "directory", "path"),
        rule("*search_files", "search", "pattern"),
        rule("*fetch*", "url", "url"),
        // Generic names
        rule("read", "file", "path"),
        rule("view_file", "file", "path"),
        rule("open_file", "file", "path"),
        rule("cat", "file", "path"),
        rule("list_dir", "directory", "path"),
        rule("list_files", "directory", "path"),
        rule("ls", "directory", "path"),
        rule("*grep*", "search", "pattern"),
        rule("*search*", "search", "query"),
        rule("*web_fetch*", "url", "url"),
        rule("browse", "url", "url"),
        rule("run_shell", "command_output", "command"),
        rule("bash", "command_output", "command"),
        rule("run_command", "command_output", "command"),
        rule("execute_command", "command_output", "command"),
    ]
}

/// What a tool call retrieves, if a rule applies to it.
pub fn target(rules: &[ContextRule], tool_name: &str, arguments: &str) -> Option<ContextTarget> {
    let args: Value = serde_json::from_str(arguments).ok()?;
    rules.iter().find_map(|r| {
        if !glob_match(&r.name, tool_name) {
            return None;
        }
        let holds = r
            .when
            .iter()
            .all(|(k, v)| lookup(&args, k).and_then(Value::as_str) == Some(v.as_str()));
        if !holds {
            return None;
        }
        Some(ContextTarget {
            kind: r.kind.clone(),
            uri: as_text(lookup(&args, &r.argument)?)?,
        })
    })
}

/// Attachments (images, documents) in a message become references by digest.
pub fn attachments(message: &Message) -> impl Iterator<Item = ContextRef> + '_ {
    message.parts.iter().filter_map(|p| match &p.kind {
        Some(Kind::Blob(b)) => Some(ContextRef {
            kind: "attachment".into(),
            digest: b.digest.clone(),
            size: b.size,
            mime_type: b.mime_type.clone(),
            ..Default::default()
        }),
        Some(Kind::Uri(u)) => Some(ContextRef {
            kind: "attachment".into(),
            uri: u.uri.clone(),
            mime_type: u.mime_type.clone(),
            ..Default::default()
        }),
        _ => None,
    })
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, key| v.get(key))
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        // A command as argv, or several paths.
        Value::Array(items) if !items.is_empty() => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                .collect::<Vec<_>>()
                .join(" "),
        ),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Case-insensitive match where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let n = name.to_ascii_lowercase();
    let parts: Vec<&str> = p.split('*').collect();
    if parts.len() == 1 {
        return p == n;
    }
    let mut rest = n.as_str();
    let first = parts[0];
    if !rest.starts_with(first) {
        return false;
    }
    rest = &rest[first.len()..];
    let last = parts[parts.len() - 1];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(i) => rest = &rest[i + mid.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("Read", "read"));
        assert!(glob_match("*read_file", "mcp__filesystem__read_file"));
        assert!(!glob_match("*read_file", "read_file_lines"));
        assert!(glob_match(
            "*list_directory*",
            "mcp__fs__list_directory_with_sizes"
        ));
        assert!(glob_match("*", "anything"));
        assert!(!glob_match("ls", "lsof"));
    }

    #[test]
    fn rules_pick_kind_and_argument() {
        let rules = default_rules();
        let t = |name: &str, args: &str| target(&rules, name, args);
        let pair = |k: &str, u: &str| {
            Some(ContextTarget {
                kind: k.to_owned(),
                uri: u.to_owned(),
            })
        };
        assert_eq!(
            t("Read", r#"{"file_path":"/w/notes.txt"}"#),
            pair("file", "/w/notes.txt")
        );
        assert_eq!(
            t("exec_command", r#"{"cmd":"cat notes.txt"}"#),
            pair("command_output", "cat notes.txt")
        );
        assert_eq!(
            t("shell", r#"{"command":["bash","-lc","ls"]}"#),
            pair("command_output", "bash -lc ls")
        );
        assert_eq!(
            t("WebFetch", r#"{"url":"https://x.dev","prompt":"p"}"#),
            pair("url", "https://x.dev")
        );
        assert_eq!(
            t("mcp__fs__read_text_file", r#"{"path":"a.md"}"#),
            pair("file", "a.md")
        );
        let view = r#"{"command":"view","path":"src/lib.rs"}"#;
        assert_eq!(
            t("str_replace_based_edit_tool", view),
            pair("file", "src/lib.rs")
        );
        let edit = r#"{"command":"str_replace","path":"src/lib.rs"}"#;
        assert_eq!(t("str_replace_based_edit_tool", edit), None);
        assert_eq!(t("Write", r#"{"file_path":"x"}"#), None);
        assert_eq!(t("Read", "not json"), None);
        let nested = vec![ContextRule {
            name: "lookup".into(),
            kind: "url".into(),
            argument: "target.href".into(),
            when: BTreeMap::new(),
        }];
        assert_eq!(
            target(&nested, "lookup", r#"{"target":{"href":"https://a"}}"#),
            pair("url", "https://a")
        );
    }
}
