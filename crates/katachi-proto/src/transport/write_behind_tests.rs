use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A writer that counts the write calls that reached it.
struct Counting<W> {
    inner: W,
    writes: Arc<AtomicUsize>,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for Counting<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(_))) {
            this.writes.fetch_add(1, Ordering::SeqCst);
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn every_byte_arrives_in_order_through_small_writes_and_a_full_queue() {
    let (near, mut far) = tokio::io::duplex(64 * 1024);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    let data = pattern(3 * WRITE_BEHIND_BYTES + 12_345);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        for piece in sent.chunks(1000) {
            stream.write_all(piece).await.unwrap();
            stream.flush().await.unwrap();
        }
        stream.shutdown().await.unwrap();
    });
    let mut got = Vec::new();
    far.read_to_end(&mut got).await.unwrap();
    writer.await.unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "bytes arrived out of order or changed");
}

#[tokio::test]
async fn a_burst_of_frames_written_without_yielding_leaves_in_one_write() {
    let (near, mut far) = tokio::io::duplex(1024 * 1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let counting = Counting {
        inner: near,
        writes: writes.clone(),
    };
    let mut stream = WriteBehind::spawn(tokio::io::empty(), counting);
    // 16 frames of 16 KiB, each flushed, as h2 writes a 256 KiB chunk to a browser; on this
    // single-threaded runtime the writer runs only once the burst is queued
    let frame = [7u8; 16 * 1024];
    for _ in 0..16 {
        stream.write_all(&frame).await.unwrap();
        stream.flush().await.unwrap();
    }
    let mut got = vec![0u8; 16 * frame.len()];
    far.read_exact(&mut got).await.unwrap();
    assert_eq!(
        writes.load(Ordering::SeqCst),
        1,
        "the burst was not coalesced"
    );
}

#[tokio::test]
async fn a_peer_that_does_not_read_makes_writes_wait_once_the_queue_is_full() {
    let (near, mut far) = tokio::io::duplex(16 * 1024);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    let chunk = vec![1u8; 64 * 1024];
    let mut accepted = 0usize;
    loop {
        match tokio::time::timeout(Duration::from_millis(50), stream.write(&chunk)).await {
            Ok(Ok(n)) => accepted += n,
            Ok(Err(e)) => panic!("write failed: {e}"),
            Err(_) => break,
        }
        assert!(accepted <= 4 * WRITE_BEHIND_BYTES, "no back-pressure");
    }
    // the queue and the pipe's 16 KiB hold what was accepted, no more
    assert!(accepted >= WRITE_BEHIND_BYTES - chunk.len(), "{accepted}");
    assert!(
        accepted <= WRITE_BEHIND_BYTES + 16 * 1024 + chunk.len(),
        "{accepted}"
    );
    // once the peer reads, the writes go on
    let reader = tokio::spawn(async move {
        let mut sink = Vec::new();
        far.read_to_end(&mut sink).await.unwrap();
        sink.len()
    });
    stream.write_all(&chunk).await.unwrap();
    stream.shutdown().await.unwrap();
    drop(stream);
    assert_eq!(reader.await.unwrap(), accepted + chunk.len());
}

#[tokio::test]
async fn a_failed_socket_fails_the_next_write_and_flush() {
    let (near, far) = tokio::io::duplex(1024);
    drop(far);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    // the first write is queued; the writer finds the peer gone
    stream.write_all(b"hello").await.unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = stream.write_all(b"again").await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("writes kept succeeding to a closed peer");
    assert_eq!(failed.kind(), io::ErrorKind::BrokenPipe, "{failed}");
    assert!(stream.flush().await.is_err());
    assert!(stream.shutdown().await.is_err());
}

#[tokio::test]
async fn bytes_queued_when_the_stream_is_dropped_still_arrive_then_the_peer_sees_the_end() {
    let (near, mut far) = tokio::io::duplex(4 * 1024);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    let data = pattern(100_000);
    stream.write_all(&data).await.unwrap();
    drop(stream);
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), far.read_to_end(&mut got))
        .await
        .expect("the end never came")
        .unwrap();
    assert!(got == data);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_stream_whose_peer_never_reads_is_given_up_after_the_grace_period() {
    let (near, far) = tokio::io::duplex(1024);
    let writes = Arc::new(AtomicUsize::new(0));
    let mut stream = WriteBehind::spawn(
        tokio::io::empty(),
        Counting {
            inner: near,
            writes: writes.clone(),
        },
    );
    stream.write_all(&[0u8; 8 * 1024]).await.unwrap();
    let shared = stream.shared.clone();
    drop(stream);
    tokio::time::sleep(DRAIN_ON_DROP + Duration::from_secs(1)).await;
    // the writer ended: it held the only other reference
    assert_eq!(Arc::strong_count(&shared), 1, "the writer still waits");
    drop(far);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stream_releases_its_queue_memory() {
    let (near, mut far) = tokio::io::duplex(1024 * 1024);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    stream.write_all(&[5u8; 100_000]).await.unwrap();
    let mut got = vec![0u8; 100_000];
    far.read_exact(&mut got).await.unwrap();
    tokio::time::sleep(IDLE_RELEASE + Duration::from_millis(100)).await;
    assert_eq!(stream.queue_capacity(), 0);
    // and it still works afterwards
    stream.write_all(b"later").await.unwrap();
    let mut later = [0u8; 5];
    far.read_exact(&mut later).await.unwrap();
    assert_eq!(&later, b"later");
}

#[tokio::test]
async fn reads_come_from_the_read_side() {
    let (mut tx, rx) = tokio::io::duplex(1024);
    let (near, _far) = tokio::io::duplex(1024);
    let mut stream = WriteBehind::spawn(rx, near);
    tx.write_all(b"ping").await.unwrap();
    let mut got = [0u8; 4];
    stream.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"ping");
}

#[tokio::test]
async fn writing_after_shutdown_is_refused() {
    let (near, _far) = tokio::io::duplex(1024);
    let mut stream = WriteBehind::spawn(tokio::io::empty(), near);
    stream.shutdown().await.unwrap();
    let e = stream.write_all(b"late").await.unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::BrokenPipe);
}
