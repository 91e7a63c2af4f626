//! Approvals: the user's yes or no to each action of the model that changes something (a write,
//! a patch, a command), asked while the turn waits.
//!
//! # Guarantees
//! - An approval is decided once: by the user (`once`, `session`, `deny`), or by its expiry, which
//!   counts as refused ([`Decision::Expired`]). A late or repeated answer is refused with
//!   [`ApprovalError::NotPending`] and changes nothing.
//! - A turn that ends while waiting (stopped, client gone) withdraws its approval: it is no longer
//!   pending anywhere and nobody can approve it afterwards.
//! - Ids are 128-bit random, so an answer cannot be aimed at an approval it has not seen.
//! - Every front end (the turn's stream, the tray's notification, a reloaded page) sees the same
//!   pending list and the same decision ([`Approvals::subscribe`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, oneshot};

pub use crate::store::Decision;

/// How long an approval waits for the user by default.
pub const APPROVAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Decisions and questions kept for slow subscribers.
const EVENT_BACKLOG: usize = 64;

/// What the model wants to do, as the user is asked about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRequest {
    /// The workspace it acts in.
    pub workspace_id: i64,
    /// The chat session that asks.
    pub session_id: i64,
    /// The tool (`write_file`, `apply_patch`, `run_command`).
    pub tool: String,
    /// What a session grant would cover: the command for runs, `*` for writes and patches.
    pub subject: String,
    /// One line for notifications: "Run `cargo test` in my-project".
    pub summary: String,
    /// What exactly would happen: the diff of a write or patch, the command line of a run.
    pub preview: serde_json::Value,
}

/// An approval waiting for the user.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PendingApproval {
    /// Its id (128-bit random, hex).
    pub id: String,
    /// What is asked.
    #[serde(flatten)]
    pub request: ApprovalRequest,
    /// When it expires and counts as refused (Unix seconds).
    pub expires_at: i64,
}

/// A change of the pending list.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ApprovalEvent {
    /// The user is asked.
    Asked(PendingApproval),
    /// It was answered, expired, or withdrawn (`decision` is `None` when its turn ended first).
    Settled {
        /// Which approval.
        id: String,
        /// The answer; `None` when withdrawn.
        decision: Option<Decision>,
    },
}

/// Why an answer was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApprovalError {
    /// No approval with this id is waiting: it was answered, expired, withdrawn, or never existed.
    #[error("no approval {0:?} is waiting: it was already answered, expired or withdrawn")]
    NotPending(String),
    /// `expired` is what time decides, not an answer.
    #[error("`expired` is not an answer: use once, session or deny")]
    NotAnAnswer,
}

impl ApprovalError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            ApprovalError::NotPending(_) => "approval.not_pending",
            ApprovalError::NotAnAnswer => "request.invalid",
        }
    }
}

/// One waiting approval's slot.
struct Slot {
    /// What is shown.
    approval: PendingApproval,
    /// Where the answer goes.
    answer: oneshot::Sender<Decision>,
}

/// The pending approvals of one agent. Cheap to clone.
#[derive(Clone)]
pub struct Approvals {
    /// Waiting approvals by id.
    pending: Arc<Mutex<HashMap<String, Slot>>>,
    /// Every question and settlement.
    events: broadcast::Sender<ApprovalEvent>,
    /// How long each waits.
    timeout: Duration,
}

impl std::fmt::Debug for Approvals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approvals")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Default for Approvals {
    fn default() -> Self {
        Self::new(APPROVAL_TIMEOUT)
    }
}

