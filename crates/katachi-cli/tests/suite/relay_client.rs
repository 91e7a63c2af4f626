//! katachi-core's device flow and signed calls against the real relay, in-process: clock skew,
//! CA pinning, TLS 1.3, denied and expired sign-ins.

use std::sync::Arc;
use std::time::Duration;

use katachi_core::auth::{this_device, AuthError, DeviceFlow};
use katachi_core::signing::{Clock, SkewedClock, SystemClock};
use katachi_core::{AgentCredentials, RelayClient, RelayError, RelayUrl};
use katachi_proto::agent::{ActivityBatch, ActivityEvent, Heartbeat};

use super::relay_support::LocalRelay;

fn ca_pem(relay: &LocalRelay) -> String {
    std::fs::read_to_string(relay.ca()).unwrap()
}

fn flow(relay: &LocalRelay, ca: Option<String>) -> DeviceFlow {
    DeviceFlow::new(RelayUrl::parse(relay.url()).unwrap(), ca).unwrap()
}

/// Signs in through the device flow, approving the code as a fresh user.
pub(super) fn sign_in(relay: &LocalRelay) -> (AgentCredentials, String) {
    let flow = flow(relay, Some(ca_pem(relay)));
    let pending = relay
        .block_on(flow.start(&this_device(Some("lib-test"))))
        .unwrap();
    assert!(pending.is_safe_to_open(), "{}", pending.url_to_open());
    let user = relay.create_user();
    relay.decide(pending.user_code(), &user, true);
    let creds = relay.block_on(flow.wait(&pending)).unwrap();
    (creds, user)
}

fn beat() -> Heartbeat {
    Heartbeat {
        version: "test".to_owned(),
        workspaces: 1,
    }
}

#[test]
fn device_flow_then_every_signed_call_works_against_the_relay() {
    let relay = LocalRelay::start();
    let (creds, user) = sign_in(&relay);
    let agent_id = creds.agent_id().to_owned();
    assert!(creds.ca_pem().is_some(), "the pinned CA is kept");
    let client = RelayClient::new(creds, Arc::new(SystemClock)).unwrap();

    let ack = relay.block_on(client.heartbeat(&beat())).unwrap();
    assert!(ack.offline_after_secs > 0);
    assert_eq!(relay.agents_of(&user)[0].workspaces, 1);

    let event = |id: &str| ActivityEvent {
        event_id: id.to_owned(),
        kind: "workspace.added".to_owned(),
        at: 1_700_000_000,
        payload: "{}".to_owned(),
    };
    let batch = ActivityBatch {
        events: vec![event("e-1"), event("e-2")],
    };
    let ack = relay.block_on(client.send_events(&batch)).unwrap();
    assert_eq!(ack.acknowledged, ["e-1", "e-2"]);
    // Sent again (a lost acknowledgement): acknowledged, stored once.
    relay.block_on(client.send_events(&batch)).unwrap();
    assert_eq!(relay.event_count(&agent_id), 2);

    relay.block_on(client.unregister()).unwrap();
    assert!(relay.agents_of(&user).is_empty());
    let after = relay.block_on(client.heartbeat(&beat())).unwrap_err();
    assert!(matches!(after, RelayError::UnknownAgent), "{after}");
    assert!(after.needs_sign_in());
}

#[test]
fn a_skewed_agent_clock_is_corrected_from_the_relays_date_header() {
    let relay = LocalRelay::start();
    for skew in [600_i64, -600, 45, -3600 * 24] {
        let (creds, _) = sign_in(&relay);
        let clock: Arc<dyn Clock> = Arc::new(SkewedClock::new(skew));
        let client = RelayClient::new(creds, clock).unwrap();
        // The first call is refused as stale/future, the offset re-learnt, the retry accepted.
        relay
            .block_on(client.heartbeat(&beat()))
            .unwrap_or_else(|e| panic!("skew {skew}: {e}"));
        let offset = client.clock_offset_secs();
        assert!((offset + skew).abs() <= 2, "skew {skew}, offset {offset}");
        // Later calls are signed right the first time.
        relay.block_on(client.heartbeat(&beat())).unwrap();
        assert!((client.relay_now() - SystemClock.now_unix()).abs() <= 2);
    }
}

#[test]
fn a_relay_certificate_from_another_ca_is_refused() {
    let relay = LocalRelay::start();
    let other = LocalRelay::start();
    let device = this_device(None);
    // Pinned to the wrong CA.
    let err = relay
        .block_on(flow(&relay, Some(ca_pem(&other))).start(&device))
        .unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    // Not pinned: the system roots do not know a local CA either.
    let err = relay
        .block_on(flow(&relay, None).start(&device))
        .unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err}");
}

#[test]
fn denied_and_expired_sign_ins_have_their_own_errors() {
    let relay = LocalRelay::start();
    let f = flow(&relay, Some(ca_pem(&relay)));
    let pending = relay.block_on(f.start(&this_device(None))).unwrap();
    let user = relay.create_user();
    relay.decide(pending.user_code(), &user, false);
    let err = relay.block_on(f.wait(&pending)).unwrap_err();
    assert!(matches!(err, AuthError::Denied), "{err}");

    let short = LocalRelay::start_with(|c| c.device_code_ttl = 2);
    let f = flow(&short, Some(ca_pem(&short)));
    let pending = short.block_on(f.start(&this_device(None))).unwrap();
    assert!(pending.expires_in() <= Duration::from_secs(2));
    let err = short.block_on(f.wait(&pending)).unwrap_err();
    assert!(matches!(err, AuthError::Expired), "{err}");
}

#[test]
fn a_server_offering_only_tls_1_2_is_refused() {
    use std::sync::Arc as StdArc;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    // A local CA and a localhost certificate, served over TLS 1.2 only.
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    let provider = StdArc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(StdArc::new(config));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let handshakes = StdArc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = handshakes.clone();
    runtime.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            if acceptor.accept(tcp).await.is_ok() {
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    });
    let url = RelayUrl::parse(&format!("https://localhost:{port}")).unwrap();
    let f = DeviceFlow::new(url, Some(ca.pem())).unwrap();
    let err = runtime.block_on(f.start(&this_device(None))).unwrap_err();
    assert!(matches!(err, AuthError::Unreachable { .. }), "{err}");
    assert_eq!(
        handshakes.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no TLS 1.2 session may be established"
    );
}
