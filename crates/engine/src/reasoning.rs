//! Splitting generated text into `reasoning` and `content` for models that think inside
//! `<think>…</think>` (DeepSeek-R1 and its distills, Qwen3, SmolLM3), token by token.
//!
//! The splitter knows nothing about tokenizers: the caller decodes each generated token to
//! text, pushes it, and prints or sends the [`Piece`]s it gets back. A tag cut across tokens
//! (`"</th"` + `"ink>"`) is held back until it is whole or proven not to be a tag; nothing else
//! is held, so output streams with at most a tag's length of delay.
//!
//! # Rules
//! * **Where a think block may start.** Only at the very start of the output, after optional
//!   whitespace (which is dropped). Once any other text has appeared the output has no think
//!   block and everything, including later tags, is content, verbatim.
//! * **Pre-opened think.** When the prompt already opened the block (the R1 distills' templates
//!   end the generation prompt with `"<think>\n"`, see [`prompt_opens_think`]), the output
//!   starts inside the block: everything up to the close tag is reasoning. If the model repeats
//!   the open tag anyway (after optional whitespace, at the very start), it is dropped.
//! * **Reasoning** is the text between the tags, trimmed like this: newlines (`'\n'`, `'\r'`)
//!   right after the open tag and right before the close tag are removed (DeepSeek and Qwen3
//!   write `"<think>\n…\n</think>"`); other whitespace is kept. So an empty block such as
//!   `"<think>\n\n</think>"` yields no reasoning at all. A block that never closes (the stream
//!   ended while thinking) yields its text as reasoning with the same trimming.
//! * **Content** is the text after the close tag with its leading newlines (`'\n'`, `'\r'`)
//!   removed (`"</think>\n\nAnswer"` gives `"Answer"`); everything after that is verbatim,
//!   including any further tags. Output without any think block is content, verbatim, with
//!   nothing trimmed.
//!
//! In short, with `ws` any whitespace and `nl` newlines only, the non-streaming result is
//! `ws* <think> nl* REASONING nl* </think> nl* CONTENT` for output with a think block; see
//! [`split`]. Streaming gives exactly the same text whatever the chunking.
//!
//! # Capping the thinking
//! [`ThinkBudget`] counts the tokens generated inside the think block; when it says the cap is
//! reached the caller tokenizes [`ReasoningSplitter::forced_close`] (`"</think>\n\n"`), feeds
//! those tokens to the model as if it had generated them, and pushes the same text through the
//! splitter, which then switches to content.

use crate::{EngineError, Result};

/// The open tag DeepSeek-R1, Qwen3 and SmolLM3 use.
pub const DEFAULT_OPEN_TAG: &str = "<think>";
/// The close tag DeepSeek-R1, Qwen3 and SmolLM3 use.
pub const DEFAULT_CLOSE_TAG: &str = "</think>";

/// A run of output text, sorted into thinking or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Reasoning(String),
    Content(String),
}

impl Piece {
    pub fn text(&self) -> &str {
        match self {
            Piece::Reasoning(s) | Piece::Content(s) => s,
        }
    }

    pub fn is_reasoning(&self) -> bool {
        matches!(self, Piece::Reasoning(_))
    }
}

/// True when the rendered prompt leaves a think block open for the model: once trailing
/// whitespace is ignored, the prompt ends with `"<think>"` (DeepSeek-R1 distill templates end
/// with `"<｜Assistant｜><think>\n"`). A prompt ending with a closed block (Qwen3 with thinking
/// off ends with `"<think>\n\n</think>\n\n"`) or with no tag returns false, and so does an open
/// tag quoted earlier in a user message.
pub fn prompt_opens_think(prompt: &str) -> bool {
    prompt_opens_tag(prompt, DEFAULT_OPEN_TAG)
}

/// [`prompt_opens_think`] for a custom open tag.
pub fn prompt_opens_tag(prompt: &str, open_tag: &str) -> bool {
    !open_tag.is_empty() && prompt.trim_end().ends_with(open_tag)
}

/// Splits a whole generated text into `(reasoning, content)` by the rules in the module
/// documentation, with the default tags. `pre_opened`: the prompt already opened the think
/// block (see [`prompt_opens_think`]).
pub fn split(text: &str, pre_opened: bool) -> (String, String) {
    let mut splitter = ReasoningSplitter::new(pre_opened);
    let mut pieces = splitter.push(text);
    pieces.extend(splitter.finish());
    let mut reasoning = String::new();
    let mut content = String::new();
    for piece in pieces {
        match piece {
            Piece::Reasoning(s) => reasoning.push_str(&s),
            Piece::Content(s) => content.push_str(&s),
        }
    }
    (reasoning, content)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen yet: an open tag may still come.
    Start,
    /// Inside the think block.
    Reasoning,
    /// After the think block, or output that has none.
    Content,
}

