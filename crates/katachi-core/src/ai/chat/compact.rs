//! Compaction: when a conversation nears the model's context window, the older part is replaced
//! (for the model, not in the store) by a summary the model writes; the latest turns stay verbatim.
//!
//! The summary is stored as a system message whose payload names the last message it stands for
//! (`summary_through`); `history` then sends the summary and what follows. The messages themselves
//! stay in the store: the chat view and the export show everything.

use futures::StreamExt;

use super::history::Payload;
use super::prompt::cut_at;
use super::seams::{TurnModel, TurnTools};
use super::turn::Turn;
use super::Failure;
use crate::ai::model::{ModelEvent, ModelMessage, ModelRequest};
use crate::store::{ChatMessage, NewMessage, Role};

/// Share of the context window (in estimated tokens) at which the conversation is summarised.
const COMPACT_AT_PERCENT: u64 = 75;

/// Messages at the end of the conversation that are never summarised.
const KEEP_RECENT_MESSAGES: usize = 8;

/// Most bytes of one tool result in the transcript the model summarises.
const TRANSCRIPT_RESULT_BYTES: usize = 1024;

/// Most tokens of a summary.
const SUMMARY_MAX_TOKENS: u32 = 2048;

/// What the model is told when it summarises.
const SUMMARY_INSTRUCTIONS: &str = "You summarise a conversation between a user and a coding assistant \
working in the user's workspace, so that the assistant can go on without the full text. Keep: the user's goals \
and decisions, files read or changed (with paths), commands run and their outcome, approvals refused, open \
questions and what was about to happen next. Be concise and factual; write it as notes.";

/// Estimated tokens of what the model would be sent (about 4 bytes a token).
pub(super) fn estimate_tokens(system: &str, stored: &[ChatMessage]) -> u64 {
    let through = latest_summary(stored).map_or(i64::MIN, through);
    let bytes: usize = stored
        .iter()
        .filter(|m| m.id > through || is_summary(m))
        .map(|m| m.content.len() + m.payload.as_ref().map_or(0, String::len))
        .sum::<usize>()
        + system.len();
    u64::try_from(bytes).unwrap_or(u64::MAX) / 4
}

/// Whether the conversation should be summarised before the next model call.
pub(super) fn is_needed(system: &str, stored: &[ChatMessage], context_tokens: u32) -> bool {
    estimate_tokens(system, stored) * 100 > u64::from(context_tokens) * COMPACT_AT_PERCENT
}

/// The last message id a summary stands for.
pub(super) fn through(summary: &ChatMessage) -> i64 {
    Payload::of(summary).summary_through.unwrap_or_default()
}

fn is_summary(m: &ChatMessage) -> bool {
    m.role == Role::System && Payload::of(m).summary_through.is_some()
}

fn latest_summary(stored: &[ChatMessage]) -> Option<&ChatMessage> {
    stored.iter().filter(|m| is_summary(m)).max_by_key(|m| m.id)
}

/// The messages to summarise now: from after the latest summary up to (not including) a user
/// message that leaves at least [`KEEP_RECENT_MESSAGES`] after it — or, in one long turn, an
/// assistant message (its predecessors' tool results are complete there). `None`: nothing to do.
pub(super) fn to_summarise(stored: &[ChatMessage]) -> Option<Vec<&ChatMessage>> {
    let after = latest_summary(stored).map_or(i64::MIN, through);
    let active: Vec<&ChatMessage> = stored
        .iter()
        .filter(|m| m.id > after && m.role != Role::System)
        .collect();
    let keeps_enough = |i: usize| active.len() - i >= KEEP_RECENT_MESSAGES;
    let boundary = (1..active.len())
        .rev()
        .find(|&i| active[i].role == Role::User && keeps_enough(i))
        .or_else(|| {
            (1..active.len())
                .rev()
                .find(|&i| active[i].role == Role::Assistant && active.len() - i >= 2)
        })?;
    Some(active[..boundary].to_vec())
}

/// The text the model summarises: the previous summary, then each message (results cut).
pub(super) fn transcript(previous: Option<&ChatMessage>, messages: &[&ChatMessage]) -> String {
    let mut text = String::new();
    if let Some(summary) = previous {
        text.push_str("Earlier summary:\n");
        text.push_str(&summary.content);
        text.push_str("\n\n");
    }
    for m in messages {
        let payload = Payload::of(m);
        match m.role {
            Role::User => text.push_str(&format!("User: {}\n\n", m.content)),
            Role::Assistant => {
                text.push_str(&format!("Assistant: {}\n", m.content));
                for call in &payload.tool_calls {
                    text.push_str(&format!("  called {} {}\n", call.name, call.arguments));
                }
                text.push('\n');
            }
            Role::Tool => {
                let (result, cut) = cut_at(&m.content, TRANSCRIPT_RESULT_BYTES);
                let outcome = if payload.is_error {
                    "failed"
                } else {
                    "returned"
                };
                text.push_str(&format!(
                    "Tool {} {outcome}: {result}{}\n\n",
                    payload.name.as_deref().unwrap_or("?"),
                    if cut { " […]" } else { "" }
                ));
            }
            Role::System => {}
        }
    }
    text
}

