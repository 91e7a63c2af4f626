//! Writes handed to a writer task, so that a burst of small writes leaves in one syscall.
//!
//! An HTTP/2 server writes one DATA frame at a time and flushes after each (h2 does), and a
//! browser accepts frames of 16 KiB: under TLS that is one `writev` of 16 KiB per frame, and on
//! the relay the kernel's per-packet work for those writes was a third of its CPU while a download
//! streamed. [`WriteBehind`] sits between TLS and the socket and works as the socket's send buffer
//! does: a write copies the bytes into a queue (up to [`WRITE_BEHIND_BYTES`]) and returns; a writer
//! task of its own moves the queue to the socket, everything queued since its last write in one
//! syscall. Flushing is what flushing a TCP socket is: nothing to wait for, the bytes are on their
//! way. Back-pressure is kept: a full queue makes writes wait until the writer has taken it.
//!
//! Errors of the socket reach the next write, flush or shutdown. Shutdown writes everything queued,
//! then shuts the socket's write side. When the stream is dropped, what is queued is still written
//! (for at most [`DRAIN_ON_DROP`]), as the kernel would for a closed socket, then the writer ends.
//! The queue's memory is released after [`IDLE_RELEASE`] without writes, so idle connections
//! (thousands on a relay) hold none.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::Notify;

/// Most bytes queued or being written before writes wait for the writer task.
pub const WRITE_BEHIND_BYTES: usize = 256 * 1024;
/// How long the queue's memory is kept after the last write.
pub const IDLE_RELEASE: Duration = Duration::from_millis(500);
/// How long bytes still queued when the stream is dropped may take to leave.
pub const DRAIN_ON_DROP: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
struct State {
    /// Bytes accepted from the owner and not yet taken by the writer.
    queued: BytesMut,
    /// Bytes the writer has taken and not finished writing.
    in_flight: usize,
    /// The socket failed: every later call gets this.
    error: Option<(io::ErrorKind, String)>,
    /// The owner waiting for room in the queue or for the shutdown to finish.
    owner: Option<Waker>,
    /// The owner asked for shutdown: no more writes.
    shutdown: bool,
    /// The writer has shut the socket's write side (or ended).
    shut: bool,
    /// The owner is gone.
    dropped: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer: bytes queued, shutdown asked, owner dropped.
    writer: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // the state stays consistent under every panic point (none holds the lock across one)
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl State {
    fn error(&self) -> Option<io::Error> {
        self.error
            .as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }

    fn wake_owner(&mut self) {
        if let Some(waker) = self.owner.take() {
            waker.wake();
        }
    }
}

/// A stream read from `R` whose writes go through a queue to a writer task (see the module docs).
#[derive(Debug)]
pub struct WriteBehind<R> {
    read: R,
    shared: Arc<Shared>,
}

impl<R> WriteBehind<R> {
    /// Reads from `read`; spawns the task that writes to `write` on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, as `tokio::spawn` does.
    pub fn spawn<W>(read: R, write: W) -> Self
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        tokio::spawn(run_writer(shared.clone(), write));
        Self { read, shared }
    }

    /// The read side.
    pub fn get_ref(&self) -> &R {
        &self.read
    }

    /// Bytes of queue memory held right now (0 when idle).
    pub fn queue_capacity(&self) -> usize {
        self.shared.lock().queued.capacity()
    }
}

impl<R> Drop for WriteBehind<R> {
    fn drop(&mut self) {
        self.shared.lock().dropped = true;
        self.shared.writer.notify_one();
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WriteBehind<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().read).poll_read(cx, out)
    }
}

