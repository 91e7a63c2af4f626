//! The store's guarantees on both backends, including two relay instances sharing one PostgreSQL.

use katachi_relay::store::{NewAgent, NonceOutcome, RateLimit, Store};

use super::support::fresh_postgres_database;

async fn sqlite_store(dir: &std::path::Path) -> Store {
    Store::connect(None, dir).await.unwrap()
}

async fn exercise(store: &Store) {
    let now = 1_764_000_000;
    let user = store
        .create_user("s@example.com", Some("$argon2id$x"), now)
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .create_user("s@example.com", None, now)
            .await
            .unwrap()
            .is_none(),
        "e-mail unique"
    );
    store
        .create_session("h1", &user.id, now, now + 10)
        .await
        .unwrap();
    assert_eq!(
        store.session_user("h1", now).await.unwrap().unwrap().id,
        user.id
    );
    assert!(
        store.session_user("h1", now + 11).await.unwrap().is_none(),
        "expired session"
    );

    let agent = NewAgent {
        id: "agt_1",
        user_id: &user.id,
        name: "n",
        os: "o",
        token_hash: "t",
        signing_secret_enc: "s",
    };
    store.create_agent(&agent, now).await.unwrap();
    assert_eq!(
        store.use_nonce("agt_1", "n1", now + 60).await.unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        store.use_nonce("agt_1", "n1", now + 60).await.unwrap(),
        NonceOutcome::Replayed,
        "replay detected"
    );
    assert_eq!(
        store.use_nonce("agt_none", "n2", now + 60).await.unwrap(),
        NonceOutcome::AgentGone
    );
    store
        .record_event("agt_1", "e1", "k", now, "{}", now)
        .await
        .unwrap();
    store
        .record_event("agt_1", "e1", "k", now, "{}", now)
        .await
        .unwrap();
    assert_eq!(store.event_count("agt_1").await.unwrap(), 1);

    for _ in 0..3 {
        assert_eq!(
            store.hit_rate_limit("b", 3, 60, now).await.unwrap(),
            RateLimit::Allowed
        );
    }
    assert!(matches!(
        store.hit_rate_limit("b", 3, 60, now).await.unwrap(),
        RateLimit::Limited { .. }
    ));
    assert_eq!(
        store.hit_rate_limit("b", 3, 60, now + 61).await.unwrap(),
        RateLimit::Allowed,
        "new window"
    );

    let linked = store
        .user_for_identity("github", "42", Some("s@example.com"), now)
        .await
        .unwrap();
    assert_ne!(
        linked.id, user.id,
        "a provider identity never takes over a password account by e-mail"
    );
    assert_eq!(
        store
            .user_for_identity("github", "42", None, now)
            .await
            .unwrap()
            .id,
        linked.id
    );

    store.purge_expired(now + 100).await.unwrap();
    assert_eq!(
        store.use_nonce("agt_1", "n1", now + 200).await.unwrap(),
        NonceOutcome::Fresh,
        "expired nonces are purged"
    );
    assert!(store.revoke_agent("agt_1", &user.id, now).await.unwrap());
    assert_eq!(
        store.use_nonce("agt_1", "n3", now + 60).await.unwrap(),
        NonceOutcome::AgentRevoked
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_guarantees_hold_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    exercise(&sqlite_store(tmp.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_guarantees_hold_on_postgres() {
    let url = fresh_postgres_database().await;
    let tmp = tempfile::tempdir().unwrap();
    exercise(&Store::connect(Some(&url), tmp.path()).await.unwrap()).await;
}

/// Many signed calls at once (the batch writer folds them into a few statements): each nonce sent
/// twice is recorded once and refused once, and every agent's last heartbeat is kept.
async fn exercise_concurrent_calls(store: &Store) {
    let now = 1_764_000_000;
    let user = store
        .create_user("many@example.com", None, now)
        .await
        .unwrap()
        .unwrap();
    let agents: Vec<String> = (0..10).map(|i| format!("agt_{i}")).collect();
    for id in &agents {
        let agent = NewAgent {
            id,
            user_id: &user.id,
            name: "n",
            os: "o",
            token_hash: id,
            signing_secret_enc: "s",
        };
        store.create_agent(&agent, now).await.unwrap();
    }
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..300 {
        for _ in 0..2 {
            let (store, agent) = (store.clone(), agents[i % agents.len()].clone());
            calls.spawn(async move {
                let outcome = store.use_nonce(&agent, &format!("n{i}"), now + 60).await;
                (i, outcome.unwrap())
            });
        }
        // one heartbeat per agent, among the nonces
        if let Some(agent) = agents.get(i).cloned() {
            let store = store.clone();
            calls.spawn(async move {
                let version = format!("v{i}");
                store
                    .touch_agent(&agent, now + 1, &version, 1)
                    .await
                    .unwrap();
                (usize::MAX, NonceOutcome::Fresh)
            });
        }
    }
    let mut fresh = vec![0; 300];
    let mut replayed = vec![0; 300];
    while let Some(done) = calls.join_next().await {
        match done.unwrap() {
            (usize::MAX, _) => {}
            (i, NonceOutcome::Fresh) => fresh[i] += 1,
            (i, NonceOutcome::Replayed) => replayed[i] += 1,
            (i, other) => panic!("nonce {i}: {other:?}"),
        }
    }
    assert!(
        fresh.iter().all(|n| *n == 1),
        "each nonce recorded once: {fresh:?}"
    );
    assert!(
        replayed.iter().all(|n| *n == 1),
        "and refused once: {replayed:?}"
    );
    let seen = store.agents_of(&user.id).await.unwrap();
    assert_eq!(
        seen.iter().filter(|a| a.last_seen_at == now + 1).count(),
        agents.len(),
        "every agent's heartbeat recorded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signed_calls_each_get_their_outcome_on_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    exercise_concurrent_calls(&sqlite_store(tmp.path()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_signed_calls_each_get_their_outcome_on_postgres() {
    let url = fresh_postgres_database().await;
    let tmp = tempfile::tempdir().unwrap();
    exercise_concurrent_calls(&Store::connect(Some(&url), tmp.path()).await.unwrap()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_relay_instances_on_one_postgres_share_nonces_and_rate_limits() {
    let url = fresh_postgres_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let a = Store::connect(Some(&url), tmp.path()).await.unwrap();
    let b = Store::connect(Some(&url), tmp.path()).await.unwrap();
    let user = a
        .create_user("two@example.com", None, 1)
        .await
        .unwrap()
        .unwrap();
    let agent = NewAgent {
        id: "agt",
        user_id: &user.id,
        name: "n",
        os: "o",
        token_hash: "t",
        signing_secret_enc: "s",
    };
    a.create_agent(&agent, 1).await.unwrap();
    assert_eq!(
        a.use_nonce("agt", "n", i64::MAX).await.unwrap(),
        NonceOutcome::Fresh
    );
    assert_eq!(
        b.use_nonce("agt", "n", i64::MAX).await.unwrap(),
        NonceOutcome::Replayed,
        "a replay through the other instance is caught"
    );
    // Revoked through one instance: refused through the other at once.
    assert!(a.revoke_agent("agt", &user.id, 2).await.unwrap());
    assert_eq!(
        b.use_nonce("agt", "n2", i64::MAX).await.unwrap(),
        NonceOutcome::AgentRevoked
    );
    a.hit_rate_limit("login:1.2.3.4", 1, 60, 100).await.unwrap();
    assert!(matches!(
        b.hit_rate_limit("login:1.2.3.4", 1, 60, 100).await.unwrap(),
        RateLimit::Limited { .. }
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_and_unreachable_databases_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Store::connect(Some("mysql://x"), tmp.path())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("sqlite://… or postgres://…"),
        "{err}"
    );
    let err = Store::connect(Some("postgres://u:hunter2@127.0.0.1:1/db"), tmp.path())
        .await
        .unwrap_err();
    assert!(
        !err.to_string().contains("hunter2"),
        "no password in errors: {err}"
    );
}
