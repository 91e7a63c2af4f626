//! The batch writer's statements give every op the outcome it would get alone (SQLite here; the
//! same through the store's API on PostgreSQL in `tests/suite/store_backends.rs`).

use super::*;
use crate::store::{NewAgent, Store};

const NOW: i64 = 1_764_000_000;

/// A store with agents `agt_a` and `agt_b` (of one user), `agt_r` revoked.
async fn store_with_agents(dir: &std::path::Path) -> Store {
    let store = Store::connect(None, dir).await.unwrap();
    let user = store
        .create_user("b@example.com", None, NOW)
        .await
        .unwrap()
        .unwrap();
    for id in ["agt_a", "agt_b", "agt_r"] {
        let agent = NewAgent {
            id,
            user_id: &user.id,
            name: "n",
            os: "o",
            token_hash: id,
            signing_secret_enc: "s",
        };
        store.create_agent(&agent, NOW).await.unwrap();
    }
    assert!(store.revoke_agent("agt_r", &user.id, NOW).await.unwrap());
    store
}

fn nonce(agent_id: &str, nonce: &str) -> Op {
    Op::Nonce {
        agent_id: agent_id.to_owned(),
        nonce: nonce.to_owned(),
        expires_at: NOW + 60,
        reply: tokio::sync::oneshot::channel().0,
    }
}

fn touch(agent_id: &str, now: i64, version: &str, workspaces: i64) -> Op {
    Op::Touch {
        agent_id: agent_id.to_owned(),
        now,
        version: version.to_owned(),
        workspaces,
        reply: tokio::sync::oneshot::channel().0,
    }
}

#[tokio::test]
async fn each_op_of_one_batch_gets_the_outcome_it_would_get_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_agents(dir.path()).await;
    let earlier = write(store.pool(), &[nonce("agt_a", "used")])
        .await
        .unwrap();
    assert_eq!(earlier, [NonceOutcome::Fresh]);

    let batch = [
        nonce("agt_a", "n1"),
        touch("agt_a", NOW + 1, "1.0", 1),
        nonce("agt_a", "n1"),
        nonce("agt_b", "n1"),
        nonce("agt_a", "used"),
        nonce("agt_r", "n2"),
        nonce("agt_gone", "n3"),
        nonce("agt_gone", "n3"),
        touch("agt_b", NOW + 2, "2.0", 2),
        touch("agt_a", NOW + 3, "3.0", 3),
    ];
    let outcomes = write(store.pool(), &batch).await.unwrap();
    use NonceOutcome::*;
    assert_eq!(
        outcomes,
        [
            Fresh,
            Fresh,    // a touch
            Replayed, // the same nonce earlier in the batch
            Fresh,    // the same nonce of another agent
            Replayed, // recorded by an earlier batch
            AgentRevoked,
            AgentGone,
            AgentGone, // a repeat of an unknown agent's nonce is no replay
            Fresh,
            Fresh,
        ]
    );

    let user = store
        .agent_by_token_hash("agt_a")
        .await
        .unwrap()
        .unwrap()
        .user_id;
    let seen: Vec<(String, i64, String, i64)> = store
        .agents_of(&user)
        .await
        .unwrap()
        .into_iter()
        .map(|a| (a.id, a.last_seen_at, a.version, a.workspaces))
        .filter(|(id, ..)| id != "agt_r")
        .collect();
    let mut seen = seen;
    seen.sort();
    assert_eq!(
        seen,
        [
            ("agt_a".to_owned(), NOW + 3, "3.0".to_owned(), 3), // the last touch of the batch
            ("agt_b".to_owned(), NOW + 2, "2.0".to_owned(), 2),
        ]
    );
}

#[tokio::test]
async fn a_batch_larger_than_one_statement_is_recorded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_agents(dir.path()).await;
    // more rows than one statement takes, and not a power of two (the last statement is padded)
    let count = ROWS_PER_STATEMENT * 2 + 5;
    let batch: Vec<Op> = (0..count)
        .map(|i| nonce(if i % 2 == 0 { "agt_a" } else { "agt_b" }, &format!("n{i}")))
        .collect();
    let fresh = write(store.pool(), &batch).await.unwrap();
    assert!(fresh.iter().all(|o| *o == NonceOutcome::Fresh), "{fresh:?}");
    let again = write(store.pool(), &batch).await.unwrap();
    assert!(
        again.iter().all(|o| *o == NonceOutcome::Replayed),
        "{again:?}"
    );
}

#[test]
fn statements_come_in_a_few_sizes_with_numbered_placeholders() {
    assert_eq!(value_rows(2, 3), "($1, $2, $3), ($4, $5, $6)");
    assert_eq!(
        (1..=ROWS_PER_STATEMENT)
            .map(padded)
            .collect::<HashSet<_>>()
            .len(),
        7
    );
    let rows: Vec<&i32> = padded_rows(&[1, 2, 3]).collect();
    assert_eq!(rows, [&1, &2, &3, &3]);
}
