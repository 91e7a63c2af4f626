//! What the API targets share: the agent's API router over a temp workspace, with the audit layer
//! writing to a temp store — what `katachi start` serves over the tunnel — built once per process;
//! and the harness of the tunnel targets, which feed one input "from the relay" to the agent's
//! tunnel server. The folder is made under `TMPDIR` and outlives the process (statics are not
//! dropped); the smoke script points `TMPDIR` at a folder it removes.

// each target uses part of this file
#![allow(dead_code)]

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use katachi_core::api::{router, ApiState, AuditLayer, AuditOptions, FixedWorkspaces};
use katachi_core::store::{AuditKey, Store};
use katachi_core::tunnel::serve_router_over_stream;
use katachi_core::vault::{DerivedKey, MachineKey, Purpose};
use katachi_core::{Fingerprint, SecretBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

/// Wall-clock budget of one tunnel input.
const BUDGET: Duration = Duration::from_millis(500);

/// Feeds `data`, as the relay's bytes, to the agent's tunnel server (`serve_router_over_stream`
/// with the audited router) over an in-memory duplex that `carry` wraps first (the identity for
/// the direct upgrade, the WebSocket carrier's framing for the other); the agent's replies are
/// drained. Each input runs on its own current-thread runtime under [`BUDGET`]: a connection the
/// agent keeps open past it is not a finding by itself (HTTP/2 allows idle streams), a panic
/// inside it is, and aborts the run.
pub fn serve_tunnel_input<C, F, S>(data: &[u8], carry: C)
where
    C: FnOnce(DuplexStream) -> F + Send + 'static,
    F: Future<Output = S> + Send + 'static,
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = audited_router();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let (relay, agent) = tokio::io::duplex(64 * 1024);
        let serve = tokio::spawn(async move {
            let carried = carry(agent).await;
            serve_router_over_stream(TokioIo::new(carried), router).await
        });
        let (mut from_agent, mut to_agent) = tokio::io::split(relay);
        let drain = tokio::spawn(async move {
            let mut sink = vec![0_u8; 16 * 1024];
            while matches!(from_agent.read(&mut sink).await, Ok(n) if n > 0) {}
        });
        let exchange = async {
            let _ = to_agent.write_all(data).await;
            // give the agent time to answer what it parsed before the relay hangs up
            tokio::time::sleep(Duration::from_millis(5)).await;
            let _ = to_agent.shutdown().await;
            let _ = serve.await;
        };
        let _ = tokio::time::timeout(BUDGET, exchange).await;
        drain.abort();
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
}

/// The router and the folder it serves (kept alive for the process).
struct Served {
    router: Router,
    _dir: tempfile::TempDir,
}

/// The audited API router over a workspace with a few files, a folder and a symlink pointing out.
pub fn audited_router() -> Router {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(build).router.clone()
}

fn build() -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let ws: PathBuf = dir.path().join("ws");
    std::fs::create_dir_all(ws.join("src/deep")).expect("workspace");
    std::fs::write(ws.join("src/main.rs"), b"fn main() { println!(\"hi\"); }\n").expect("file");
    std::fs::write(ws.join("src/deep/data.bin"), vec![7_u8; 100_000]).expect("file");
    std::fs::write(ws.join(".gitignore"), b"target/\n").expect("file");
    #[cfg(unix)]
    let _ = std::os::unix::fs::symlink("/etc", ws.join("escape"));
    let source = Arc::new(FixedWorkspaces::new([&ws]).expect("workspace allowed"));
    let db = dir.path().join("store.db");
    let fp = Fingerprint::from_components([("machine_id", b"fuzz".to_vec())]).expect("fp");
    let key = AuditKey::derive(&MachineKey::derive(&SecretBytes::new(vec![1; 32]), &fp));
    let layer = AuditLayer::start_with(
        move || Store::open(&db, &DerivedKey::from_bytes([2; 32], Purpose::STORE)),
        key,
        Some(source.clone()),
        AuditOptions::default(),
    );
    // the writer's start-up check opens and migrates the store; do it before the first input
    if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        rt.block_on(layer.ready());
    }
    Served {
        router: router(ApiState::new(source)).layer(layer),
        _dir: dir,
    }
}