/// Summarises the older part of the conversation and stores the summary; `None` when there is
/// nothing to summarise or the turn was stopped meanwhile.
pub(super) async fn summarise<M: TurnModel + ?Sized, T: TurnTools + ?Sized>(
    turn: &Turn<'_, M, T>,
    stored: &[ChatMessage],
) -> Result<Option<ChatMessage>, Failure> {
    let Some(older) = to_summarise(stored) else {
        return Ok(None);
    };
    let Some(last) = older.last().map(|m| m.id) else {
        return Ok(None);
    };
    let description = turn.model.describe();
    // what is summarised must itself fit: keep its end, which matters most
    let budget = usize::try_from(description.context_tokens)
        .unwrap_or(usize::MAX)
        .saturating_mul(2);
    let full = transcript(latest_summary(stored), &older);
    let start = full.len().saturating_sub(budget);
    let start = (start..full.len())
        .find(|&i| full.is_char_boundary(i))
        .unwrap_or(full.len());
    let request = ModelRequest {
        model: description.model,
        system: SUMMARY_INSTRUCTIONS.to_owned(),
        messages: vec![ModelMessage::User {
            text: full[start..].to_owned(),
        }],
        tools: Vec::new(),
        max_tokens: SUMMARY_MAX_TOKENS.min(description.max_tokens.max(256)),
    };
    let Some(mut reply) = turn.start_model_call(request, "ai.summarise").await? else {
        return Ok(None);
    };
    let mut summary = String::new();
    loop {
        let event = tokio::select! {
            biased;
            () = turn.cancel.cancelled() => return Ok(None),
            event = reply.next() => event,
        };
        match event {
            Some(Ok(ModelEvent::TextDelta { text })) => summary.push_str(&text),
            Some(Ok(ModelEvent::Finished { .. })) => break,
            Some(Ok(_)) => {}
            Some(Err(failure)) => return Err(failure),
            None => {
                return Err(Failure::new(
                    "ai.stream_broken",
                    "the provider ended the summary without finishing it; try again",
                ))
            }
        }
    }
    if summary.trim().is_empty() {
        return Ok(None);
    }
    let payload = Payload {
        summary_through: Some(last),
        ..Payload::default()
    }
    .to_stored();
    let session_id = turn.session.id;
    let content = summary.clone();
    let id = turn
        .store
        .run(move |s| {
            s.chat().append_messages(
                session_id,
                [NewMessage {
                    role: Role::System,
                    content: &content,
                    payload: payload.as_deref(),
                }],
            )
        })
        .await?
        .first()
        .copied()
        .unwrap_or_default();
    Ok(Some(ChatMessage {
        id,
        role: Role::System,
        content: summary,
        payload: Payload {
            summary_through: Some(last),
            ..Payload::default()
        }
        .to_stored(),
        created_at: crate::store::now_unix(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(id: i64, role: Role, content: &str) -> ChatMessage {
        ChatMessage {
            id,
            role,
            content: content.to_owned(),
            payload: None,
            created_at: 0,
        }
    }

    #[test]
    fn the_split_is_at_a_user_message_that_keeps_the_latest_turns_verbatim() {
        let mut stored = Vec::new();
        for i in 0..10 {
            stored.push(m(i * 2 + 1, Role::User, &"q".repeat(400)));
            stored.push(m(i * 2 + 2, Role::Assistant, &"a".repeat(400)));
        }
        let older = to_summarise(&stored).unwrap();
        // 20 messages, at least 8 kept: the split is at user message 13 (8 from there on)
        assert_eq!(older.last().unwrap().id, 12);
        // after a summary through 12, only what follows counts
        let mut with_summary = stored.clone();
        with_summary.push(ChatMessage {
            payload: Payload {
                summary_through: Some(12),
                ..Payload::default()
            }
            .to_stored(),
            ..m(21, Role::System, "summary")
        });
        let again = to_summarise(&with_summary).unwrap();
        assert_eq!(again.first().unwrap().id, 13);
        // what is sent shrinks to the summary and the 8 kept messages
        assert!(estimate_tokens("", &with_summary) < estimate_tokens("", &stored) / 2);
    }

    #[test]
    fn a_short_conversation_is_not_split_and_the_need_follows_the_window() {
        let stored = vec![m(1, Role::User, "q")];
        assert!(to_summarise(&stored).is_none());
        let big = vec![m(1, Role::User, &"x".repeat(4000))];
        assert!(is_needed("", &big, 1000));
        assert!(!is_needed("", &big, 100_000));
    }
}
