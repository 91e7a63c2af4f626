//! Load on the relay's signed heartbeat endpoint, generated on loopback and bounded in count and
//! time. Targets: ≥ 10k verified heartbeats/s on a 2-core machine, p99 ≤ 5 ms. A baseline in the
//! same run (a static asset over the same TLS/HTTP-2 path) shows what signing + storage cost.
//!
//! Run: `cargo bench -p katachi-relay --bench heartbeat_load` (env `KATACHI_BENCH_REQUESTS`, default 40000).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use katachi_proto::signing::{
    sign, SignedParts, HEADER_AGENT_ID, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP,
};
use katachi_relay::store::NewAgent;
use katachi_relay::{Relay, RelayConfig};
use sha2::Digest;

/// Concurrent request streams (env `KATACHI_BENCH_CONCURRENCY`).
fn concurrency() -> usize {
    std::env::var("KATACHI_BENCH_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}
const MAX_SECONDS: u64 = 30;

struct Report {
    name: &'static str,
    done: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Report {
    fn print(&self) {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| {
            l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{:<22} {:>7} req in {:>6.2} s = {:>8.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms",
            self.name,
            self.done,
            self.elapsed.as_secs_f64(),
            self.done as f64 / self.elapsed.as_secs_f64(),
            pct(0.50).as_secs_f64() * 1e3,
            pct(0.99).as_secs_f64() * 1e3
        );
    }
}

async fn load(
    name: &'static str,
    total: usize,
    client: reqwest::Client,
    make: Arc<dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync>,
) -> Report {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(MAX_SECONDS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency() {
        let (next, client, make) = (next.clone(), client.clone(), make.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < total && Instant::now() < deadline {
                let t = Instant::now();
                let r = make(&client).send().await.unwrap();
                assert!(
                    r.status().is_success(),
                    "{}: {}",
                    r.status(),
                    r.text().await.unwrap_or_default()
                );
                let _ = r.bytes().await;
                lat.push(t.elapsed());
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    Report {
        name,
        done: latencies.len(),
        elapsed: start.elapsed(),
        latencies,
    }
}

fn main() {
    let total: usize = std::env::var("KATACHI_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let tmp = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Relay::with_listener(listener, RelayConfig::local(tmp.path().join("relay"))).await.unwrap();
        let url = relay.url().to_owned();
        let ca = std::fs::read(relay.ca_file().unwrap()).unwrap();
        let state = relay.state().clone();

        // One user and one agent, inserted directly.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let user = state.store.create_user("bench@example.com", None, now).await.unwrap().unwrap();
        let token = "ab".repeat(32);
        let secret = "cd".repeat(32);
        let token_hash = hex::encode(sha2::Sha256::digest(token.as_bytes()));
        let sealed = state.master.seal(&katachi_relay::crypto::SealedRow::agent_signing_secret("agt_bench", &user.id), secret.as_bytes());
        let agent = NewAgent { id: "agt_bench", user_id: &user.id, name: "bench", os: "linux", token_hash: &token_hash, signing_secret_enc: &sealed };
        state.store.create_agent(&agent, now).await.unwrap();

        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(relay.serve_until(async { let _ = rx.await; }));
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
            .http2_prior_knowledge()
            .build()
            .unwrap();

        let asset_url = format!("{url}/static/app.css");
        let baseline = load("baseline static asset", total, client.clone(), Arc::new(move |c: &reqwest::Client| c.get(&asset_url))).await;

        let hb_url = format!("{url}/api/agent/heartbeat");
        let body: &'static [u8] = br#"{"version":"0.1.0","workspaces":3}"#;
        let signed = load(
            "signed heartbeat",
            total,
            client.clone(),
            Arc::new(move |c: &reqwest::Client| {
                let ts = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
                let nonce = hex::encode(rand::random::<[u8; 16]>());
                let sig = sign(secret.as_bytes(), &SignedParts { method: "POST", path_and_query: "/api/agent/heartbeat", timestamp: ts, nonce: &nonce, body });
                c.post(&hb_url)
                    .header("authorization", format!("Bearer {token}"))
                    .header(HEADER_AGENT_ID, "agt_bench")
                    .header(HEADER_TIMESTAMP, ts.to_string())
                    .header(HEADER_NONCE, nonce)
                    .header(HEADER_SIGNATURE, sig)
                    .body(body)
            }),
        )
        .await;
        println!("relay heartbeat load, {} concurrent streams over HTTP/2 + TLS 1.3 on loopback, SQLite store, 2 cores shared by load and relay", concurrency());
        baseline.print();
        signed.print();
        println!("signed heartbeat throughput = {:.2} × baseline", (signed.done as f64 / signed.elapsed.as_secs_f64()) / (baseline.done as f64 / baseline.elapsed.as_secs_f64()));
        let _ = tx.send(());
        let _ = server.await;
    });
}
