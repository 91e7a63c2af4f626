//! The script of a fake provider: provider-neutral answers and errors, in the order they are
//! served (one per request).

/// One scripted reply to one request.
#[derive(Debug, Clone)]
pub enum FakeReply {
    /// A streamed answer (`200`, `text/event-stream`).
    Answer(FakeAnswer),
    /// An HTTP error with its status, optional `Retry-After` and the provider's error body.
    Error(FakeError),
}

impl From<FakeAnswer> for FakeReply {
    fn from(answer: FakeAnswer) -> Self {
        Self::Answer(answer)
    }
}

impl From<FakeError> for FakeReply {
    fn from(error: FakeError) -> Self {
        Self::Error(error)
    }
}

/// A streamed answer: text pieces, then tool calls, then usage, then the stop reason.
#[derive(Debug, Clone, Default)]
pub struct FakeAnswer {
    /// Text pieces, each sent in its own chunk (an OpenAI `delta.content`, an Anthropic `text_delta`).
    pub text: Vec<String>,
    /// Tool calls, each with its arguments split over several chunks.
    pub tool_calls: Vec<FakeToolCall>,
    /// Prompt tokens reported (OpenAI: only when the request asked `stream_options.include_usage`).
    pub input_tokens: u64,
    /// Answer tokens reported.
    pub output_tokens: u64,
    /// Why the model stopped; `None`: `ToolUse` when there are tool calls, else `EndTurn`.
    pub stop: Option<FakeStop>,
    /// How the stream ends.
    pub ending: Ending,
}

impl FakeAnswer {
    /// An answer made of these text pieces (one chunk each).
    pub fn text<I, S>(pieces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            text: pieces.into_iter().map(Into::into).collect(),
            ..Self::default()
        }
    }

    /// Adds a tool call whose JSON arguments arrive in these pieces (one chunk each).
    pub fn tool_call<I, S>(mut self, id: &str, name: &str, argument_pieces: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tool_calls.push(FakeToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            argument_pieces: argument_pieces.into_iter().map(Into::into).collect(),
        });
        self
    }

    /// Reports these token counts.
    pub fn usage(mut self, input_tokens: u64, output_tokens: u64) -> Self {
        self.input_tokens = input_tokens;
        self.output_tokens = output_tokens;
        self
    }

    /// Ends with this stop reason.
    pub fn stop(mut self, stop: FakeStop) -> Self {
        self.stop = Some(stop);
        self
    }

    /// Ends the stream this way.
    pub fn ending(mut self, ending: Ending) -> Self {
        self.ending = ending;
        self
    }

    /// The stop reason sent: the scripted one, else derived from the tool calls.
    pub(crate) fn stop_reason(&self) -> FakeStop {
        self.stop.unwrap_or(if self.tool_calls.is_empty() {
            FakeStop::EndTurn
        } else {
            FakeStop::ToolUse
        })
    }
}

/// A scripted tool call.
#[derive(Debug, Clone)]
pub struct FakeToolCall {
    /// The provider's call id.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The JSON arguments, in the pieces they are streamed in (joined they need not be valid JSON).
    pub argument_pieces: Vec<String>,
}

/// Why the scripted model stopped, mapped to each wire's own word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeStop {
    /// OpenAI `stop`, Anthropic `end_turn`.
    EndTurn,
    /// OpenAI `tool_calls`, Anthropic `tool_use`.
    ToolUse,
    /// OpenAI `length`, Anthropic `max_tokens`.
    MaxTokens,
    /// OpenAI `content_filter`, Anthropic `refusal`.
    Refused,
}

/// How a streamed answer ends. `n` counts *content chunks*: text pieces and tool-argument pieces
/// (the frames before the first one, such as OpenAI's role chunk or Anthropic's `message_start`,
/// are always sent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Ending {
    /// Every frame, then the wire's end (`data: [DONE]` / `message_stop`).
    #[default]
    Complete,
    /// After `n` content chunks the connection is cut (no end frame, truncated body).
    BreakAfter(usize),
    /// After `n` content chunks the provider reports an error in the stream (OpenAI: a
    /// `data: {"error":…}` chunk; Anthropic: `event: error`), then ends.
    ErrorAfter(usize),
    /// After `n` content chunks the stream holds (sending only SSE comments) until
    /// [`super::FakeProvider::release`], then goes on. For stop/cancel and latency tests.
    HoldAfter(usize),
}

/// A scripted HTTP error.
#[derive(Debug, Clone)]
pub struct FakeError {
    /// The HTTP status (429, 500, 401, …).
    pub status: u16,
    /// The `Retry-After` header's value, as sent (`"1"`, an HTTP date, or anything).
    pub retry_after: Option<String>,
    /// The error message, put in each wire's error envelope.
    pub message: String,
}

impl FakeError {
    /// An error with this status and a generic message.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            retry_after: None,
            message: format!("fake provider error {status}"),
        }
    }

    /// Sends this `Retry-After` value.
    pub fn retry_after(mut self, value: &str) -> Self {
        self.retry_after = Some(value.to_owned());
        self
    }

    /// Puts this message in the error body.
    pub fn message(mut self, message: &str) -> Self {
        self.message = message.to_owned();
        self
    }
}
