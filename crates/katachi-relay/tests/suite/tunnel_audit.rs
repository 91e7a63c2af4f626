//! The audit ledger end to end: an agent home (store, machine key) serves its API with the audit
//! layer over a real tunnel to the in-process relay, exactly as `katachi start` wires it; a
//! signed-in browser makes many calls. The chain must still verify (what `katachi audit verify`
//! runs), every call must be recorded with the caller the relay named, and the bytes-out total must
//! equal the body bytes the browser received.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::api::{router, ApiState, AuditHealth, AuditLayer, CallDetail};
use katachi_core::fingerprint::FixedFingerprint;
use katachi_core::store::AuditKey;
use katachi_core::vault::MemoryKeystore;
use katachi_core::{AgentHome, Fingerprint, KatachiDirs};
use reqwest::Client;

use super::support::{registered_agent, TestRelay};
use super::tunnel::dialer;

/// An agent home in `dir` (in-memory keystore, fixed fingerprint) allowing `workspace`.
fn agent_home(dir: &std::path::Path, workspace: &std::path::Path) -> Arc<AgentHome> {
    let fp = Fingerprint::from_components([("machine_id", b"tunnel-audit".to_vec())]).unwrap();
    let home = AgentHome::open_with_keystore(
        KatachiDirs::under(dir),
        &FixedFingerprint(fp),
        Box::new(MemoryKeystore::default()),
    )
    .unwrap();
    home.store()
        .unwrap()
        .workspaces()
        .add(workspace, &home.protected_dirs())
        .unwrap();
    Arc::new(home)
}

