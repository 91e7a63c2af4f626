//! The audit layer as a specification: bytes out counted exactly for whole, ranged and cut-short
//! downloads, errors and callers recorded, calls refused while the log cannot be written, calls
//! waiting (never dropped) when the writer's queue is full, and the chain intact after many calls.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use http_body_util::BodyExt;
use katachi_proto::agent::{
    FORWARDED_SESSION_HEADER, FORWARDED_USER_HEADER, FORWARDED_USER_ID_HEADER,
};
use tower::ServiceExt;

use super::*;
use crate::api::{router, ApiState, FixedWorkspaces};
use crate::store::AuditRecord;
use crate::vault::{DerivedKey, MachineKey, Purpose};
use crate::{Fingerprint, SecretBytes};

/// A workspace folder, a store, and an API router with the audit layer on it.
struct Fixture {
    _tmp: tempfile::TempDir,
    workspace: PathBuf,
    db: PathBuf,
    layer: AuditLayer,
    app: Router,
}

fn store_key() -> DerivedKey {
    DerivedKey::from_bytes([7; 32], Purpose::STORE)
}

fn audit_key() -> AuditKey {
    let fp = Fingerprint::from_components([("machine_id", vec![7])]).unwrap();
    AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![7; 32]), &fp))
}

fn open_store(db: &Path) -> Store {
    Store::open(db, &store_key()).unwrap()
}

/// Runs `statements` on the SQLCipher file directly, as someone holding only the store key could.
fn tamper(db: &Path, statements: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let hex: String = store_key()
        .expose()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    conn.execute_batch(&format!("PRAGMA key = \"x'{hex}'\";"))
        .unwrap();
    conn.execute_batch(statements).unwrap();
}

impl Fixture {
    fn new() -> Self {
        Self::with(AuditOptions::default(), |_| {})
    }

    /// A fixture whose store is prepared by `before` (e.g. tampered) before the layer starts.
    fn with(options: AuditOptions, before: impl FnOnce(&Path)) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let workspace = tmp.path().join("ws");
        std::fs::create_dir(&workspace).unwrap();
        let db = tmp.path().join("store.db");
        drop(open_store(&db));
        before(&db);
        let source = Arc::new(FixedWorkspaces::new([&workspace]).unwrap());
        let open_db = db.clone();
        let layer = AuditLayer::start_with(
            move || Store::open(&open_db, &store_key()),
            audit_key(),
            Some(source.clone()),
            AuditOptions {
                retry_every: Duration::from_millis(20),
                ..options
            },
        );
        let app = router(ApiState::new(source)).layer(layer.clone());
        Self {
            _tmp: tmp,
            workspace,
            db,
            layer,
            app,
        }
    }

    fn write(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.workspace.join(name), bytes).unwrap();
    }

    /// Sends `req` as the relay would (caller headers set) and reads the whole response body.
    async fn call(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    }

    /// The newest records, newest first, once `n` have been written.
    async fn records(&self, n: u64) -> Vec<AuditRecord> {
        let written = tokio::time::timeout(Duration::from_secs(10), self.layer.written_at_least(n))
            .await
            .expect("the writer never appended the records");
        assert!(written >= n);
        let store = open_store(&self.db);
        let key = audit_key();
        let log = store.audit(&key);
        log.verify().expect("the chain verifies");
        log.recent(1000).unwrap()
    }
}

fn get_as_alice(uri: &str) -> axum::http::request::Builder {
    Request::get(uri)
        .header(FORWARDED_USER_ID_HEADER, "u-alice")
        .header(FORWARDED_USER_HEADER, "alice%40example.com")
        .header(FORWARDED_SESSION_HEADER, "00112233aabbccdd")
}

fn detail(r: &AuditRecord) -> CallDetail {
    CallDetail::parse(&r.detail).expect("a tunnel call's detail")
}

#[tokio::test]
async fn a_whole_download_records_every_byte_sent_and_who_asked() {
    let f = Fixture::new();
    let data: Vec<u8> = (0..(crate::api::READ_CHUNK_BYTES * 3 + 17))
        .map(|i| (i % 251) as u8)
        .collect();
    f.write("big.bin", &data);

    let req = get_as_alice("/v1/workspaces/1/file?path=big.bin")
        .body(Body::empty())
        .unwrap();
    let (status, body) = f.call(req).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, data);

    let records = f.records(1).await;
    let r = &records[0];
    assert_eq!(r.action, "file.read");
    assert_eq!(r.actor, "browser");
    assert_eq!(r.user.as_deref(), Some("u-alice"));
    assert_eq!(r.session.as_deref(), Some("00112233aabbccdd"));
    assert_eq!(r.paths, ["big.bin"]);
    assert_eq!(r.result, "ok");
    assert_eq!(
        r.bytes_out,
        data.len() as i64,
        "bytes out = body bytes sent"
    );
    assert_eq!(r.workspace_id, Some(1));
    let canonical = std::fs::canonicalize(&f.workspace).unwrap();
    assert_eq!(r.workspace_path.as_deref(), canonical.to_str());
    let d = detail(r);
    assert_eq!(d.method, "GET");
    assert_eq!(d.status, Some(200));
    assert_eq!(d.user_name.as_deref(), Some("alice@example.com"));
    assert_eq!(d.route.as_deref(), Some("/v1/workspaces/{id}/file"));
}

