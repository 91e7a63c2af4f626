//! A session as Markdown, for the user to keep or share: what was said, which tools ran with which
//! arguments, what was approved, and each result (long ones cut).

use std::fmt::Write;

use super::history::Payload;
use super::prompt::cut_at;
use crate::store::{ChatMessage, ChatSession, Role};

/// Most bytes of one tool result in an export.
const RESULT_MAX_BYTES: usize = 4 * 1024;

/// The session and its messages (oldest first) as a Markdown document.
pub fn to_markdown(
    session: &ChatSession,
    workspace: Option<&str>,
    messages: &[ChatMessage],
) -> String {
    let mut md = format!("# {}\n\n", one_line(&session.title));
    let _ = write!(md, "_katachi chat session {}", session.id);
    if let Some(ws) = workspace {
        let _ = write!(md, " in `{}`", one_line(ws));
    }
    let _ = writeln!(md, ", {} messages._\n", messages.len());
    for message in messages {
        let payload = Payload::of(message);
        match message.role {
            Role::User => {
                let _ = writeln!(md, "## You\n\n{}\n", message.content);
            }
            Role::Assistant => {
                let _ = writeln!(md, "## Assistant\n");
                if !message.content.is_empty() {
                    let _ = writeln!(md, "{}\n", message.content);
                }
                if let Some(why) = &payload.interrupted {
                    let _ = writeln!(md, "_(cut short: {why})_\n");
                }
                for call in &payload.tool_calls {
                    let _ = writeln!(
                        md,
                        "**Tool call** `{}` (`{}`)\n\n{}",
                        one_line(&call.name),
                        one_line(&call.id),
                        fenced("json", &call.arguments.to_string())
                    );
                }
            }
            Role::Tool => {
                let name = payload.name.as_deref().unwrap_or("tool");
                let outcome = if payload.is_error { "failed" } else { "result" };
                let _ = write!(md, "**{} {outcome}**", one_line(name));
                if let Some(decision) = payload.approval {
                    let _ = write!(md, " (approval: {})", decision.as_str());
                }
                let (text, cut) = cut_at(&message.content, RESULT_MAX_BYTES);
                let _ = writeln!(md, "\n\n{}", fenced("json", text));
                if cut {
                    let _ = writeln!(md, "_(result cut at {RESULT_MAX_BYTES} bytes)_\n");
                }
            }
            Role::System => {
                let label = if payload.summary_through.is_some() {
                    "Summary of the earlier conversation"
                } else {
                    "Note"
                };
                let _ = writeln!(
                    md,
                    "> **{label}:** {}\n",
                    message.content.replace('\n', "\n> ")
                );
            }
        }
    }
    md
}

/// A fenced code block that the text cannot close early.
fn fenced(lang: &str, text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    format!("{fence}{lang}\n{text}\n{fence}\n")
}

/// A title or name on one line.
fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ai::model::ToolCall;

    #[test]
    fn an_export_shows_turns_tool_calls_approvals_and_fences_that_results_cannot_break() {
        let session = ChatSession {
            id: 3,
            workspace_id: Some(1),
            title: "Fix\nthe build".to_owned(),
            created_at: 0,
        };
        let call = Payload {
            tool_calls: vec![ToolCall {
                id: "c1".into(),
                name: "run_command".into(),
                arguments: serde_json::json!({"command": "make"}),
            }],
            ..Payload::default()
        };
        let result = Payload {
            call_id: Some("c1".into()),
            name: Some("run_command".into()),
            approval: Some(crate::store::Decision::Once),
            ..Payload::default()
        };
        let messages = vec![
            ChatMessage {
                id: 1,
                role: Role::User,
                content: "build it".into(),
                payload: None,
                created_at: 0,
            },
            ChatMessage {
                id: 2,
                role: Role::Assistant,
                content: "Running make.".into(),
                payload: call.to_stored(),
                created_at: 0,
            },
            ChatMessage {
                id: 3,
                role: Role::Tool,
                content: "```\nok".into(),
                payload: result.to_stored(),
                created_at: 0,
            },
        ];
        let md = to_markdown(&session, Some("/home/me/shop"), &messages);
        assert!(md.starts_with("# Fix the build\n"));
        assert!(md.contains("in `/home/me/shop`, 3 messages"));
        assert!(md.contains("## You\n\nbuild it"));
        assert!(md.contains("**Tool call** `run_command`"));
        assert!(md.contains("**run_command result** (approval: once)"));
        assert!(md.contains("````json\n```\nok\n````"));
    }
}
