//! Figures of the secrets-at-rest layer (issue "Foundation"):
//! - store open with a raw key (target ≤ 5 ms);
//! - 100k message inserts in SQLCipher vs the same in plain SQLite, same run (target ≤ 1.5×);
//! - seal / unseal of a 4 KiB file (target ≤ 50 µs).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion};
use katachi_core::store::{Role, Store};
use katachi_core::vault::{seal, unseal, DerivedKey, Purpose};
use rusqlite::Connection;

const MESSAGES: usize = 100_000;

fn store_open(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bench.db");
    let key = DerivedKey::from_bytes([7; 32], Purpose::STORE);
    drop(Store::open(&path, &key).unwrap());
    c.bench_function("store_open_raw_key", |b| {
        b.iter(|| black_box(Store::open(&path, &key).unwrap()))
    });
}

/// Inserts `MESSAGES` chat messages the way the product does (prepared statement, one transaction).
fn insert_messages(conn: &Connection) {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;
         CREATE TABLE IF NOT EXISTS messages (id INTEGER PRIMARY KEY, session_id INTEGER NOT NULL,
           role TEXT NOT NULL, content TEXT NOT NULL, created_at INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);",
    )
    .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut stmt = tx
            .prepare("INSERT INTO messages (session_id, role, content, created_at) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for i in 0..MESSAGES {
            stmt.execute(rusqlite::params![
                (i / 100) as i64,
                "user",
                format!("message {i}: how do I refactor this function so it reads better?"),
                1_700_000_000i64 + i as i64
            ])
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn timed_insert(encrypted: bool) -> Duration {
    let tmp = tempfile::tempdir().unwrap();
    let conn = Connection::open(tmp.path().join("m.db")).unwrap();
    if encrypted {
        conn.execute_batch(&format!("PRAGMA key = \"x'{}'\";", "07".repeat(32)))
            .unwrap();
    }
    let start = Instant::now();
    insert_messages(&conn);
    start.elapsed()
}

fn insert_100k(c: &mut Criterion) {
    let mut group = c.benchmark_group("insert_100k_messages");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("plain_sqlite", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_insert(false)).sum())
    });
    group.bench_function("sqlcipher", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| timed_insert(true)).sum())
    });
    group.finish();
    // Same run, interleaved: the ratio the issue asks for.
    let rounds = 5;
    let (mut plain, mut cipher) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..rounds {
        plain += timed_insert(false);
        cipher += timed_insert(true);
    }
    println!(
        "insert_100k_messages ratio: sqlcipher / plain = {:.2} (plain {:?}, sqlcipher {:?} per run, {rounds} interleaved rounds)",
        cipher.as_secs_f64() / plain.as_secs_f64(),
        plain / rounds,
        cipher / rounds
    );
}

fn product_path_insert(c: &mut Criterion) {
    // Through the product API (Chat::append_many) to check it adds nothing over raw SQL.
    let mut group = c.benchmark_group("store_append_many");
    group.sample_size(10);
    group.bench_function("10k_messages", |b| {
        b.iter_batched(
            || {
                let tmp = tempfile::tempdir().unwrap();
                let store = Store::open(
                    &tmp.path().join("p.db"),
                    &DerivedKey::from_bytes([7; 32], Purpose::STORE),
                )
                .unwrap();
                let session = store.chat().create_session(None, "bench").unwrap().id;
                (tmp, store, session)
            },
            |(_tmp, store, session)| {
                let texts: Vec<String> = (0..10_000).map(|i| format!("message {i}")).collect();
                store
                    .chat()
                    .append_many(session, texts.iter().map(|t| (Role::User, t.as_str())))
                    .unwrap();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

fn seal_4k(c: &mut Criterion) {
    let key = DerivedKey::from_bytes([9; 32], Purpose::AGENT_CREDENTIALS);
    let data = vec![0x5au8; 4096];
    let sealed = seal(&key, &data).unwrap();
    c.bench_function("seal_4KiB", |b| {
        b.iter(|| black_box(seal(&key, black_box(&data)).unwrap()))
    });
    c.bench_function("unseal_4KiB", |b| {
        b.iter(|| black_box(unseal(&key, black_box(&sealed), "bench").unwrap()))
    });
}

criterion_group!(
    benches,
    store_open,
    seal_4k,
    insert_100k,
    product_path_insert
);
criterion_main!(benches);
