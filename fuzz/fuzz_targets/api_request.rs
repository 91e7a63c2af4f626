//! The API router and audit layer below the HTTP/2 framing: arbitrary request lines and headers
//! ("METHOD URI\nname: value\n…\n\nbody"), so mutation reaches path and query decoding, range
//! parsing, caller-header parsing and the handlers without having to keep HPACK valid. No input may
//! panic or hang (current-thread runtime, time limit).

#![no_main]

#[path = "common.rs"]
mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// Wall-clock budget of one input.
const BUDGET: Duration = Duration::from_millis(500);

fuzz_target!(|data: &[u8]| {
    let Some(request) = parse(data) else {
        return;
    };
    let router = common::audited_router();
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async {
        let call = async {
            let Ok(response) = router.oneshot(request).await;
            let _ = axum::body::to_bytes(response.into_body(), 1 << 20).await;
        };
        let _ = tokio::time::timeout(BUDGET, call).await;
    });
    runtime.shutdown_timeout(Duration::from_millis(100));
});

/// `METHOD URI` line, header lines, a blank line, then the body; `None` when the head does not
/// make an HTTP request at all (that is the HTTP layer's job, not the router's).
fn parse(data: &[u8]) -> Option<Request<Body>> {
    let split = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .map_or((data, &[][..]), |i| (&data[..i], &data[i + 2..]));
    let (head, body) = split;
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.lines();
    let (method, uri) = lines.next()?.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(uri);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        builder = builder.header(name.trim(), value.trim());
    }
    builder.body(Body::from(body.to_vec())).ok()
}
