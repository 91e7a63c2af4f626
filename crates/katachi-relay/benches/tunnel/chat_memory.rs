//! Agent memory while streaming a long answer (issue 13: "report it"), the chat part's third figure.
//!
//! This process holds the agent (the API and chat routes over the tunnel it dials, the real
//! provider client) and a browser client that reads the turn's NDJSON and drops it; the fake
//! provider runs in a child process (this bench binary again, with [`CHILD_ENV`] set), and the
//! relay in its own. Before each run freed heap is handed back (`malloc_trim`) and the peak reset
//! (writing 5 to `/proc/self/clear_refs` resets `VmHWM`); the figure is the peak's rise over the
//! RSS before, each run in a new session (a second long answer in one session would be summarised
//! first). The client's share is measured the same way by reading the same answer straight from the
//! child (no agent involved), so the agent's share is the difference.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use katachi_testkit::{FakeAnswer, FakeProvider, FakeReply};

use crate::agent;
use crate::chat::bench_agent;
use crate::load::median;
use crate::relay_process::{RelayProcess, Seeded, SeededUser};

/// Set in the child: `ANSWERS:KIB`, the fake provider's script.
pub const CHILD_ENV: &str = "KATACHI_BENCH_CHAT_FAKE_PROVIDER";

/// One piece of the long answer.
const PIECE: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn long_answer(kib: usize) -> FakeReply {
    FakeAnswer::text(std::iter::repeat_n(PIECE, kib * 1024 / PIECE.len())).into()
}

/// The child: a fake provider with `ANSWERS` long answers of `KIB` KiB; prints its base URL, then
/// serves until its stdin is closed.
pub fn child_main(spec: &str) {
    let (answers, kib) = spec.split_once(':').expect("ANSWERS:KIB");
    let (answers, kib): (usize, usize) = (answers.parse().unwrap(), kib.parse().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let fake = FakeProvider::start((0..answers).map(|_| long_answer(kib)))
            .await
            .unwrap();
        println!("{}", fake.openai_base_url());
        tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        })
        .await
        .unwrap();
    });
}

fn status_kib(pid: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Hands the heap's free pages back to the kernel (glibc `malloc_trim`), so that a run's RSS rise
/// is not hidden by memory an earlier run freed.
#[allow(unsafe_code)]
fn trim_heap() {
    // SAFETY: malloc_trim takes no pointer and only releases free heap memory.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Resets this process's peak; its RSS now.
fn reset_peak() -> u64 {
    trim_heap();
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("self", "VmRSS:")
}

/// Reads a response to its end; the bytes read.
async fn drain(mut res: reqwest::Response) -> usize {
    let mut read = 0;
    while let Some(chunk) = res.chunk().await.unwrap() {
        read += chunk.len();
    }
    read
}

pub async fn run(relay: &RelayProcess, seeded: &Seeded, user: &SeededUser, dir: &Path, kib: usize) {
    const ROUNDS: usize = 4;
    println!(
        "\n== agent memory while streaming a {kib} KiB answer through relay + tunnel (fake provider in a child process), {ROUNDS} rounds =="
    );
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, format!("{}:{kib}", 2 * ROUNDS))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let base_url = url::Url::parse(url.trim()).expect("the child printed its URL");
    let child_pid = child.id().to_string();

    std::fs::create_dir_all(dir).unwrap();
    let ws = std::fs::canonicalize(dir).unwrap().join("ws");
    std::fs::create_dir(&ws).unwrap();
    let served = bench_agent(&ws, &dir.join("agent.db"), 6, base_url.clone());
    let dialer = agent::dialer(&relay.url, &seeded.ca_pem, &user.agent);
    let (_direct_addr, _tunnel) = agent::start_agent_thread(served.clone(), dialer, served).await;
    relay.wait_for_tunnels(2, Duration::from_secs(30)).await;
    let browser = agent::browser_client(&seeded.ca_pem, Some(&user.session));
    let direct = agent::direct_client();
    let via_relay = |path: &str| format!("{}/agents/{}/api{path}", relay.url, user.agent.id);
    let completions = format!(
        "{}/chat/completions",
        base_url.as_str().trim_end_matches('/')
    );

    let (mut client_rise, mut agent_rise) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        // the client's own share: the same answer read straight from the provider
        let before = reset_peak();
        let res = direct
            .post(&completions)
            .json(&serde_json::json!({
                "model": "bench-model", "stream": true,
                "messages": [{"role": "user", "content": "write a lot"}],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let sse = drain(res).await;
        let client = status_kib("self", "VmHWM:").saturating_sub(before);

        let session: serde_json::Value = browser
            .post(via_relay("/v1/workspaces/1/chat/sessions"))
            .header("origin", &relay.url)
            .json(&serde_json::json!({"title": "long"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let sid = session["id"].as_i64().expect("a session was created");
        let before = reset_peak();
        let start = Instant::now();
        let res = browser
            .post(via_relay(&format!("/v1/chat/sessions/{sid}/turn")))
            .header("origin", &relay.url)
            .json(&serde_json::json!({"text": "write a lot"}))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let ndjson = drain(res).await;
        let took = start.elapsed();
        let through = status_kib("self", "VmHWM:").saturating_sub(before);
        assert!(
            ndjson > kib * 1024,
            "the turn did not stream the answer ({ndjson} bytes)"
        );
        println!(
            "round {round}: direct read ({} KiB of SSE): peak +{client} KiB; through the agent ({} KiB of NDJSON in {:.2} s): peak +{through} KiB; RSS after {} KiB",
            sse / 1024,
            ndjson / 1024,
            took.as_secs_f64(),
            status_kib("self", "VmRSS:")
        );
        if round > 0 {
            client_rise.push(client as f64);
            agent_rise.push(through as f64);
        }
    }
    let (c, a) = (median(&mut client_rise), median(&mut agent_rise));
    println!(
        "streaming a {kib} KiB answer: the agent's process peaks {a:.0} KiB above its RSS before (median of rounds 1–{}); reading the same answer directly costs the client {c:.0} KiB; the agent's share ≈ {:.0} KiB ({:.1}× the answer). The fake provider's process: peak RSS {} KiB",
        ROUNDS - 1,
        a - c,
        (a - c) / kib as f64,
        status_kib(&child_pid, "VmHWM:")
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
