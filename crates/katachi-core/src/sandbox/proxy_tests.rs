use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;

/// A fixed name table that counts lookups (a refused name must never be looked up).
struct FixedResolver {
    table: HashMap<String, Vec<IpAddr>>,
    lookups: Arc<AtomicUsize>,
}

impl Resolver for FixedResolver {
    fn resolve(&self, host: &str, _port: u16) -> Resolution {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        let found = self.table.get(host).cloned();
        Box::pin(async move {
            found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
        })
    }
}

/// An upstream that answers every connection with `hello` and echoes one read back.
async fn upstream() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                s.write_all(b"hello").await.unwrap();
                let mut buf = [0u8; 64];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let _ = s.write_all(&buf[..n]).await;
            });
        }
    });
    port
}

struct Fx {
    proxy: EgressProxy,
    port: u16,
    lookups: Arc<AtomicUsize>,
}

fn start(patterns: &[&str], table: &[(&str, &str)]) -> Fx {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let lookups = Arc::new(AtomicUsize::new(0));
    let resolver = FixedResolver {
        table: table
            .iter()
            .map(|(n, a)| ((*n).to_owned(), vec![a.parse().unwrap()]))
            .collect(),
        lookups: lookups.clone(),
    };
    let patterns = patterns
        .iter()
        .map(|p| HostPattern::parse(p).unwrap())
        .collect();
    let proxy = EgressProxy::start(l, patterns, None, Arc::new(resolver)).unwrap();
    Fx {
        proxy,
        port,
        lookups,
    }
}

/// Sends `head`, returns the proxy's answer up to the end of its head (and what follows, if any).
async fn ask(port: u16, head: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while find_head_end(&got).is_none() {
        let n = s.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

#[tokio::test]
async fn allowed_host_is_tunnelled_and_logged() {
    let up = upstream().await;
    let fx = start(
        &[&format!("pkg.test:{up}"), &format!("127.0.0.1:{up}")],
        &[("pkg.test", "127.0.0.1")],
    );
    let (mut s, answer) = ask(
        fx.port,
        &format!("CONNECT pkg.test:{up} HTTP/1.1\r\nHost: pkg.test\r\n\r\nping"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let mut all = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    let mut buf = [0u8; 64];
    while !all.contains("helloping") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "tunnel closed early: {all:?}");
        all.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let log = fx.proxy.finish();
    assert_eq!(log.len(), 1);
    assert!(log[0].allowed && log[0].denied.is_none(), "{log:?}");
    assert_eq!(log[0].to_string(), format!("allowed pkg.test:{up}"));
    assert_eq!(
        log[0].address.as_deref(),
        Some(format!("127.0.0.1:{up}").as_str())
    );
}

#[tokio::test]
async fn host_not_on_the_list_is_refused_without_a_lookup() {
    let fx = start(&["crates.io"], &[("evil.com", "93.184.215.14")]);
    let (_s, answer) = ask(fx.port, "CONNECT evil.com:443 HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    assert!(
        answer.contains(r#"X-Katachi-Denied: {"kind":"network","target":"evil.com:443""#),
        "{answer}"
    );
    assert_eq!(
        fx.lookups.load(Ordering::SeqCst),
        0,
        "a refused name was resolved"
    );
    let log = fx.proxy.finish();
    assert_eq!(
        log[0].to_string(),
        "denied evil.com:443: not in the allowed hosts (add --allow-host evil.com)"
    );
}

#[tokio::test]
async fn allowed_name_resolving_to_loopback_is_refused() {
    let up = upstream().await;
    let fx = start(&[&format!("pkg.test:{up}")], &[("pkg.test", "127.0.0.1")]);
    let (_s, answer) = ask(fx.port, &format!("CONNECT pkg.test:{up} HTTP/1.1\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let log = fx.proxy.finish();
    assert!(!log[0].allowed);
    assert!(
        log[0].reason.as_deref().unwrap().contains("127.0.0.1"),
        "{log:?}"
    );
    assert_eq!(fx.lookups.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn plain_http_and_garbage_are_refused() {
    let fx = start(&["crates.io"], &[]);
    let (_s, answer) = ask(
        fx.port,
        "GET http://crates.io/ HTTP/1.1\r\nHost: crates.io\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    let (_s, answer) = ask(fx.port, "CONNECT crates.io HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // a client that sends an endless head is cut off, not buffered forever
    let mut s = TcpStream::connect(("127.0.0.1", fx.port)).await.unwrap();
    let junk = vec![b'a'; MAX_HEAD * 2];
    let _ = s.write_all(&junk).await;
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "{n:?}");
    let log = fx.proxy.finish();
    assert_eq!(log.iter().filter(|a| !a.allowed).count(), 2, "{log:?}");
}
