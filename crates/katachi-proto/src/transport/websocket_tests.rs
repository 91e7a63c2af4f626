use futures::SinkExt;
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

async fn pair() -> (WebSocketBytes<DuplexStream>, WebSocketBytes<DuplexStream>) {
    let (a, b) = duplex(64 * 1024);
    (
        WebSocketBytes::new(a, WebSocketRole::Client).await,
        WebSocketBytes::new(b, WebSocketRole::Server).await,
    )
}

/// The raw WebSocket a peer speaks, to send what `WebSocketBytes` never would.
async fn raw_client(stream: DuplexStream) -> WebSocketStream<DuplexStream> {
    WebSocketStream::from_raw_socket(stream, Role::Client, None).await
}

#[tokio::test]
async fn bytes_cross_in_order_both_ways_and_large_writes_are_split_into_messages() {
    let (mut client, mut server) = pair().await;
    // 3 MiB: larger than one message, larger than the duplex buffer (back-pressure both ways).
    let data: Vec<u8> = (0..3u32 << 20).map(|i| (i % 253) as u8).collect();
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        client.write_all(&sent).await.unwrap();
        client.flush().await.unwrap();
        client.write_all(b"and back?").await.unwrap();
        client.flush().await.unwrap();
        let mut answer = [0u8; 3];
        client.read_exact(&mut answer).await.unwrap();
        client.shutdown().await.unwrap();
        answer
    });
    let mut got = vec![0u8; data.len() + 9];
    server.read_exact(&mut got).await.unwrap();
    assert!(got[..data.len()] == data[..], "bytes changed on the way");
    assert_eq!(&got[data.len()..], b"and back?");
    server.write_all(b"yes").await.unwrap();
    server.flush().await.unwrap();
    // The client's shutdown sent a close: the server's stream ends.
    let mut rest = Vec::new();
    server.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    assert_eq!(&writer.await.unwrap(), b"yes");
}

#[tokio::test]
async fn pings_and_pongs_never_reach_the_byte_stream_and_pings_are_answered() {
    let (a, b) = duplex(64 * 1024);
    let mut peer = raw_client(a).await;
    let mut server = WebSocketBytes::new(b, WebSocketRole::Server).await;
    peer.send(Message::Ping(Bytes::from_static(b"are you there")))
        .await
        .unwrap();
    peer.send(Message::Pong(Bytes::from_static(b"unasked")))
        .await
        .unwrap();
    peer.send(Message::Binary(Bytes::from_static(b"data")))
        .await
        .unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"data");
    // The ping's answer goes out with the server's next write.
    server.write_all(b"!").await.unwrap();
    server.flush().await.unwrap();
    let first = futures::StreamExt::next(&mut peer).await.unwrap().unwrap();
    assert_eq!(first, Message::Pong(Bytes::from_static(b"are you there")));
}

#[tokio::test]
async fn a_text_message_is_a_protocol_error() {
    let (a, b) = duplex(64 * 1024);
    let mut peer = raw_client(a).await;
    let mut server = WebSocketBytes::new(b, WebSocketRole::Server).await;
    peer.send(Message::text("GET / HTTP/1.1")).await.unwrap();
    let mut buf = [0u8; 16];
    let e = server.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
}

#[tokio::test]
async fn a_message_over_the_limit_is_refused_not_buffered() {
    let (a, b) = duplex(64 * 1024);
    let mut peer = raw_client(a).await;
    let mut server = WebSocketBytes::new(b, WebSocketRole::Server).await;
    let big = Bytes::from(vec![7u8; MAX_MESSAGE_BYTES + 1]);
    let sender = tokio::spawn(async move {
        let _ = peer.send(Message::Binary(big)).await;
        peer
    });
    let mut buf = vec![0u8; 1024];
    let e = server.read(&mut buf).await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    drop(server);
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn a_dropped_connection_ends_the_stream() {
    let (a, b) = duplex(1024);
    let mut server = WebSocketBytes::new(b, WebSocketRole::Server).await;
    drop(a);
    let mut buf = [0u8; 8];
    // Ends without a close handshake: an error or the end of the stream, never data.
    match server.read(&mut buf).await {
        Ok(n) => assert_eq!(n, 0),
        Err(e) => assert!(matches!(
            e.kind(),
            io::ErrorKind::UnexpectedEof
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
        )),
    }
}

#[test]
fn the_accept_key_is_rfc_6455s() {
    // RFC 6455 §1.3's example.
    assert_eq!(
        websocket_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
    assert_ne!(new_websocket_key(), new_websocket_key());
}
