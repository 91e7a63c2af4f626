//! Reading files through the API: binary-safe, ranged, streamed, capped.

use katachi_core::api::ApiLimits;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::api_support::{code, sha256_hex, ApiServer};

#[tokio::test]
async fn every_byte_value_round_trips_with_its_hash() {
    let s = ApiServer::start().await;
    let data: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    s.put_file("bin/all-bytes", &data);
    let res = s
        .client
        .get(s.ws_url("/file?path=bin/all-bytes"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "application/octet-stream");
    assert_eq!(res.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        res.headers()["x-katachi-sha256"],
        sha256_hex(&data).as_str()
    );
    assert_eq!(res.bytes().await.unwrap().as_ref(), &data[..]);
}

#[tokio::test]
async fn ranges_return_206_and_bad_ones_have_codes() {
    let s = ApiServer::start().await;
    s.put_file("f", b"0123456789");
    let get = |range: &'static str| {
        s.client
            .get(s.ws_url("/file?path=f"))
            .header(RANGE, range)
            .send()
    };
    let res = get("bytes=2-4").await.unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.headers()[CONTENT_RANGE], "bytes 2-4/10");
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"234");
    let res = get("bytes=-3").await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"789");
    let res = get("bytes=7-").await.unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), b"789");

    let res = get("bytes=10-").await.unwrap();
    assert_eq!(res.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(res.headers()[CONTENT_RANGE], "bytes */10");
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(code(&body), "range.not_satisfiable");
    let res = get("bytes=0-1,3-4").await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    assert_eq!(code(&res.json().await.unwrap()), "range.invalid");
}

#[tokio::test]
async fn reads_over_the_cap_are_refused_but_ranges_under_it_work() {
    let limits = ApiLimits {
        max_read_bytes: 1000,
        ..ApiLimits::default()
    };
    let s = ApiServer::with_limits(limits).await;
    s.put_file("big", &vec![b'x'; 2000]);
    let (status, body) = s.get_json(&s.ws_url("/file?path=big")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "file.too_large")
    );
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("ranges"));
    let res = s
        .client
        .get(s.ws_url("/file?path=big"))
        .header(RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn a_64_mib_file_streams_in_chunks() {
    let s = ApiServer::start().await;
    const SIZE: usize = 64 << 20;
    let path = s.ws.join("big.bin");
    {
        use std::io::Write;
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let block: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2654435761) >> 24) as u8)
            .collect();
        for _ in 0..SIZE / block.len() {
            f.write_all(&block).unwrap();
        }
        f.flush().unwrap();
    }
    let expected = {
        let mut h = Sha256::new();
        std::io::copy(&mut std::fs::File::open(&path).unwrap(), &mut h).unwrap();
        hex::encode(h.finalize())
    };
    let mut res = s
        .client
        .get(s.ws_url("/file?path=big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[CONTENT_LENGTH], SIZE.to_string().as_str());
    // too large to hash inline: streamed from the descriptor, no hash header
    assert!(res.headers().get("x-katachi-sha256").is_none());
    let mut h = Sha256::new();
    let (mut total, mut chunks) = (0usize, 0usize);
    while let Some(chunk) = res.chunk().await.unwrap() {
        total += chunk.len();
        chunks += 1;
        h.update(&chunk);
    }
    assert_eq!(total, SIZE);
    assert!(chunks > 1, "arrived in {chunks} chunk(s)");
    assert_eq!(hex::encode(h.finalize()), expected);
}

#[tokio::test]
async fn folders_and_missing_files_have_codes() {
    let s = ApiServer::start().await;
    std::fs::create_dir(s.ws.join("dir")).unwrap();
    let (status, body) = s.get_json(&s.ws_url("/file?path=dir")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "path.not_a_file")
    );
    let (status, body) = s.get_json(&s.ws_url("/file?path=nope")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::NOT_FOUND, "path.not_found")
    );
    let (status, body) = s.get_json(&s.ws_url("/file")).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, "request.invalid")
    );
}

#[tokio::test]
async fn stat_gives_the_hash_that_a_write_expects() {
    let s = ApiServer::start().await;
    s.put_file("src/lib.rs", b"pub fn f() {}\n");
    let (status, body) = s.get_json(&s.ws_url("/stat?path=src/lib.rs")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["kind"], "file");
    assert_eq!(body["size"], 14);
    assert_eq!(body["sha256"], sha256_hex(b"pub fn f() {}\n"));
    let (_, body) = s.get_json(&s.ws_url("/stat?path=src")).await;
    assert_eq!(body["kind"], "dir");
}
