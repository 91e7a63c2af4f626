//! Writing files through the API: guarded by the expected content hash, atomic, mode-preserving.

use std::os::unix::fs::PermissionsExt;

use katachi_core::api::ApiLimits;
use reqwest::StatusCode;

use super::api_support::{code, has_temp_files, sha256_hex, ApiServer};

#[tokio::test]
async fn create_then_replace_then_a_stale_write_conflicts() {
    let s = ApiServer::start().await;
    let (status, body) = s.write("src/new.rs", "absent", b"// v1\n").await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "the folder must exist: {body}"
    );
    std::fs::create_dir(s.ws.join("src")).unwrap();
    let (status, body) = s.write("src/new.rs", "absent", b"// v1\n").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["created"], true);
    assert_eq!(body["sha256"], sha256_hex(b"// v1\n"));

    let v1 = sha256_hex(b"// v1\n");
    let (status, body) = s.write("src/new.rs", &v1, b"// v2\n").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["created"], false);

    // a client still holding v1 must not overwrite v2
    let (status, body) = s
        .write("src/new.rs", &v1, b"// v3 from a stale tab\n")
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "file.conflict")
    );
    assert_eq!(std::fs::read(s.ws.join("src/new.rs")).unwrap(), b"// v2\n");
    // and `absent` on an existing file is a conflict too
    let (status, body) = s.write("src/new.rs", "absent", b"x").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "file.conflict")
    );
    assert!(!has_temp_files(&s.ws.join("src")));
}

#[tokio::test]
async fn a_change_on_disk_after_the_read_is_a_conflict() {
    let s = ApiServer::start().await;
    s.put_file("notes.md", b"hello\n");
    let res = s
        .client
        .get(s.ws_url("/file?path=notes.md"))
        .send()
        .await
        .unwrap();
    let seen = res.headers()["x-katachi-sha256"]
        .to_str()
        .unwrap()
        .to_owned();
    // an editor on the machine saves meanwhile
    std::fs::write(s.ws.join("notes.md"), b"hello from the editor\n").unwrap();
    let (status, body) = s
        .write("notes.md", &seen, b"hello from the browser\n")
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::CONFLICT, "file.conflict")
    );
    assert_eq!(
        std::fs::read(s.ws.join("notes.md")).unwrap(),
        b"hello from the editor\n"
    );
}

#[tokio::test]
async fn concurrent_writers_with_the_same_base_get_one_success() {
    let s = ApiServer::start().await;
    s.put_file("race.txt", b"base\n");
    let base = sha256_hex(b"base\n");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = s.client.clone();
        let url = s.ws_url(&format!("/file?path=race.txt&expected={base}"));
        tasks.push(tokio::spawn(async move {
            let res = client
                .put(url)
                .body(format!("writer {i}\n"))
                .send()
                .await
                .unwrap();
            res.status()
        }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let conflicts = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((ok, conflicts), (1, 7), "{statuses:?}");
    let content = std::fs::read_to_string(s.ws.join("race.txt")).unwrap();
    assert!(content.starts_with("writer "), "{content}");
    assert!(!has_temp_files(&s.ws));
}

#[tokio::test]
async fn bodies_over_the_cap_are_refused_and_the_file_is_kept() {
    let limits = ApiLimits {
        max_write_bytes: 1024,
        ..ApiLimits::default()
    };
    let s = ApiServer::with_limits(limits).await;
    s.put_file("f", b"small");
    let (status, body) = s.write("f", &sha256_hex(b"small"), &vec![b'x'; 4096]).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "file.too_large")
    );
    assert_eq!(std::fs::read(s.ws.join("f")).unwrap(), b"small");
}

#[tokio::test]
async fn the_file_mode_is_kept_and_binary_content_round_trips() {
    let s = ApiServer::start().await;
    let p = s.put_file("run.sh", b"#!/bin/sh\n");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data: Vec<u8> = (0..=255u8).rev().collect();
    let (status, _) = s.write("run.sh", &sha256_hex(b"#!/bin/sh\n"), &data).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let res = s
        .client
        .get(s.ws_url("/file?path=run.sh"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn malformed_expected_hash_and_folder_targets_are_refused() {
    let s = ApiServer::start().await;
    std::fs::create_dir(s.ws.join("dir")).unwrap();
    let (status, body) = s.write("f", "not-a-hash", b"x").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.invalid")
    );
    let (status, body) = s.write("dir", &sha256_hex(b""), b"x").await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "path.not_a_file")
    );
    let url = s.ws_url("/file?path=f");
    let res = s.client.put(url).body("x").send().await.unwrap();
    assert_eq!(
        res.status(),
        StatusCode::BAD_REQUEST,
        "`expected` is required"
    );
}
