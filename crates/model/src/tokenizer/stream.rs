//! Token-by-token decoding that never splits a UTF-8 character.

use super::Tokenizer;
use crate::error::Result;

/// Decodes one token at a time. Each [`push`](StreamDecoder::push) returns the text completed
/// by that token; bytes of a character not yet complete are held until a later token ends it.
/// Bytes that can never form a character become U+FFFD as soon as that is certain, and
/// [`finish`](StreamDecoder::finish) flushes what is left, so the concatenated output always
/// equals [`Tokenizer::decode`] of the same ids ([`Tokenizer::decode_skip_special`] with
/// [`skip_special`](StreamDecoder::skip_special)).
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    pending: Vec<u8>,
    started: bool,
    skip_special: bool,
}

impl<'a> StreamDecoder<'a> {
    pub fn new(tokenizer: &'a Tokenizer) -> StreamDecoder<'a> {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
            started: false,
            skip_special: false,
        }
    }

    /// Leave special tokens out, as [`Tokenizer::decode_skip_special`] does.
    pub fn skip_special(mut self, yes: bool) -> StreamDecoder<'a> {
        self.skip_special = yes;
        self
    }

    /// Add one token; returns the newly completed text (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let piece = self.tokenizer.piece(id, !self.started)?;
        self.started = true;
        if !(self.skip_special && self.tokenizer.is_special(id)) {
            self.pending.extend_from_slice(piece);
        }
        Ok(self.take_complete())
    }

    /// Text of the bytes still held (an unfinished character becomes U+FFFD); resets.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.started = false;
        rest
    }

    /// Whether bytes of an unfinished character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn take_complete(&mut self) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        loop {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix up to `valid` is UTF-8 by the error's own account.
                    out.push_str(&String::from_utf8_lossy(&rest[..valid]));
                    match e.error_len() {
                        // Incomplete character at the end: wait for more bytes.
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
