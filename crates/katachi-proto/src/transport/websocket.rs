//! The tunnel's WebSocket carrier: one byte stream made of the binary messages of an RFC 6455
//! WebSocket, for hops that pass WebSocket upgrades only (Cloudflare and other CDNs).
//!
//! # Contract
//! - Both ends do their own HTTP upgrade (the agent's is signed like every agent call); on `101`
//!   each wraps the upgraded connection in [`WebSocketBytes`] with its role (the agent is the
//!   WebSocket client, so its frames are masked) and runs the same HTTP/2 as over the direct
//!   upgrade. Framing, masking, ping answers and the close handshake are tungstenite's.
//! - A write becomes one binary message of at most [`MAX_MESSAGE_BYTES`]; a message's bytes are
//!   read out in order, across as many reads as it takes. Back-pressure is the WebSocket's: a full
//!   socket makes writes wait, and an unread socket makes the peer's writes wait.
//! - Pings and pongs never reach the byte stream (tungstenite answers pings by itself). A close
//!   message or the end of the connection is the end of the stream. A text message is a protocol
//!   error (`InvalidData`): the tunnel carries binary messages only.
//! - A message or frame larger than [`MAX_MESSAGE_BYTES`] from the peer is an error, so a peer
//!   cannot make this end buffer more than that for one message.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The `Sec-WebSocket-Protocol` of the tunnel's WebSocket carrier.
pub const TUNNEL_WEBSOCKET_PROTOCOL: &str = "katachi-tunnel.v1";

/// Largest binary message either end sends or accepts. The agent's HTTP/2 frames are at most
/// 256 KiB plus a header (`TUNNEL_MAX_FRAME_SIZE` on the relay); larger writes are split.
pub const MAX_MESSAGE_BYTES: usize = 512 * 1024;

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key` (RFC 6455 §4.2.2).
pub fn websocket_accept_key(key: &[u8]) -> String {
    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key)
}

/// A fresh random `Sec-WebSocket-Key` (RFC 6455 §4.1).
pub fn new_websocket_key() -> String {
    tokio_tungstenite::tungstenite::handshake::client::generate_key()
}

/// Which end of the WebSocket this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebSocketRole {
    /// The end that sent the upgrade request (the agent): masks its frames.
    Client,
    /// The end that answered `101` (the relay).
    Server,
}

/// A byte stream over a WebSocket's binary messages (see the module docs).
pub struct WebSocketBytes<S> {
    /// The WebSocket.
    ws: WebSocketStream<S>,
    /// What is left of the message being read.
    pending: Bytes,
    /// The peer closed (or the connection ended): every read returns end of stream.
    read_closed: bool,
}

impl<S> std::fmt::Debug for WebSocketBytes<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketBytes")
            .field("pending", &self.pending.len())
            .field("read_closed", &self.read_closed)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WebSocketBytes<S> {
    /// Wraps `stream`, on which the upgrade to WebSocket has just completed, as `role`.
    pub async fn new(stream: S, role: WebSocketRole) -> Self {
        let role = match role {
            WebSocketRole::Client => Role::Client,
            WebSocketRole::Server => Role::Server,
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(MAX_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_MESSAGE_BYTES));
        Self {
            ws: WebSocketStream::from_raw_socket(stream, role, Some(config)).await,
            pending: Bytes::new(),
            read_closed: false,
        }
    }
}

/// A tungstenite error as an I/O error of the byte stream.
fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => {
            io::Error::new(io::ErrorKind::BrokenPipe, "the WebSocket is closed")
        }
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => io::Error::new(
            io::ErrorKind::ConnectionReset,
            "the WebSocket's connection ended without a close message",
        ),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WebSocketBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(&this.pending[..n]);
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.read_closed {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(bytes))) => this.pending = bytes,
                // Answered by tungstenite (pings) or nothing to do (pongs, raw frames).
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.read_closed = true,
                Some(Ok(Message::Text(_))) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "a text message on the tunnel's WebSocket (binary only)",
                    )))
                }
                Some(Err(e)) => return Poll::Ready(Err(io_error(e))),
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WebSocketBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let ws = &mut self.ws;
        ready!(Pin::new(&mut *ws).poll_ready(cx)).map_err(io_error)?;
        let n = buf.len().min(MAX_MESSAGE_BYTES);
        Pin::new(&mut *ws)
            .start_send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
            .map_err(io_error)?;
        Poll::Ready(Ok(n))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Sends a close message and flushes it; the peer's answer ends its reads.
        Pin::new(&mut self.ws).poll_close(cx).map_err(io_error)
    }
}

#[cfg(test)]
#[path = "websocket_tests.rs"]
mod tests;