/// GET `url`; status and body bytes received.
async fn fetch(client: &Client, url: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut req = client.get(url);
    if let Some(range) = range {
        req = req.header("range", range);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn every_tunnelled_call_is_chained_and_bytes_out_equal_what_the_browser_received() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "dora@example.com").await;
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("project");
    std::fs::create_dir(&workspace).unwrap();
    let big: Vec<u8> = (0..300_000_u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(workspace.join("big.bin"), &big).unwrap();
    std::fs::write(workspace.join("small.txt"), b"small file\n").unwrap();
    let home = agent_home(&tmp.path().join("home"), &workspace);

    // as `katachi start` builds it
    let audit = AuditLayer::start(home.clone());
    let api = router(ApiState::new(home.clone())).layer(audit.clone());
    assert_eq!(audit.ready().await, AuditHealth::Ready);
    let tunnel = {
        let dialer = dialer(&relay, &agent);
        tokio::spawn(async move { dialer.dial_and_serve(api).await })
    };

    let api_url = |rest: &str| relay.at(&format!("/agents/{}/api{rest}", agent.id));
    let status_url = api_url("/v1/status");
    let mut calls = 0_u64;
    let mut received = 0_u64;
    let mut record = |(status, body): (u16, Vec<u8>), expected: u16| {
        assert_eq!(status, expected, "{}", String::from_utf8_lossy(&body));
        calls += 1;
        received += body.len() as u64;
    };
    // Until the tunnel is up the relay answers 503 itself; the first answer from the agent is a call.
    let mut online = None;
    for _ in 0..100 {
        let answer = fetch(&browser, &status_url, None).await;
        if answer.0 != 503 {
            online = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    record(online.expect("the agent came online"), 200);

    for i in 0..10 {
        let full = fetch(
            &browser,
            &api_url("/v1/workspaces/1/file?path=big.bin"),
            None,
        )
        .await;
        assert_eq!(full.1, big, "the whole file crossed intact");
        record(full, 200);
        let range = format!("bytes={}-{}", i * 1000, i * 1000 + 4095);
        let part = fetch(
            &browser,
            &api_url("/v1/workspaces/1/file?path=big.bin"),
            Some(&range),
        )
        .await;
        record(part, 206);
        record(
            fetch(&browser, &api_url("/v1/workspaces/1/tree"), None).await,
            200,
        );
        record(
            fetch(
                &browser,
                &api_url("/v1/workspaces/1/file?path=missing.rs"),
                None,
            )
            .await,
            404,
        );
        record(fetch(&browser, &status_url, None).await, 200);
    }

    let written = tokio::time::timeout(Duration::from_secs(20), audit.written_at_least(calls))
        .await
        .expect("every call is recorded");
    assert_eq!(written, calls, "one record per call, no more");

    let store = home.store().unwrap();
    let key = AuditKey::derive(home.machine_key());
    let log = store.audit(&key);
    // what `katachi audit verify` checks
    let report = log.verify().expect("the chain verifies after many calls");
    assert_eq!(report.records, written);

    let records = log.recent(u32::try_from(calls).unwrap()).unwrap();
    let bytes_out: i64 = records.iter().map(|r| r.bytes_out).sum();
    assert_eq!(
        bytes_out as u64, received,
        "bytes out = body bytes the browser received"
    );
    for r in &records {
        assert_eq!(r.actor, "browser");
        assert_ne!(
            r.user.as_deref(),
            Some("unknown"),
            "the relay names the user"
        );
        let session = r.session.as_deref().unwrap();
        assert_eq!(session.len(), 16, "a one-way session tag, not the cookie");
        let detail = CallDetail::parse(&r.detail).unwrap();
        assert_eq!(detail.user_name.as_deref(), Some("dora@example.com"));
    }
    let reads: Vec<_> = records.iter().filter(|r| r.action == "file.read").collect();
    assert_eq!(reads.len(), 30);
    assert!(reads
        .iter()
        .any(|r| r.result == "path.not_found" && r.paths == ["missing.rs"]));

    // per-workspace totals (what `katachi audit` prints) match too
    let canonical = std::fs::canonicalize(&workspace).unwrap();
    let egress = log.egress_by_workspace().unwrap();
    let ws = egress
        .iter()
        .find(|e| e.workspace_path.as_deref() == canonical.to_str())
        .unwrap();
    let ws_received: i64 = records
        .iter()
        .filter(|r| r.workspace_id.is_some())
        .map(|r| r.bytes_out)
        .sum();
    assert_eq!(ws.bytes_out, ws_received);
    assert_eq!(ws.calls, 40, "4 workspace calls per round");

    tunnel.abort();
    let _ = tunnel.await;
}

#[tokio::test]
async fn a_download_cut_through_the_relay_records_no_fewer_bytes_than_the_browser_got() {
    let relay = TestRelay::start().await;
    let (browser, agent) = registered_agent(&relay, "eli@example.com").await;
    let tmp = tempfile::tempdir().unwrap();
    let workspace = tmp.path().join("project");
    std::fs::create_dir(&workspace).unwrap();
    let size = 16 << 20;
    std::fs::write(workspace.join("huge.bin"), vec![7_u8; size]).unwrap();
    let home = agent_home(&tmp.path().join("home"), &workspace);
    let audit = AuditLayer::start(home.clone());
    let api = router(ApiState::new(home.clone())).layer(audit.clone());
    let tunnel = {
        let dialer = dialer(&relay, &agent);
        tokio::spawn(async move { dialer.dial_and_serve(api).await })
    };
    let url = relay.at(&format!(
        "/agents/{}/api/v1/workspaces/1/file?path=huge.bin",
        agent.id
    ));
    let mut response = None;
    for _ in 0..100 {
        let r = browser.get(&url).send().await.unwrap();
        if r.status() != 503 {
            response = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut response = response.expect("the agent came online");
    assert_eq!(response.status(), 200);
    let mut got = 0_usize;
    while got < 256 * 1024 {
        got += response.chunk().await.unwrap().unwrap().len();
    }
    drop(response); // the browser gives up mid-download

    tokio::time::timeout(Duration::from_secs(20), audit.written_at_least(1))
        .await
        .unwrap();
    let store = home.store().unwrap();
    let key = AuditKey::derive(home.machine_key());
    let log = store.audit(&key);
    let mut cut = None;
    for _ in 0..100 {
        cut = log
            .recent(10)
            .unwrap()
            .into_iter()
            .find(|r| r.action == "file.read");
        if cut.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cut = cut.expect("the cut download is recorded");
    assert_eq!(cut.result, "response.cut_short");
    assert!(
        cut.bytes_out as usize >= got && (cut.bytes_out as usize) < size,
        "recorded {} bytes, the browser got {got} of {size}",
        cut.bytes_out
    );
    log.verify().unwrap();
    tunnel.abort();
    let _ = tunnel.await;
}
