//! The bridge between the scheduler and the async handlers. Each choice of a request is one
//! scheduler request whose sink (run on the scheduler's thread) turns token events into
//! text: it decodes, matches stop strings (answering `Control::Stop` at once), splits the
//! thinking out, enforces the thinking cap (answering `Control::Force` with the close tag's
//! tokens), and sends [`Msg`]s to a tokio channel. Dropping the [`Running`] guard (the client
//! went away) cancels every choice.

use crate::sched::{Control, Event, RequestHandle, Sink, StopReason};
use crate::text::{Decoder, StopMatcher};
use mixture_engine::reasoning::{Piece, ReasoningSplitter, ThinkBudget};
use mixture_model::tokenizer::Tokenizer;
use std::sync::Arc;
use tokio::sync::mpsc::UnboundedSender;

/// One generated token's log-probability and the most likely alternatives.
#[derive(Debug, Clone)]
pub struct TokenLogprob {
    pub text: String,
    pub bytes: Vec<u8>,
    pub logprob: f32,
    pub top: Vec<(String, Vec<u8>, f32)>,
}

/// Why a choice ended, as OpenAI names it (`tool_calls` is decided later from the text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    Stop,
    Length,
    Cancelled,
}

impl Finish {
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop | Finish::Cancelled => "stop",
            Finish::Length => "length",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Msg {
    /// New text (either part may be empty) for choice `index`; sent for every token
    /// (`token`), and once more at the end when held-back text remains.
    Delta {
        index: usize,
        reasoning: String,
        content: String,
        logprobs: Option<TokenLogprob>,
        token: bool,
    },
    Done {
        index: usize,
        finish: Finish,
        prompt_tokens: usize,
        cached_tokens: usize,
        completion_tokens: usize,
    },
    Error {
        index: usize,
        message: String,
    },
}

/// Thinking setup of a chat choice.
#[derive(Debug, Clone)]
pub struct Thinking {
    /// The prompt already opened the think block.
    pub pre_opened: bool,
    pub cap: Option<usize>,
    /// Tokens of the splitter's forced close (`"</think>\n\n"`).
    pub close_ids: Vec<u32>,
}

/// How to turn one choice's tokens into text.
#[derive(Debug, Clone)]
pub struct TextSetup {
    pub stop_strings: Vec<String>,
    /// `None`: no reasoning split (completions endpoint); all text is content.
    pub thinking: Option<Thinking>,
    pub logprobs: bool,
    pub stop_ids: Vec<u32>,
    /// Keep special tokens' text (for tool-call parsing); stop tokens are always left out.
    pub keep_special: bool,
    /// The text continues the prompt (completions) rather than starting a reply.
    pub continuation: bool,
}

struct SinkState {
    index: usize,
    tx: UnboundedSender<Msg>,
    tokenizer: Arc<Tokenizer>,
    decoder: Decoder,
    stop: StopMatcher,
    splitter: Option<ReasoningSplitter>,
    budget: ThinkBudget,
    close_ids: Vec<u32>,
    forced: bool,
    /// Forced tokens the scheduler will report back as `Token` events; their text was
    /// already pushed.
    echo: std::collections::VecDeque<u32>,
    want_logprobs: bool,
    stop_ids: Vec<u32>,
    /// A stop string matched or the client left: later tokens are ignored.
    done: bool,
}

impl SinkState {
    fn route(&mut self, text: &str, reasoning: &mut String, content: &mut String) {
        let pieces = match self.splitter.as_mut() {
            Some(s) => s.push(text),
            None => vec![Piece::Content(text.to_string())],
        };
        collect(pieces, reasoning, content);
    }

    fn token_text(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self
            .tokenizer
            .token_bytes(id, false)
            .map(<[u8]>::to_vec)
            .unwrap_or_default();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }

