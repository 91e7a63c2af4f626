//! The relay's sealed values are bound to their row (table, row id, user id): a value copied into
//! another row does not open, and values of the first, unbound format are bound once at start-up.

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::Aes256Gcm;
use base64::Engine;
use katachi_relay::crypto::{MasterKey, SealedRow};
use katachi_relay::store::{McpServer, NewAgent, Store};

use super::support::fresh_postgres_database;

const KEY: [u8; 32] = [7; 32];
const NOW: i64 = 1_764_000_000;

/// A value exactly as the first format sealed it: `base64(nonce ‖ ct ‖ tag)`, purpose-only AAD.
fn sealed_the_old_way(purpose: &str, plain: &[u8]) -> String {
    let cipher = Aes256Gcm::new_from_slice(&KEY).unwrap();
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: purpose.as_bytes(),
            },
        )
        .unwrap();
    let mut out = nonce.to_vec();
    out.extend_from_slice(&ct);
    base64::engine::general_purpose::STANDARD.encode(out)
}

async fn agent_secret(store: &Store, token_hash: &str) -> String {
    store
        .agent_by_token_hash(token_hash)
        .await
        .unwrap()
        .unwrap()
        .signing_secret_enc
}

/// Plays someone who can write the database but holds no key: copies a sealed value between rows.
async fn set_agent_secret(db_url: &str, agent_id: &str, value: &str) {
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    sqlx::query("UPDATE agents SET signing_secret_enc = $1 WHERE id = $2")
        .bind(value)
        .bind(agent_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

async fn exercise(store: &Store, db_url: &str) {
    let master = MasterKey::from_bytes(&KEY);
    let alice = store
        .create_user("a@example.com", None, NOW)
        .await
        .unwrap()
        .unwrap();
    let mallory = store
        .create_user("m@example.com", None, NOW)
        .await
        .unwrap()
        .unwrap();
    let old_secret = sealed_the_old_way("agent-signing-secret", b"alice-hmac-secret");
    for (id, user, token, sealed) in [
        ("agt_alice", &alice.id, "tok_a", old_secret.as_str()),
        ("agt_mallory", &mallory.id, "tok_m", "unused"),
    ] {
        let agent = NewAgent {
            id,
            user_id: user,
            name: "laptop",
            os: "linux",
            token_hash: token,
            signing_secret_enc: sealed,
        };
        store.create_agent(&agent, NOW).await.unwrap();
    }
    let old_env = sealed_the_old_way("mcp-env", br#"{"TOKEN":"s3cret"}"#);
    let server = McpServer {
        id: "mcp_1".into(),
        name: "github".into(),
        command: String::new(),
        url: "https://mcp.example.com".into(),
        env_enc: old_env.clone(),
    };
    assert!(store.add_mcp_server(&alice.id, &server, NOW).await.unwrap());
    let alice_row = SealedRow::agent_signing_secret("agt_alice", &alice.id);
    // Before binding, the unbound value is not accepted as a bound one.
    assert!(master.open(&alice_row, &old_secret).is_err());

    let report = store.reseal_unbound_values(&master).await.unwrap();
    assert_eq!(
        (report.resealed, report.unopenable, report.already_done),
        (2, 1, false),
        "{report:?}"
    );
    // Bound values open in their own row, with the same plaintext.
    let bound = agent_secret(store, "tok_a").await;
    assert!(bound.starts_with("v2."), "{bound}");
    assert_eq!(
        master.open(&alice_row, &bound).unwrap().as_slice(),
        b"alice-hmac-secret"
    );
    let env = store
        .mcp_servers_of(&alice.id)
        .await
        .unwrap()
        .remove(0)
        .env_enc;
    let env_row = SealedRow::mcp_env("mcp_1", &alice.id);
    assert_eq!(
        master.open(&env_row, &env).unwrap().as_slice(),
        br#"{"TOKEN":"s3cret"}"#
    );
    // The unopenable value (not this key's) is left exactly as it was.
    assert_eq!(agent_secret(store, "tok_m").await, "unused");

    // Alice's bound secret copied into Mallory's agent row does not open there.
    set_agent_secret(db_url, "agt_mallory", &bound).await;
    let copied = agent_secret(store, "tok_m").await;
    let mallory_row = SealedRow::agent_signing_secret("agt_mallory", &mallory.id);
    assert!(master.open(&mallory_row, &copied).is_err());
    // Nor does an MCP environment moved into an agent's secret column.
    assert!(master.open(&alice_row, &env).is_err());

    // Once done, an unbound value put back (an old backup) is never bound again: it stays unopenable.
    set_agent_secret(db_url, "agt_mallory", &old_secret).await;
    let again = store.reseal_unbound_values(&master).await.unwrap();
    assert!(again.already_done, "{again:?}");
    assert_eq!(agent_secret(store, "tok_m").await, old_secret);
    assert!(master.open(&mallory_row, &old_secret).is_err());
}

#[tokio::test]
async fn sealed_values_are_bound_to_their_row_on_sqlite_and_a_copy_into_another_row_does_not_open()
{
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::connect(None, tmp.path()).await.unwrap();
    let url = format!("sqlite://{}", tmp.path().join("relay.db").display());
    exercise(&store, &url).await;
}

#[tokio::test]
async fn sealed_values_are_bound_to_their_row_on_postgres_and_a_copy_into_another_row_does_not_open(
) {
    let url = fresh_postgres_database().await;
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::connect(Some(&url), tmp.path()).await.unwrap();
    exercise(&store, &url).await;
}
