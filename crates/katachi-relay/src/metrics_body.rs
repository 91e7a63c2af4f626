//! [`CountedBody`]: a body that adds the length of each data frame passing through it to a counter
//! (the tunnel's bytes to and from agents). Frames pass unchanged; trailers are not counted.

use std::pin::Pin;
use std::task::{Context, Poll};

use hyper::body::{Body, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;

/// A body counting its data bytes into a counter as they are read.
#[derive(Debug)]
pub struct CountedBody<B> {
    /// The body read.
    inner: B,
    /// Where its bytes are added.
    bytes: Counter,
}

impl<B> CountedBody<B> {
    /// Counts `inner`'s data bytes into `bytes`.
    pub(crate) fn new(inner: B, bytes: Counter) -> Self {
        Self { inner, bytes }
    }
}

impl<B> Body for CountedBody<B>
where
    B: Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                use hyper::body::Buf;
                self.bytes.inc_by(data.remaining() as u64);
            }
        }
        polled
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
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn every_data_byte_is_counted_once_and_passes_unchanged() {
        let counter = Counter::default();
        let chunks: Vec<Result<Frame<hyper::body::Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(hyper::body::Bytes::from_static(b"hello "))),
            Ok(Frame::data(hyper::body::Bytes::from_static(b"world"))),
        ];
        let inner = http_body_util::StreamBody::new(futures::stream::iter(chunks));
        let body = CountedBody::new(inner, counter.clone());
        let collected = body.collect().await.unwrap().to_bytes();
        assert_eq!(&collected[..], b"hello world");
        assert_eq!(counter.get(), 11);
    }
}
