//! Text-level work on generated tokens: incremental decoding that owns its tokenizer (it
//! lives in the scheduler's sink), and stop strings matched across token boundaries.

use mixture_model::tokenizer::Tokenizer;
use std::sync::Arc;

/// Token-by-token decoder (like `StreamDecoder`, but owning an `Arc<Tokenizer>` so it can
/// move into a sink). Special tokens are left out unless asked for (tool-call markers are
/// special tokens in some vocabularies); a character split across tokens is held
/// until complete; bytes that can never be UTF-8 become U+FFFD.
pub struct Decoder {
    tokenizer: Arc<Tokenizer>,
    pending: Vec<u8>,
    started: bool,
    keep_special: bool,
}

impl Decoder {
    /// `continuation`: the text continues a prompt (completions), so a SentencePiece first
    /// token keeps its leading space; otherwise it starts a new text and loses it.
    pub fn new(tokenizer: Arc<Tokenizer>, keep_special: bool, continuation: bool) -> Decoder {
        Decoder {
            tokenizer,
            pending: Vec::new(),
            started: continuation,
            keep_special,
        }
    }

    /// Text completed by token `id` (possibly empty). Unknown ids give no text.
    pub fn push(&mut self, id: u32) -> String {
        if self.keep_special || !self.tokenizer.is_special(id) {
            if let Ok(piece) = self.tokenizer.token_bytes(id, !self.started) {
                self.pending.extend_from_slice(piece);
            }
        }
        self.started = true;
        self.take_complete()
    }

    /// What is still held, lossily.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        while consumed < self.pending.len() {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                    match e.error_len() {
                        None => {
                            consumed += valid;
                            break;
                        }
                        Some(n) => {
                            out.push('\u{FFFD}');
                            consumed += valid + n;
                        }
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        out
    }
}

/// Finds stop strings in a stream of text pieces. Text that might be the start of a stop
/// string is held back until it is proven not to be; a matched stop string and everything
/// after it are dropped.
#[derive(Debug, Clone, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
    matched: bool,
}

/// Where the longest suffix of `s` that is a proper prefix of `stop` begins (`s.len()` if none).
fn prefix_suffix_start(s: &str, stop: &str) -> usize {
    s.char_indices()
        .map(|(i, _)| i)
        .filter(|&i| s.len() - i < stop.len())
        .find(|&i| stop.starts_with(&s[i..]))
        .unwrap_or(s.len())
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
            matched: false,
        }
    }

    /// Whether a stop string was found (nothing more is returned after that).
    pub fn matched(&self) -> bool {
        self.matched
    }

    /// Adds text; returns the text that is safe to show now.
    pub fn push(&mut self, text: &str) -> String {
        if self.matched {
            return String::new();
        }
        if self.stops.is_empty() {
            return text.to_string();
        }
        self.held.push_str(text);
        if let Some(at) = self.stops.iter().filter_map(|s| self.held.find(s)).min() {
            self.matched = true;
            let out = self.held[..at].to_string();
            self.held.clear();
            return out;
        }
        let keep = self
            .stops
            .iter()
            .map(|s| prefix_suffix_start(&self.held, s))
            .min()
            .unwrap_or(self.held.len());
        let out = self.held[..keep].to_string();
        self.held.drain(..keep);
        out
    }

    /// The stream ended: whatever was held is plain text.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeding any chunking gives the text before the first stop string, whole.
    #[test]
    fn stop_strings_across_chunks() {
        let text = "Hello wor\u{e9}ld, STOP here END";
        let stops = vec!["STOP".to_string(), "END".to_string(), "xyz".to_string()];
        let want = &text[..text.find("STOP").unwrap()];
        let chars: Vec<char> = text.chars().collect();
        for size in 1..6 {
            let mut m = StopMatcher::new(stops.clone());
            let mut out = String::new();
            for chunk in chars.chunks(size) {
                let s: String = chunk.iter().collect();
                out.push_str(&m.push(&s));
            }
            assert!(m.matched());
            out.push_str(&m.finish());
            assert_eq!(out, want, "chunk size {size}");
        }
        // No match: everything comes out, some of it only at the end.
        let mut m = StopMatcher::new(vec!["abc".into()]);
        let mut out = m.push("xxab");
        assert_eq!(out, "xx");
        out.push_str(&m.finish());
        assert_eq!(out, "xxab");
        assert!(!m.matched());
    }

    #[test]
    fn earliest_stop_wins() {
        let mut m = StopMatcher::new(vec!["cd".into(), "b".into()]);
        assert_eq!(m.push("abcd"), "a");
    }
}