impl Approvals {
    /// No approval pending; each will wait `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            pending: Arc::default(),
            events: broadcast::channel(EVENT_BACKLOG).0,
            timeout,
        }
    }

    /// Asks the user: the approval is pending (and announced) from now until the returned
    /// [`Ticket`] is waited on to its end or dropped.
    pub fn ask(&self, request: ApprovalRequest) -> Ticket {
        let id = hex::encode(rand::random::<[u8; 16]>());
        let expires_at = crate::store::now_unix()
            .saturating_add(i64::try_from(self.timeout.as_secs()).unwrap_or(i64::MAX));
        let approval = PendingApproval {
            id: id.clone(),
            request,
            expires_at,
        };
        let (answer, answered) = oneshot::channel();
        self.lock().insert(
            id.clone(),
            Slot {
                approval: approval.clone(),
                answer,
            },
        );
        let _ = self.events.send(ApprovalEvent::Asked(approval.clone()));
        Ticket {
            approvals: self.clone(),
            approval,
            answered: Some(answered),
        }
    }

    /// Answers approval `id`.
    ///
    /// # Errors
    /// [`ApprovalError::NotPending`] when it is not waiting (any more);
    /// [`ApprovalError::NotAnAnswer`] for [`Decision::Expired`].
    pub fn decide(&self, id: &str, decision: Decision) -> Result<PendingApproval, ApprovalError> {
        if decision == Decision::Expired {
            return Err(ApprovalError::NotAnAnswer);
        }
        let slot = self
            .lock()
            .remove(id)
            .ok_or_else(|| ApprovalError::NotPending(id.to_owned()))?;
        // the turn may have ended just now: then nobody acts on the answer
        let _ = slot.answer.send(decision);
        let _ = self.events.send(ApprovalEvent::Settled {
            id: id.to_owned(),
            decision: Some(decision),
        });
        Ok(slot.approval)
    }

    /// The approvals waiting now, oldest expiry first.
    pub fn pending(&self) -> Vec<PendingApproval> {
        let mut list: Vec<_> = self.lock().values().map(|s| s.approval.clone()).collect();
        list.sort_by(|a, b| a.expires_at.cmp(&b.expires_at).then(a.id.cmp(&b.id)));
        list
    }

    /// Every question and settlement from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ApprovalEvent> {
        self.events.subscribe()
    }

    /// Removes `id` if still pending, announcing how it ended.
    fn settle(&self, id: &str, decision: Option<Decision>) {
        if self.lock().remove(id).is_some() {
            let _ = self.events.send(ApprovalEvent::Settled {
                id: id.to_owned(),
                decision,
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        // the map stays consistent through a panic elsewhere: every change is one call
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A pending approval, held by the turn that waits for it. Dropping it withdraws the approval.
#[must_use = "an approval is withdrawn when its ticket is dropped"]
pub struct Ticket {
    /// Where it is pending.
    approvals: Approvals,
    /// What was asked.
    approval: PendingApproval,
    /// The answer, once.
    answered: Option<oneshot::Receiver<Decision>>,
}

impl Ticket {
    /// The approval as shown to the user.
    pub fn approval(&self) -> &PendingApproval {
        &self.approval
    }

    /// Waits for the answer; [`Decision::Expired`] when none came in time.
    pub async fn decision(mut self) -> Decision {
        let Some(answered) = self.answered.take() else {
            return Decision::Expired;
        };
        match tokio::time::timeout(self.approvals.timeout, answered).await {
            Ok(Ok(decision)) => decision,
            // the sender went away without an answer: only when the slot was removed unanswered
            Ok(Err(_)) => Decision::Expired,
            Err(_) => {
                self.approvals
                    .settle(&self.approval.id, Some(Decision::Expired));
                Decision::Expired
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // withdrawn: the turn ended before an answer (a no-op after an answer or expiry)
        self.approvals.settle(&self.approval.id, None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            workspace_id: 1,
            session_id: 2,
            tool: "run_command".into(),
            subject: "cargo".into(),
            summary: "Run `cargo test`".into(),
            preview: serde_json::json!({"command": "cargo", "args": ["test"]}),
        }
    }

    #[tokio::test]
    async fn an_answer_reaches_the_waiting_turn_once_and_a_second_answer_is_refused() {
        let approvals = Approvals::default();
        let mut events = approvals.subscribe();
        let ticket = approvals.ask(request());
        let id = ticket.approval().id.clone();
        assert_eq!(id.len(), 32);
        assert!(matches!(events.recv().await.unwrap(), ApprovalEvent::Asked(a) if a.id == id));
        assert_eq!(approvals.pending().len(), 1);
        approvals.decide(&id, Decision::Session).unwrap();
        assert_eq!(ticket.decision().await, Decision::Session);
        assert_eq!(
            approvals.decide(&id, Decision::Deny),
            Err(ApprovalError::NotPending(id.clone()))
        );
        assert!(approvals.pending().is_empty());
        assert_eq!(
            events.recv().await.unwrap(),
            ApprovalEvent::Settled {
                id,
                decision: Some(Decision::Session)
            }
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_approval_expires_as_refused_and_cannot_be_answered_late() {
        let approvals = Approvals::new(Duration::from_secs(60));
        let ticket = approvals.ask(request());
        let id = ticket.approval().id.clone();
        assert_eq!(ticket.decision().await, Decision::Expired);
        assert!(approvals.pending().is_empty());
        assert!(matches!(
            approvals.decide(&id, Decision::Once),
            Err(ApprovalError::NotPending(_))
        ));
    }

    #[tokio::test]
    async fn a_turn_that_ends_while_waiting_withdraws_its_approval() {
        let approvals = Approvals::default();
        let mut events = approvals.subscribe();
        let ticket = approvals.ask(request());
        let id = ticket.approval().id.clone();
        drop(ticket);
        assert!(approvals.pending().is_empty());
        assert!(approvals.decide(&id, Decision::Once).is_err());
        let _asked = events.recv().await.unwrap();
        assert_eq!(
            events.recv().await.unwrap(),
            ApprovalEvent::Settled { id, decision: None }
        );
    }

    #[test]
    fn expired_is_not_an_answer() {
        let approvals = Approvals::default();
        let ticket = approvals.ask(request());
        assert_eq!(
            approvals.decide(&ticket.approval().id, Decision::Expired),
            Err(ApprovalError::NotAnAnswer)
        );
        assert_eq!(approvals.pending().len(), 1);
    }
}
