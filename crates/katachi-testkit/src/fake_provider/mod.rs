//! A fake AI provider on `127.0.0.1:0`: OpenAI `POST /v1/chat/completions` and Anthropic
//! `POST /v1/messages`, streamed over SSE exactly as the real services frame them, replying from a
//! script of provider-neutral answers ([`FakeAnswer`]) and errors ([`FakeError`]).
//!
//! # Contract
//! - Each request takes the next scripted reply, whichever wire it came in on; with none left it
//!   gets a `500` whose message says so (a test that under-scripts fails loudly, never hangs).
//! - Every request is recorded (path, headers, JSON body) before it is answered ([`FakeProvider::requests`]).
//! - OpenAI: a role chunk, one chunk per text piece, tool calls as an opening chunk (id, name) plus
//!   one chunk per argument piece, a `finish_reason` chunk, a usage chunk only when the request set
//!   `stream_options.include_usage`, then `data: [DONE]`. Anthropic: `message_start`, `ping`,
//!   `content_block_start/delta/stop` (`text_delta`, `input_json_delta`), `message_delta`
//!   (stop reason, usage), `message_stop`.
//! - [`Ending`] cuts, fails or holds a stream; a held stream sends SSE comments every 50 ms so a
//!   client that went away is seen at once ([`FakeProvider::wait_for_disconnects`]).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use katachi_testkit::{FakeAnswer, FakeProvider};
//! let fake = FakeProvider::start([FakeAnswer::text(["Hel", "lo"]).usage(10, 2)]).await?;
//! let base = fake.openai_base_url(); // http://127.0.0.1:<port>/v1
//! # Ok(()) }
//! ```

mod script;
mod wire;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{mpsc, watch};

pub use script::{Ending, FakeAnswer, FakeError, FakeReply, FakeStop, FakeToolCall};
pub use wire::Wire;

/// How often a held stream sends an SSE comment (which also detects a client that went away).
const HOLD_PING: Duration = Duration::from_millis(50);

/// How long a stream that is about to be cut waits for its last frames to be written.
const FLUSH_GRACE: Duration = Duration::from_millis(100);

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The protocol it came in on.
    pub wire: Wire,
    /// Its path (`/v1/chat/completions`, `/v1/messages`).
    pub path: String,
    /// Its headers, names lower-case (a repeated header keeps its last value).
    pub headers: BTreeMap<String, String>,
    /// Its JSON body (`Value::Null` when the body was not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }
}

/// The state shared by the server's handlers and the test.
struct Shared {
    script: Mutex<VecDeque<FakeReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    /// Set once by [`FakeProvider::release`]: held streams go on (and later ones do not hold).
    released: watch::Sender<bool>,
    /// How many streams reached their hold point.
    holding: watch::Sender<usize>,
    /// How many streams found their client gone before they ended.
    disconnects: watch::Sender<usize>,
    /// When each content chunk was handed to its connection, in order (for latency figures).
    content_sent: Mutex<Vec<Instant>>,
}