#[tokio::test]
async fn a_ranged_download_records_the_range_bytes_only() {
    let f = Fixture::new();
    f.write("a.txt", &[b'x'; 1000]);
    let req = get_as_alice("/v1/workspaces/1/file?path=a.txt")
        .header("range", "bytes=10-109")
        .body(Body::empty())
        .unwrap();
    let (status, body) = f.call(req).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.len(), 100);
    let r = &f.records(1).await[0];
    assert_eq!((r.result.as_str(), r.bytes_out), ("ok", 100));
    let d = detail(r);
    assert_eq!(d.status, Some(206));
    assert_eq!(d.range.as_deref(), Some("bytes=10-109"));
}

#[tokio::test]
async fn a_download_cut_short_records_the_bytes_that_left() {
    let f = Fixture::new();
    let chunk = crate::api::READ_CHUNK_BYTES;
    f.write("big.bin", &vec![1_u8; chunk * 8]);
    // a ranged read streams from the file in chunks (a whole small file is sent from memory)
    let req = get_as_alice("/v1/workspaces/1/file?path=big.bin")
        .header("range", format!("bytes=0-{}", chunk * 8 - 1))
        .body(Body::empty())
        .unwrap();
    let res = f.app.clone().oneshot(req).await.unwrap();
    let mut body = res.into_body();
    let mut received = 0;
    for _ in 0..3 {
        let frame = body.frame().await.unwrap().unwrap();
        received += frame.data_ref().map_or(0, |d| d.len());
    }
    assert!(received > 0 && received < chunk * 8);
    drop(body); // the client goes away mid-download

    let r = &f.records(1).await[0];
    assert_eq!(r.result, "response.cut_short");
    assert_eq!(r.bytes_out, received as i64, "exactly what was handed over");
}