/// Streaming `<think>` splitter; see the module documentation for the rules.
#[derive(Debug, Clone)]
pub struct ReasoningSplitter {
    open: String,
    close: String,
    pre_opened: bool,
    state: State,
    /// Newlines at the start of the current section are still to be dropped.
    trim_leading: bool,
    /// Text received but not yet decided: a possible tag prefix, leading whitespace before a
    /// possible open tag, or newlines that may turn out to precede the close tag.
    pending: String,
}

fn is_newline(c: char) -> bool {
    c == '\n' || c == '\r'
}

/// Where the longest suffix of `s` that is a proper prefix of `tag` begins (`s.len()` if none).
fn tag_prefix_start(s: &str, tag: &str) -> usize {
    s.char_indices()
        .map(|(i, _)| i)
        .filter(|&i| s.len() - i < tag.len())
        .find(|&i| tag.starts_with(&s[i..]))
        .unwrap_or(s.len())
}

/// Appends text to the output, merging with the last piece when it is of the same kind.
fn emit(out: &mut Vec<Piece>, reasoning: bool, text: &str) {
    if text.is_empty() {
        return;
    }
    match out.last_mut() {
        Some(Piece::Reasoning(s)) if reasoning => s.push_str(text),
        Some(Piece::Content(s)) if !reasoning => s.push_str(text),
        _ => out.push(if reasoning {
            Piece::Reasoning(text.to_string())
        } else {
            Piece::Content(text.to_string())
        }),
    }
}

impl ReasoningSplitter {
    /// A splitter for `<think>`/`</think>`. `pre_opened`: the prompt already opened the
    /// think block (see [`prompt_opens_think`]).
    pub fn new(pre_opened: bool) -> ReasoningSplitter {
        ReasoningSplitter {
            open: DEFAULT_OPEN_TAG.to_string(),
            close: DEFAULT_CLOSE_TAG.to_string(),
            pre_opened,
            state: State::Start,
            trim_leading: false,
            pending: String::new(),
        }
    }

    /// A splitter for other tags (e.g. `"<|begin_of_thought|>"`). Both must be non-empty.
    pub fn with_tags(open: &str, close: &str, pre_opened: bool) -> Result<ReasoningSplitter> {
        if open.is_empty() || close.is_empty() {
            return Err(EngineError::Request(format!(
                "reasoning tags must be non-empty (open {open:?}, close {close:?})"
            )));
        }
        let mut splitter = ReasoningSplitter::new(pre_opened);
        splitter.open = open.to_string();
        splitter.close = close.to_string();
        Ok(splitter)
    }

    /// The tag that ends the think block.
    pub fn close_tag(&self) -> &str {
        &self.close
    }

    /// The text to feed (tokenized by the caller) when the thinking cap closes the block: the
    /// close tag and the blank line the models write after it.
    pub fn forced_close(&self) -> String {
        format!("{}\n\n", self.close)
    }

    /// True while the output is inside the think block, or may still be (prompt pre-opened
    /// it). False before an open tag has been seen and after the block closed.
    pub fn in_think(&self) -> bool {
        match self.state {
            State::Start => self.pre_opened,
            State::Reasoning => true,
            State::Content => false,
        }
    }