/// A running fake provider. Dropping it stops accepting connections and releases held streams.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl FakeProvider {
    /// Starts a fake provider on `127.0.0.1:0` that answers with `script`, in order.
    ///
    /// # Errors
    /// The loopback listener could not be bound.
    pub async fn start<I, R>(script: I) -> std::io::Result<Self>
    where
        I: IntoIterator<Item = R>,
        R: Into<FakeReply>,
    {
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into_iter().map(Into::into).collect()),
            requests: Mutex::new(Vec::new()),
            released: watch::Sender::new(false),
            holding: watch::Sender::new(0),
            disconnects: watch::Sender::new(0),
            content_sent: Mutex::new(Vec::new()),
        });
        let app = Router::new()
            .route("/v1/chat/completions", post(openai))
            .route("/v1/messages", post(anthropic))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            // ends only when the task is aborted (FakeProvider dropped)
            // each SSE event leaves at once, as a provider's streaming endpoint flushes it (with
            // Nagle's algorithm a small event waits for the client's delayed ACK, ~40 ms)
            let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            addr,
            shared,
            server,
        })
    }

    /// The OpenAI-compatible base URL (`http://127.0.0.1:<port>/v1`).
    pub fn openai_base_url(&self) -> url::Url {
        self.url("/v1")
    }

    /// The Anthropic base URL (`http://127.0.0.1:<port>`).
    pub fn anthropic_base_url(&self) -> url::Url {
        self.url("/")
    }

    fn url(&self, path: &str) -> url::Url {
        let text = format!("http://{}{path}", self.addr);
        match url::Url::parse(&text) {
            Ok(url) => url,
            // a socket address always makes a valid URL
            Err(e) => unreachable!("fake provider URL {text}: {e}"),
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Appends a reply to the script.
    pub fn push(&self, reply: impl Into<FakeReply>) {
        lock(&self.shared.script).push_back(reply.into());
    }

    /// The replies not served yet.
    pub fn remaining_replies(&self) -> usize {
        lock(&self.shared.script).len()
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Lets held streams go on; streams that reach a hold later do not wait.
    pub fn release(&self) {
        self.shared.released.send_replace(true);
    }

    /// When each content chunk (text piece, tool-argument piece) of every stream was handed to
    /// its connection, in order: the provider's side of a first-token latency figure.
    pub fn content_sent_times(&self) -> Vec<Instant> {
        lock(&self.shared.content_sent).clone()
    }

    /// Waits until `count` streams have reached their hold point; false after `timeout`.
    pub async fn wait_for_holding(&self, count: usize, timeout: Duration) -> bool {
        wait_for_count(&self.shared.holding, count, timeout).await
    }

    /// Waits until `count` streams have seen their client go away before they ended (the
    /// connection was closed); false after `timeout`.
    pub async fn wait_for_disconnects(&self, count: usize, timeout: Duration) -> bool {
        wait_for_count(&self.shared.disconnects, count, timeout).await
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        // held streams finish rather than hold until the runtime ends
        self.shared.released.send_replace(true);
        self.server.abort();
    }
}

async fn wait_for_count(counter: &watch::Sender<usize>, count: usize, timeout: Duration) -> bool {
    let mut rx = counter.subscribe();
    let reached = matches!(
        tokio::time::timeout(timeout, rx.wait_for(|n| *n >= count)).await,
        Ok(Ok(_))
    );
    reached
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // a panicking test thread must not hide the recorded requests from the others
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn openai(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    reply(
        shared,
        Wire::OpenAi,
        "/v1/chat/completions",
        &headers,
        &body,
    )
}

async fn anthropic(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    reply(shared, Wire::Anthropic, "/v1/messages", &headers, &body)
}

fn reply(
    shared: Arc<Shared>,
    wire: Wire,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    lock(&shared.requests).push(RecordedRequest {
        wire,
        path: path.to_owned(),
        headers: headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_owned(), value)
            })
            .collect(),
        body: body.clone(),
    });
    let next = lock(&shared.script).pop_front();
    match next {
        None => error_response(
            wire,
            &FakeError::status(500).message("fake provider: no scripted reply left"),
        ),
        Some(FakeReply::Error(error)) => error_response(wire, &error),
        Some(FakeReply::Answer(answer)) => stream_response(shared, wire, &answer, &body),
    }
}

fn error_response(wire: Wire, error: &FakeError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = wire::error_body(wire, error.status, &error.message).to_string();
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    if let Some(value) = &error.retry_after {
        if let Ok(value) = axum::http::HeaderValue::from_str(value) {
            headers.insert(axum::http::header::RETRY_AFTER, value);
        }
    }
    response
}

type Chunk = Result<Bytes, std::io::Error>;

fn stream_response(
    shared: Arc<Shared>,
    wire: Wire,
    answer: &FakeAnswer,
    request: &Value,
) -> Response {
    let frames = wire::answer_frames(wire, answer, request);
    let (tx, rx) = mpsc::channel::<Chunk>(4);
    tokio::spawn(write_frames(shared, wire, tx, frames, answer.ending));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    });
    let mut response = Response::new(Body::from_stream(body));
    let headers = response.headers_mut();
    headers.insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-cache"),
    );
    response
}

