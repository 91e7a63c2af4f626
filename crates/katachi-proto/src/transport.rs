//! A read-ahead buffer under TLS, allocated only while data flows.
//!
//! rustls asks its transport for at most 4 KiB per read, so a TLS stream fed straight from a TCP
//! socket makes four or five `read` syscalls per 16 KiB record: on the relay, the tunnel's largest
//! syscall cost while a download streams through it. [`ReadAhead`] sits between the socket and
//! TLS: it reads up to [`READ_AHEAD_BYTES`] per syscall and hands rustls its 4 KiB pieces from
//! memory. The buffer exists only while bytes arrive: it is dropped as soon as the socket has
//! nothing more to give (`Pending`) and the buffer is empty, so an idle connection (thousands of
//! them on a relay) holds nothing. Reads as large as the buffer bypass it. Writes pass through.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

mod websocket;
mod write_behind;
pub use websocket::{
    new_websocket_key, websocket_accept_key, WebSocketBytes, WebSocketRole, MAX_MESSAGE_BYTES,
    TUNNEL_WEBSOCKET_PROTOCOL,
};
pub use write_behind::{WriteBehind, DRAIN_ON_DROP, IDLE_RELEASE, WRITE_BEHIND_BYTES};

/// Most bytes taken from the socket per read.
pub const READ_AHEAD_BYTES: usize = 64 * 1024;

/// A stream whose small reads are served from a read-ahead buffer (see the module docs).
#[derive(Debug)]
pub struct ReadAhead<S> {
    inner: S,
    buf: BytesMut,
}

impl<S> ReadAhead<S> {
    /// Wraps `inner`; no buffer is allocated until data arrives.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            buf: BytesMut::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Bytes of buffer held right now (0 when idle).
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ReadAhead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.is_empty() {
            if out.remaining() >= READ_AHEAD_BYTES {
                // a large read gains nothing from the buffer: straight into the caller's
                this.buf = BytesMut::new();
                return Pin::new(&mut this.inner).poll_read(cx, out);
            }
            if this.buf.capacity() < READ_AHEAD_BYTES {
                // empty and unique: reuses its allocation when it has one
                this.buf.reserve(READ_AHEAD_BYTES);
            }
            match tokio_util::io::poll_read_buf(Pin::new(&mut this.inner), cx, &mut this.buf) {
                Poll::Pending => {
                    // nothing flows now: hold no memory while waiting
                    this.buf = BytesMut::new();
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => {
                    this.buf = BytesMut::new();
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(0)) => {
                    this.buf = BytesMut::new();
                    return Poll::Ready(Ok(()));
                }
                Poll::Ready(Ok(_)) => {}
            }
        }
        let n = this.buf.len().min(out.remaining());
        out.put_slice(&this.buf[..n]);
        this.buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ReadAhead<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn small_reads_return_every_byte_in_order() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let sent = data.clone();
        let writer = tokio::spawn(async move {
            tx.write_all(&sent).await.unwrap();
        });
        let mut reader = ReadAhead::new(rx);
        let mut got = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = reader.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
        }
        writer.await.unwrap();
        assert_eq!(got, data);
    }

    #[tokio::test]
    async fn an_idle_stream_holds_no_buffer() {
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        let mut reader = ReadAhead::new(rx);
        assert_eq!(reader.buffer_capacity(), 0);
        tx.write_all(&[1u8; 10_000]).await.unwrap();
        let mut small = [0u8; 100];
        reader.read_exact(&mut small).await.unwrap();
        // data is buffered while it flows
        assert!(
            reader.buffer_capacity() >= 9_900,
            "{}",
            reader.buffer_capacity()
        );
        let mut rest = vec![0u8; 9_900];
        reader.read_exact(&mut rest).await.unwrap();
        // the next read waits for the peer: the buffer is released while it waits
        let pending = tokio::time::timeout(
            std::time::Duration::from_millis(20),
            reader.read(&mut small),
        )
        .await;
        assert!(pending.is_err(), "a read with nothing sent returned");
        assert_eq!(reader.buffer_capacity(), 0);
    }

    #[tokio::test]
    async fn a_large_read_goes_straight_to_the_caller() {
        let (mut tx, rx) = tokio::io::duplex(256 * 1024);
        tx.write_all(&[9u8; 100_000]).await.unwrap();
        drop(tx);
        let mut reader = ReadAhead::new(rx);
        let mut big = vec![0u8; READ_AHEAD_BYTES];
        let n = reader.read(&mut big).await.unwrap();
        assert!(n > 0);
        assert_eq!(reader.buffer_capacity(), 0, "a large read used the buffer");
        let mut all = big[..n].to_vec();
        reader.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, vec![9u8; 100_000]);
    }

    #[tokio::test]
    async fn writes_pass_through() {
        let (a, mut b) = tokio::io::duplex(1024);
        let mut wrapped = ReadAhead::new(a);
        wrapped.write_all(b"hello").await.unwrap();
        wrapped.flush().await.unwrap();
        let mut got = [0u8; 5];
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
    }
}