    fn on_event(&mut self, ev: Event) -> Control {
        match ev {
            Event::Token { .. } if self.done => Control::Stop,
            Event::Token { id, .. } if self.echo.front() == Some(&id) => {
                self.echo.pop_front();
                Control::Continue
            }
            Event::Token { id, logprob, top } => {
                self.echo.clear();
                let stop_id = self.stop_ids.contains(&id);
                let mut reasoning = String::new();
                let mut content = String::new();
                let text = if stop_id {
                    String::new()
                } else {
                    self.decoder.push(id)
                };
                let shown = self.stop.push(&text);
                self.route(&shown, &mut reasoning, &mut content);
                let mut control = Control::Continue;
                if self.stop.matched() {
                    if let Some(s) = self.splitter.as_mut() {
                        collect(s.finish(), &mut reasoning, &mut content);
                    }
                    control = Control::Stop;
                } else if let (false, Some(s)) = (stop_id, self.splitter.as_ref()) {
                    if !self.forced && self.budget.on_token(s) {
                        self.forced = true;
                        let close = s.forced_close();
                        let shown = self.stop.push(&close);
                        self.route(&shown, &mut reasoning, &mut content);
                        self.echo = self.close_ids.iter().copied().collect();
                        control = Control::Force(self.close_ids.clone());
                    }
                }
                let logprobs = match (self.want_logprobs && !stop_id, logprob) {
                    (true, Some(lp)) => {
                        let (text, bytes) = self.token_text(id);
                        let top = top
                            .iter()
                            .map(|&(t, l)| {
                                let (s, b) = self.token_text(t);
                                (s, b, l)
                            })
                            .collect();
                        Some(TokenLogprob {
                            text,
                            bytes,
                            logprob: lp,
                            top,
                        })
                    }
                    _ => None,
                };
                let sent = self.tx.send(Msg::Delta {
                    index: self.index,
                    reasoning,
                    content,
                    logprobs,
                    token: true,
                });
                if sent.is_err() {
                    // Nobody listens any more: the client left.
                    self.done = true;
                    return Control::Stop;
                }
                if matches!(control, Control::Stop) {
                    self.done = true;
                }
                control
            }
            Event::Done {
                reason,
                prompt_tokens,
                cached_tokens,
                completion_tokens,
            } => {
                let mut reasoning = String::new();
                let mut content = String::new();
                let tail = self.decoder.finish();
                let mut shown = self.stop.push(&tail);
                shown.push_str(&self.stop.finish());
                self.route(&shown, &mut reasoning, &mut content);
                if let Some(s) = self.splitter.as_mut() {
                    collect(s.finish(), &mut reasoning, &mut content);
                }
                if !reasoning.is_empty() || !content.is_empty() {
                    let _ = self.tx.send(Msg::Delta {
                        index: self.index,
                        reasoning,
                        content,
                        logprobs: None,
                        token: false,
                    });
                }
                let finish = if self.stop.matched() {
                    Finish::Stop
                } else {
                    match reason {
                        StopReason::Stop => Finish::Stop,
                        StopReason::Length | StopReason::Context => Finish::Length,
                        StopReason::Cancelled => Finish::Cancelled,
                    }
                };
                let _ = self.tx.send(Msg::Done {
                    index: self.index,
                    finish,
                    prompt_tokens,
                    cached_tokens,
                    completion_tokens,
                });
                Control::Stop
            }
            Event::Error(message) => {
                self.done = true;
                let _ = self.tx.send(Msg::Error {
                    index: self.index,
                    message,
                });
                Control::Stop
            }
        }
    }
}

fn collect(pieces: Vec<Piece>, reasoning: &mut String, content: &mut String) {
    for p in pieces {
        match p {
            Piece::Reasoning(t) => reasoning.push_str(&t),
            Piece::Content(t) => content.push_str(&t),
        }
    }
}

/// The sink for choice `index`.
pub fn make_sink(
    index: usize,
    setup: TextSetup,
    tokenizer: Arc<Tokenizer>,
    tx: UnboundedSender<Msg>,
) -> Sink {
    let (splitter, budget, close_ids) = match setup.thinking {
        Some(t) => (
            Some(ReasoningSplitter::new(t.pre_opened)),
            ThinkBudget::new(t.cap),
            t.close_ids,
        ),
        None => (None, ThinkBudget::new(None), Vec::new()),
    };
    let mut state = SinkState {
        index,
        tx,
        decoder: Decoder::new(tokenizer.clone(), setup.keep_special, setup.continuation),
        tokenizer,
        stop: StopMatcher::new(setup.stop_strings),
        splitter,
        budget,
        close_ids,
        forced: false,
        echo: std::collections::VecDeque::new(),
        want_logprobs: setup.logprobs,
        stop_ids: setup.stop_ids,
        done: false,
    };
    Box::new(move |ev| state.on_event(ev))
}

/// Cancels its requests when dropped (client disconnected, handler future dropped).
#[derive(Default)]
pub struct Running {
    handles: Vec<RequestHandle>,
}

impl Running {
    pub fn push(&mut self, h: RequestHandle) {
        self.handles.push(h);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for h in &self.handles {
            h.cancel();
        }
    }
}