/// Where the ending fires: before the frame after the `n`-th content frame (before the first
/// content frame when `n` is 0; before the last frame when there are fewer content frames).
fn ending_index(frames: &[wire::Frame], n: usize) -> usize {
    let last = frames.len().saturating_sub(1);
    let mut seen = 0;
    for (i, frame) in frames.iter().enumerate() {
        if frame.content {
            if seen == n {
                return i;
            }
            seen += 1;
        } else if seen == n && n > 0 {
            return i;
        }
    }
    last
}

async fn write_frames(
    shared: Arc<Shared>,
    wire: Wire,
    tx: mpsc::Sender<Chunk>,
    frames: Vec<wire::Frame>,
    ending: Ending,
) {
    let fire_at = match ending {
        Ending::Complete => None,
        Ending::BreakAfter(n) | Ending::ErrorAfter(n) | Ending::HoldAfter(n) => {
            Some(ending_index(&frames, n))
        }
    };
    for (i, frame) in frames.into_iter().enumerate() {
        if fire_at == Some(i) {
            match ending {
                Ending::Complete => {}
                Ending::BreakAfter(_) => {
                    // let the frames already sent reach the socket: the server aborts at once on
                    // a body error, unflushed bytes included
                    while tx.capacity() < tx.max_capacity() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    tokio::time::sleep(FLUSH_GRACE).await;
                    // an error in the body makes the server abort the connection mid-body
                    let cut =
                        std::io::Error::new(std::io::ErrorKind::ConnectionReset, "scripted break");
                    let _ = tx.send(Err(cut)).await;
                    return;
                }
                Ending::ErrorAfter(_) => {
                    let error = wire::stream_error_frame(wire);
                    if tx.send(Ok(Bytes::from(error.bytes))).await.is_err() {
                        shared.disconnects.send_modify(|n| *n += 1);
                    }
                    return;
                }
                Ending::HoldAfter(_) => {
                    if !hold(&shared, &tx).await {
                        shared.disconnects.send_modify(|n| *n += 1);
                        return;
                    }
                }
            }
        }
        let content = frame.content;
        if tx.send(Ok(Bytes::from(frame.bytes))).await.is_err() {
            shared.disconnects.send_modify(|n| *n += 1);
            return;
        }
        if content {
            lock(&shared.content_sent).push(Instant::now());
        }
    }
}

/// Holds until released (true) or the client goes away (false), sending SSE comments meanwhile.
async fn hold(shared: &Shared, tx: &mpsc::Sender<Chunk>) -> bool {
    shared.holding.send_modify(|n| *n += 1);
    let mut released = shared.released.subscribe();
    loop {
        if *released.borrow_and_update() {
            return true;
        }
        tokio::select! {
            changed = released.changed() => {
                if changed.is_err() {
                    return true;
                }
            }
            () = tx.closed() => return false,
            () = tokio::time::sleep(HOLD_PING) => {
                if tx.send(Ok(Bytes::from_static(b": holding\n\n"))).await.is_err() {
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(content: &[bool]) -> Vec<wire::Frame> {
        content
            .iter()
            .map(|&content| wire::Frame {
                bytes: String::new(),
                content,
            })
            .collect()
    }

    #[test]
    fn endings_fire_after_the_nth_content_chunk() {
        // role chunk, text, text, tool opening, argument piece, finish, [DONE]
        let stream = frames(&[false, true, true, false, true, false, false]);
        assert_eq!(
            ending_index(&stream, 0),
            1,
            "before the first content chunk"
        );
        assert_eq!(ending_index(&stream, 1), 2, "right after the first one");
        assert_eq!(ending_index(&stream, 2), 3);
        assert_eq!(ending_index(&stream, 3), 5);
        assert_eq!(
            ending_index(&stream, 9),
            6,
            "fewer chunks: before the end frame"
        );
    }

    #[tokio::test]
    async fn requests_are_recorded_and_an_empty_script_answers_500() {
        let fake = FakeProvider::start(Vec::<FakeReply>::new()).await.unwrap();
        let mut stream = tokio::net::TcpStream::connect(fake.addr()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = r#"{"model":"m"}"#;
        let head = format!(
            "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer}");
        assert!(answer.contains("no scripted reply left"), "{answer}");
        let sent = fake.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].wire, Wire::Anthropic);
        assert_eq!(sent[0].header("X-Api-Key"), Some("k"));
        assert_eq!(sent[0].body["model"], "m");
    }
}