#[tokio::test]
async fn errors_are_recorded_with_their_code_and_the_error_body_bytes() {
    let f = Fixture::new();
    let req = get_as_alice("/v1/workspaces/1/file?path=missing.rs")
        .body(Body::empty())
        .unwrap();
    let (status, body) = f.call(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let req = get_as_alice("/v1/workspaces/9/tree")
        .body(Body::empty())
        .unwrap();
    let (status, _) = f.call(req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let req = get_as_alice("/v2/nothing").body(Body::empty()).unwrap();
    f.call(req).await;

    let records = f.records(3).await;
    let (unknown, other_ws, missing) = (&records[0], &records[1], &records[2]);
    assert_eq!(missing.result, "path.not_found");
    assert_eq!(missing.bytes_out, body.len() as i64);
    assert_eq!(detail(missing).status, Some(404));
    assert_eq!(other_ws.result, "workspace.not_found");
    assert_eq!(other_ws.workspace_id, None);
    assert_eq!(detail(other_ws).workspace_asked, Some(9));
    assert_eq!(unknown.action, "request.unknown");
    assert_eq!(unknown.result, "request.not_found");
}

#[tokio::test]
async fn a_call_without_caller_headers_is_recorded_as_unknown() {
    let f = Fixture::new();
    let (status, _) = f
        .call(Request::get("/v1/status").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    let r = &f.records(1).await[0];
    assert_eq!(r.action, "status.get");
    assert_eq!(r.user.as_deref(), Some("unknown"));
    assert_eq!(r.session.as_deref(), Some("unknown"));
    assert_eq!(detail(r).user_name, None);
}

#[tokio::test]
async fn a_write_records_the_bytes_that_came_in() {
    let f = Fixture::new();
    let req = Request::put("/v1/workspaces/1/file?path=new.txt&expected=absent")
        .header(FORWARDED_USER_ID_HEADER, "u-alice")
        .body(Body::from(vec![b'w'; 5000]))
        .unwrap();
    let (status, _) = f.call(req).await;
    assert!(status.is_success(), "{status}");
    let r = &f.records(1).await[0];
    assert_eq!(r.action, "file.write");
    assert_eq!(r.paths, ["new.txt"]);
    assert_eq!(detail(r).bytes_in, 5000);
}

#[tokio::test]
async fn calls_are_refused_when_the_chain_head_was_tampered_with() {
    let f = Fixture::with(AuditOptions::default(), |db| {
        // one genuine record, then its sealed head edited
        let store = open_store(db);
        store
            .audit(&audit_key())
            .append(&crate::store::AuditEntry::new(
                crate::store::Actor::Cli,
                "workspace.add",
            ))
            .unwrap();
        drop(store);
        tamper(db, "UPDATE audit_head SET seal = zeroblob(32);");
    });
    f.write("a.txt", b"secret code");
    let req = get_as_alice("/v1/workspaces/1/file?path=a.txt")
        .body(Body::empty())
        .unwrap();
    let (status, body) = f.call(req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "audit.unavailable");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("katachi audit verify"), "{message}");
    assert!(message.contains("audit.head_tampered"), "{message}");
    assert!(
        matches!(f.layer.health(), AuditHealth::Broken { code, .. } if code == "audit.head_tampered")
    );
}

#[tokio::test]
async fn calls_are_refused_when_the_store_cannot_be_opened() {
    let tmp = tempfile::tempdir().unwrap();
    let source = Arc::new(FixedWorkspaces::new([tmp.path()]).unwrap());
    let gone = tmp.path().join("no-such-dir").join("store.db");
    let layer = AuditLayer::start_with(
        move || Store::open(&gone, &store_key()),
        audit_key(),
        None,
        AuditOptions::default(),
    );
    let app = router(ApiState::new(source)).layer(layer.clone());
    let res = app
        .oneshot(Request::get("/v1/status").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(matches!(layer.ready().await, AuditHealth::Broken { .. }));
}

#[tokio::test]
async fn a_log_broken_while_running_refuses_the_next_calls() {
    let f = Fixture::new();
    let status_call = || Request::get("/v1/status").body(Body::empty()).unwrap();
    assert_eq!(f.call(status_call()).await.0, StatusCode::OK);
    f.records(1).await;
    tamper(&f.db, "UPDATE audit_head SET seal = zeroblob(32);");
    // admitted while the log looked writable; its append then fails
    f.call(status_call()).await;
    let mut health = f.layer.shared.health.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        health.wait_for(|h| matches!(h, AuditHealth::Broken { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        f.call(status_call()).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_full_queue_makes_calls_wait_and_drops_no_record() {
    let f = Fixture::with(
        AuditOptions {
            queue: 1,
            ..AuditOptions::default()
        },
        |_| {},
    );
    f.write("a.txt", &[b'a'; 10]);
    let file = || {
        get_as_alice("/v1/workspaces/1/file?path=a.txt")
            .body(Body::empty())
            .unwrap()
    };
    // the first call holds the only slot until its body is over
    let first = f.app.clone().oneshot(file()).await.unwrap();
    let second = tokio::spawn(f.app.clone().oneshot(file()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second call waits for room");
    let first_body = first.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(first_body.len(), 10);
    let second = tokio::time::timeout(Duration::from_secs(10), second)
        .await
        .expect("the second call proceeds once the first is recorded")
        .unwrap()
        .unwrap();
    second.into_body().collect().await.unwrap();
    let records = f.records(2).await;
    assert_eq!(records.len(), 2);
    assert!(records.iter().all(|r| r.bytes_out == 10));
}

#[tokio::test]
async fn a_call_cancelled_before_its_response_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("store.db");
    let open_db = db.clone();
    let layer = AuditLayer::start_with(
        move || Store::open(&open_db, &store_key()),
        audit_key(),
        None,
        AuditOptions::default(),
    );
    let app = Router::new()
        .route("/v1/slow", get(std::future::pending::<()>))
        .layer(layer.clone());
    // admitted first (the start-up check done), so the call is running when it is dropped
    assert_eq!(layer.ready().await, AuditHealth::Ready);
    let call = app.oneshot(Request::get("/v1/slow").body(Body::empty()).unwrap());
    // the client gives up while the handler still runs: the call's future is dropped
    assert!(tokio::time::timeout(Duration::from_millis(50), call)
        .await
        .is_err());
    tokio::time::timeout(Duration::from_secs(10), layer.written_at_least(1))
        .await
        .unwrap();
    let store = open_store(&db);
    let records = store.audit(&audit_key()).recent(10).unwrap();
    assert_eq!(records[0].action, "slow.get");
    assert_eq!(records[0].result, "request.cancelled");
    assert_eq!(detail(&records[0]).status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_keep_one_intact_chain() {
    let f = Fixture::new();
    f.write("a.txt", b"0123456789");
    let mut tasks = Vec::new();
    for i in 0..64 {
        let app = f.app.clone();
        tasks.push(tokio::spawn(async move {
            let req = get_as_alice(&format!("/v1/workspaces/1/file?path=a.txt&n={i}"))
                .body(Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes().len()
        }));
    }
    let mut sent = 0;
    for t in tasks {
        sent += t.await.unwrap();
    }
    let records = f.records(64).await; // verifies the chain
    assert_eq!(records.len(), 64);
    let total: i64 = records.iter().map(|r| r.bytes_out).sum();
    assert_eq!(total, sent as i64);
}

#[tokio::test]
async fn a_run_is_recorded_with_its_command_line_whether_it_ran_or_was_refused() {
    let f = Fixture::new();
    let run = |body: &str| {
        Request::post("/v1/workspaces/1/run")
            .header(FORWARDED_USER_ID_HEADER, "u-alice")
            .header(FORWARDED_SESSION_HEADER, "00112233aabbccdd")
            .header("content-type", "application/json")
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    let (status, _) = f
        .call(run(
            r#"{"command":"rm","args":["-rf","my files"],"cwd":""}"#,
        ))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let records = f.records(1).await;
    let refused = &records[0];
    assert_eq!(refused.action, "command.run");
    assert_eq!(refused.result, "http.403");
    assert_eq!(
        detail(refused).command.as_deref(),
        Some("rm -rf 'my files'")
    );
}