impl<R: Unpin> AsyncWrite for WriteBehind<R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.shared.lock();
        if let Some(e) = st.error() {
            return Poll::Ready(Err(e));
        }
        if st.shutdown {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "write after shutdown",
            )));
        }
        let room = WRITE_BEHIND_BYTES.saturating_sub(st.queued.len() + st.in_flight);
        if room == 0 {
            st.owner = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let was_empty = st.queued.is_empty();
        let take = total.min(room);
        st.queued.reserve(take);
        let mut left = take;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let n = buf.len().min(left);
            st.queued.put_slice(&buf[..n]);
            left -= n;
        }
        drop(st);
        if was_empty {
            self.shared.writer.notify_one();
        }
        Poll::Ready(Ok(take))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // as for a TCP socket: queued bytes are on their way, nothing to wait for
        match self.shared.lock().error() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut st = self.shared.lock();
        if st.shut {
            return Poll::Ready(st.error().map_or(Ok(()), Err));
        }
        let ask = !st.shutdown;
        st.shutdown = true;
        st.owner = Some(cx.waker().clone());
        drop(st);
        if ask {
            self.shared.writer.notify_one();
        }
        Poll::Pending
    }
}

/// What the writer does next, decided under the lock.
enum Next {
    Write,
    Wait,
    Shutdown,
    Finish,
}

/// The writer task: moves the queue to `write` until the owner shuts down, drops, or the socket
/// fails.
async fn run_writer<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut write: W) {
    // The writer's own buffer, swapped with the queue: while it is written the owner may queue
    // more, within WRITE_BEHIND_BYTES counting what is being written.
    let mut out = BytesMut::new();
    loop {
        let next = {
            let mut st = shared.lock();
            if !st.queued.is_empty() {
                out.clear();
                std::mem::swap(&mut st.queued, &mut out);
                st.in_flight = out.len();
                Next::Write
            } else if st.dropped {
                Next::Finish
            } else if st.shutdown {
                Next::Shutdown
            } else {
                Next::Wait
            }
        };
        match next {
            Next::Write => {
                if let Err(e) = write_out(&shared, &mut write, &mut out).await {
                    fail(&shared, &e);
                    return;
                }
                let mut st = shared.lock();
                st.in_flight = 0;
                st.wake_owner();
            }
            Next::Wait => {
                if out.capacity() == 0 && shared.lock().queued.capacity() == 0 {
                    shared.writer.notified().await;
                } else {
                    tokio::select! {
                        () = shared.writer.notified() => {}
                        () = tokio::time::sleep(IDLE_RELEASE) => {
                            out = BytesMut::new();
                            let mut st = shared.lock();
                            if st.queued.is_empty() {
                                st.queued = BytesMut::new();
                            }
                        }
                    }
                }
            }
            Next::Shutdown => {
                let result = write.shutdown().await;
                let mut st = shared.lock();
                if let Err(e) = result {
                    st.error = Some((e.kind(), e.to_string()));
                }
                st.shut = true;
                st.queued = BytesMut::new();
                st.wake_owner();
                return;
            }
            Next::Finish => return,
        }
    }
}

/// Writes all of `out`. Should the owner drop the stream meanwhile, what is left (and queued)
/// gets [`DRAIN_ON_DROP`] to leave.
async fn write_out<W: AsyncWrite + Unpin>(
    shared: &Shared,
    write: &mut W,
    out: &mut BytesMut,
) -> io::Result<()> {
    if shared.lock().dropped {
        return drain(shared, write, out).await;
    }
    while !out.is_empty() {
        tokio::select! {
            result = write.write_all_buf(out) => result?,
            () = shared.writer.notified() => {
                // more bytes queued (the loop above takes them next), or the owner dropped
                if shared.lock().dropped {
                    return drain(shared, write, out).await;
                }
            }
        }
    }
    Ok(())
}

/// The owner is gone: writes `out` and the queue within [`DRAIN_ON_DROP`].
async fn drain<W: AsyncWrite + Unpin>(
    shared: &Shared,
    write: &mut W,
    out: &mut BytesMut,
) -> io::Result<()> {
    let rest = std::mem::take(&mut shared.lock().queued);
    let all = async {
        write.write_all_buf(out).await?;
        write.write_all(&rest).await
    };
    match tokio::time::timeout(DRAIN_ON_DROP, all).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the peer did not take the last bytes",
        )),
    }
}

fn fail(shared: &Shared, e: &io::Error) {
    let mut st = shared.lock();
    st.error = Some((e.kind(), e.to_string()));
    st.queued = BytesMut::new();
    st.shut = true;
    st.wake_owner();
}

#[cfg(test)]
#[path = "write_behind_tests.rs"]
mod tests;
