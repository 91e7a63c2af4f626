//! Counting what crosses the tunnel and recording the call exactly once when it is over.
//!
//! A [`PendingCall`] holds the call and a reserved slot of the writer's queue from the moment the
//! call is admitted. It is handed to the response body ([`CountedResponse`]), which counts every
//! data byte it passes to the connection and sends the record when the body ends, fails or is
//! dropped early — so a download cut mid-way records the bytes that had left. If the call never
//! reaches a response (the client cancelled it), dropping the pending call records that too.
//!
//! Sending into a reserved slot never waits and never fails for lack of room, so the record is
//! written from `Drop` without blocking the connection.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc::OwnedPermit;

use super::call::{AuditNote, CallInfo};
use super::writer::FinishedCall;
use crate::api::ErrorCode;

/// How the response body ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyEnd {
    /// Every byte was passed on.
    Complete,
    /// The body itself failed mid-way (e.g. a read error).
    Failed,
    /// The connection dropped the body before its end (client gone, stream reset).
    Cut,
}

/// A call admitted and not yet recorded.
pub(crate) struct PendingCall {
    /// The reserved slot in the writer's queue (`None` once recorded).
    permit: Option<OwnedPermit<FinishedCall>>,
    /// What the call was (`None` once recorded).
    call: Option<CallInfo>,
    /// Request body bytes read so far (shared with [`CountedRequest`]).
    bytes_in: Arc<AtomicU64>,
}

impl PendingCall {
    /// A call that will be recorded into `permit`'s slot.
    pub(crate) fn new(permit: OwnedPermit<FinishedCall>, call: CallInfo) -> Self {
        Self {
            permit: Some(permit),
            call: Some(call),
            bytes_in: Arc::default(),
        }
    }

    /// `body` wrapped so the bytes the handler reads are counted as bytes in.
    pub(crate) fn count_request(&self, body: Body) -> Body {
        Body::new(CountedRequest {
            inner: body,
            count: self.bytes_in.clone(),
        })
    }

    /// `response` with its body wrapped: the call is recorded when that body is over.
    pub(crate) fn attach(mut self, response: Response) -> Response {
        let status = response.status();
        let error = response.extensions().get::<ErrorCode>().copied();
        if let (Some(call), Some(note)) =
            (self.call.as_mut(), response.extensions().get::<AuditNote>())
        {
            if note.command.is_some() {
                call.detail.command.clone_from(&note.command);
            }
            if !note.paths.is_empty() {
                call.paths.clone_from(&note.paths);
            }
        }
        response.map(|inner| {
            Body::new(CountedResponse {
                inner,
                sent: 0,
                status,
                error,
                pending: Some(self),
            })
        })
    }

    /// Sends the record into the reserved slot (once).
    fn record(&mut self, status: Option<u16>, result: String, bytes_out: u64) {
        let (Some(permit), Some(mut call)) = (self.permit.take(), self.call.take()) else {
            return;
        };
        call.detail.status = status;
        call.detail.bytes_in = self.bytes_in.load(Ordering::Relaxed);
        permit.send(FinishedCall {
            call,
            result,
            bytes_out,
        });
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        // no response was produced: the client went away while the handler ran (a write may
        // still have happened, so this is recorded too)
        self.record(None, "request.cancelled".to_owned(), 0);
    }
}

/// The result recorded for a call: the error code the caller got, else how the body ended.
fn result_of(status: StatusCode, error: Option<ErrorCode>, end: BodyEnd) -> String {
    if let Some(code) = error {
        return code.as_str().to_owned();
    }
    if status.is_client_error() || status.is_server_error() {
        return format!("http.{}", status.as_u16());
    }
    match end {
        BodyEnd::Complete => "ok".to_owned(),
        BodyEnd::Failed => "response.failed".to_owned(),
        BodyEnd::Cut => "response.cut_short".to_owned(),
    }
}

/// A response body that counts the data bytes it passes on and records the call when it is over.
struct CountedResponse {
    /// The handler's body.
    inner: Body,
    /// Data bytes passed to the connection so far.
    sent: u64,
    /// The status sent.
    status: StatusCode,
    /// The error code, for an API error response.
    error: Option<ErrorCode>,
    /// The call (`None` once recorded).
    pending: Option<PendingCall>,
}

impl CountedResponse {
    fn finish(&mut self, end: BodyEnd) {
        if let Some(mut pending) = self.pending.take() {
            let result = result_of(self.status, self.error, end);
            pending.record(Some(self.status.as_u16()), result, self.sent);
        }
    }
}

impl HttpBody for CountedResponse {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        match &polled {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    // counted when handed to the connection: what is counted has left or is
                    // about to (over by at most what the transport buffers when cut)
                    self.sent += data.len() as u64;
                }
            }
            Some(Err(_)) => self.finish(BodyEnd::Failed),
            None => self.finish(BodyEnd::Complete),
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for CountedResponse {
    fn drop(&mut self) {
        // The connection may stop polling once the body says it is at its end (HTTP/2 sets
        // END_STREAM without a last poll), so that still counts as complete.
        let end = if self.inner.is_end_stream() {
            BodyEnd::Complete
        } else {
            BodyEnd::Cut
        };
        self.finish(end);
    }
}

/// A request body that counts the data bytes the handler reads.
struct CountedRequest {
    /// The body as it arrived.
    inner: Body,
    /// Shared with the pending call.
    count: Arc<AtomicU64>,
}

impl HttpBody for CountedRequest {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &polled {
            if let Some(data) = frame.data_ref() {
                self.count.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_is_the_error_code_else_how_the_body_ended() {
        let ok = StatusCode::OK;
        assert_eq!(result_of(ok, None, BodyEnd::Complete), "ok");
        assert_eq!(result_of(ok, None, BodyEnd::Cut), "response.cut_short");
        assert_eq!(result_of(ok, None, BodyEnd::Failed), "response.failed");
        assert_eq!(
            result_of(
                StatusCode::NOT_FOUND,
                Some(ErrorCode::PathNotFound),
                BodyEnd::Cut
            ),
            "path.not_found"
        );
        assert_eq!(
            result_of(StatusCode::BAD_GATEWAY, None, BodyEnd::Complete),
            "http.502"
        );
    }
}