    /// Feeds newly generated text; returns what can be shown now.
    pub fn push(&mut self, text: &str) -> Vec<Piece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        self.drain(false, &mut out);
        out
    }

    /// The stream ended: returns everything still held back. Whatever was held as a
    /// possible tag prefix is plain text after all.
    pub fn finish(&mut self) -> Vec<Piece> {
        let mut out = Vec::new();
        self.drain(true, &mut out);
        out
    }

    /// Moves decided text from `pending` to `out`; with `eof`, decides everything.
    fn drain(&mut self, eof: bool, out: &mut Vec<Piece>) {
        loop {
            match self.state {
                State::Start => {
                    let rest = self.pending.trim_start();
                    if rest.starts_with(self.open.as_str()) {
                        let after = self.pending.len() - rest.len() + self.open.len();
                        self.pending.drain(..after);
                        self.enter(State::Reasoning);
                        continue;
                    }
                    let undecided = self.open.starts_with(rest); // true for empty `rest` too
                    if undecided && !eof {
                        return;
                    }
                    // No open tag here: the output starts inside the pre-opened block, or
                    // has no think block at all (and keeps its leading whitespace).
                    if self.pre_opened {
                        self.enter(State::Reasoning);
                    } else {
                        self.state = State::Content;
                        self.trim_leading = false;
                    }
                }
                State::Reasoning => {
                    if !self.trim_leading_newlines() {
                        return;
                    }
                    if let Some(at) = self.pending.find(self.close.as_str()) {
                        let keep = self.pending[..at].trim_end_matches(is_newline).len();
                        emit(out, true, &self.pending[..keep]);
                        self.pending.drain(..at + self.close.len());
                        self.enter(State::Content);
                        continue;
                    }
                    // Hold a possible close-tag prefix and the newlines before it, which
                    // are dropped if the tag follows.
                    let hold_from = if eof {
                        self.pending.len()
                    } else {
                        tag_prefix_start(&self.pending, &self.close)
                    };
                    let keep = self.pending[..hold_from].trim_end_matches(is_newline).len();
                    emit(out, true, &self.pending[..keep]);
                    self.pending.drain(..keep);
                    if eof {
                        self.pending.clear(); // only trailing newlines were left
                    }
                    return;
                }
                State::Content => {
                    if self.trim_leading_newlines() {
                        emit(out, false, &self.pending);
                        self.pending.clear();
                    }
                    return;
                }
            }
        }
    }

    fn enter(&mut self, state: State) {
        self.state = state;
        self.trim_leading = true;
    }

    /// Drops newlines at the start of a section. Returns false while nothing else has come
    /// yet (so the trimming continues with the next text).
    fn trim_leading_newlines(&mut self) -> bool {
        if self.trim_leading {
            let removed = self.pending.len() - self.pending.trim_start_matches(is_newline).len();
            self.pending.drain(..removed);
            if self.pending.is_empty() {
                return false;
            }
            self.trim_leading = false;
        }
        true
    }
}

/// A cap on the tokens spent thinking (`--max-thinking-tokens N`).
///
/// Per generated token: decode it, [`ReasoningSplitter::push`] its text, then call
/// [`ThinkBudget::on_token`]. When that returns true, tokenize
/// [`ReasoningSplitter::forced_close`], feed those tokens to the model instead of sampling,
/// and push the same text through the splitter. Call [`ThinkBudget::exhausted`] before the
/// first token to honour a cap of 0 when the prompt pre-opened the block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThinkBudget {
    /// `None`: no cap.
    pub max_tokens: Option<usize>,
    used: usize,
}

impl ThinkBudget {
    pub fn new(max_tokens: Option<usize>) -> ThinkBudget {
        ThinkBudget {
            max_tokens,
            used: 0,
        }
    }

    /// Tokens counted as thinking so far.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Records one generated token whose text was just pushed through `splitter` (it counts
    /// when the splitter is inside the think block after it, so the token that opens the block
    /// counts and the one that closes it does not). Returns [`ThinkBudget::exhausted`].
    pub fn on_token(&mut self, splitter: &ReasoningSplitter) -> bool {
        if splitter.in_think() {
            self.used += 1;
        }
        self.exhausted(splitter)
    }

    /// True when the splitter is inside the think block and the cap is reached: the caller
    /// should force-close the block now.
    pub fn exhausted(&self, splitter: &ReasoningSplitter) -> bool {
        splitter.in_think() && self.max_tokens.is_some_and(|max| self.used >= max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_prefix_start_finds_the_longest_suffix() {
        assert_eq!(tag_prefix_start("ab</th", "</think>"), 2);
        assert_eq!(tag_prefix_start("ab<", "</think>"), 2);
        assert_eq!(tag_prefix_start("ab", "</think>"), 2);
        assert_eq!(tag_prefix_start("a</think", "</think>"), 1);
        assert_eq!(tag_prefix_start("é<", "</think>"), 2);
        assert_eq!(tag_prefix_start("", "</think>"), 0);
    }

    #[test]
    fn empty_tags_are_refused() {
        assert!(ReasoningSplitter::with_tags("", "</think>", false).is_err());
        assert!(ReasoningSplitter::with_tags("<think>", "", false).is_err());
    }
}
