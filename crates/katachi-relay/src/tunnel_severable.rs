//! [`Severable`]: the tunnel's stream, cut from the relay's side on demand.
//!
//! Dropping hyper's HTTP/2 connection handle is not enough to end a tunnel: the connection runs in
//! its own task and lets open streams finish, so a download could outlive its agent's revocation.
//! Cutting the byte stream underneath fails the whole connection at once, every stream included.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// A stream that fails every read and write once its cut signal fires or its sender is dropped.
pub(crate) struct Severable<T> {
    /// The real stream.
    inner: T,
    /// Completes (with a value or because the sender is gone) when the stream is to be cut.
    cut: oneshot::Receiver<()>,
    /// The signal fired (a finished receiver must not be polled again).
    severed: bool,
}

impl<T> Severable<T> {
    /// Wraps `inner`; it is cut when the sender of `cut` fires or is dropped.
    pub(crate) fn new(inner: T, cut: oneshot::Receiver<()>) -> Self {
        Self {
            inner,
            cut,
            severed: false,
        }
    }

    /// `Err` once cut; registers the task to be woken when the cut comes.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if !self.severed && Pin::new(&mut self.cut).poll(cx).is_ready() {
            self.severed = true;
        }
        if self.severed {
            Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "tunnel closed by the relay",
            ))
        } else {
            Ok(())
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Severable<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Severable<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    /// As the real stream: HTTP/2 then writes each frame's header and payload in one call (one TLS
    /// record and one syscall) instead of two.
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Err(e) = this.check(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
