//! What the API targets share: the agent's API router over a temp workspace, with the audit layer
//! writing to a temp store — what `katachi start` serves over the tunnel — built once per process.
//! The folder is made under `TMPDIR` and outlives the process (statics are not dropped); the smoke
//! script points `TMPDIR` at a folder it removes.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::Router;
use katachi_core::api::{router, ApiState, AuditLayer, AuditOptions, FixedWorkspaces};
use katachi_core::store::{AuditKey, Store};
use katachi_core::vault::{DerivedKey, MachineKey, Purpose};
use katachi_core::{Fingerprint, SecretBytes};

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
