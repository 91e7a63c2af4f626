//! HMAC sign + verify throughput on one core (target ≥ 500k/s).
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use katachi_proto::signing::{sign, verify_signature, SignedParts};

fn sign_verify(c: &mut Criterion) {
    let secret = [7u8; 32];
    let body = br#"{"version":"0.1.0","workspaces":3}"#;
    let parts = SignedParts {
        method: "POST",
        path_and_query: "/api/agent/heartbeat",
        timestamp: 1_764_000_000,
        nonce: "00112233445566778899aabbccddeeff",
        body,
    };
    let mut g = c.benchmark_group("hmac");
    g.throughput(Throughput::Elements(1));
    g.bench_function("sign_plus_verify", |b| {
        b.iter(|| {
            let sig = sign(black_box(&secret), black_box(&parts));
            verify_signature(&secret, &parts, &sig).unwrap();
        })
    });
    g.finish();
}

criterion_group!(benches, sign_verify);
criterion_main!(benches);
