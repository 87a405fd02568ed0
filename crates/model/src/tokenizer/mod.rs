//! Text to token ids and back.
//!
//! Two sources, one [`Tokenizer`]:
//! - `tokenizer.json` in a Hugging Face directory, run by the `tokenizers` crate as
//!   transformers runs it ([`Tokenizer::from_hf_dir`]);
//! - the vocabulary embedded in a GGUF file (`tokenizer.ggml.*`), rebuilt on `tokenizers`
//!   models so that it tokenizes exactly as llama.cpp does ([`Tokenizer::from_gguf`]; byte-level
//!   BPE with the named pre-tokenizers, and SentencePiece BPE with byte fallback).
//!
//! Decoding goes through bytes: every token has its byte string (a byte-level token may end in
//! the middle of a UTF-8 character, as may a `<0xXX>` byte token), and text is made from the
//! concatenated bytes. [`StreamDecoder`] does the same one token at a time and holds back an
//! incomplete character until it completes, so streamed text equals the whole decode.

mod bytes;
mod gguf_vocab;
mod hf_json;
pub mod pretok;
mod stream;

pub use gguf_vocab::token_type;
pub use stream::StreamDecoder;

use crate::error::{ModelError, Result};
use crate::gguf::GgufFile;
use std::path::Path;

/// A token matched as a whole before the model runs (GGUF vocabularies).
#[derive(Debug, Clone)]
struct Special {
    text: String,
    id: u32,
    /// Control or unknown token: only matched when specials are parsed. User-defined tokens
    /// (`control == false`) are always matched, as in llama.cpp and `tokenizers`.
    control: bool,
}

enum Engine {
    /// GGUF: specials are cut out here, the text between them goes to `model`.
    Gguf {
        model: Box<tokenizers::Tokenizer>,
        specials: Vec<Special>,
    },
    /// tokenizer.json: `tokenizers` handles added tokens itself; `plain` is the same tokenizer
    /// with special tokens left as text (`parse_special == false`).
    Hf {
        full: Box<tokenizers::Tokenizer>,
        plain: Box<tokenizers::Tokenizer>,
    },
}

/// A text tokenizer: encode, decode, special tokens.
pub struct Tokenizer {
    engine: Engine,
    /// Token text as stored in the vocabulary, by id.
    tokens: Vec<String>,
    /// The bytes each token decodes to, by id.
    pieces: Vec<Vec<u8>>,
    /// Control/unknown tokens (GGUF) or special added tokens (tokenizer.json), by id.
    special: Vec<bool>,
    bos: Option<u32>,
    eos: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    add_eos: bool,
    /// SentencePiece with a space prefix: the first token of a decode loses one leading space.
    strip_first_space: bool,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "source",
                &match self.engine {
                    Engine::Gguf { .. } => "gguf",
                    Engine::Hf { .. } => "tokenizer.json",
                },
            )
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos_ids", &self.eos_ids)
            .finish()
    }
}

impl Tokenizer {
    /// The tokenizer embedded in a GGUF file's metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer> {
        gguf_vocab::from_gguf(file)
    }

    /// The tokenizer of a Hugging Face model directory (`tokenizer.json`, with special tokens
    /// from `tokenizer_config.json`, `generation_config.json` and `config.json`).
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        hf_json::from_hf_dir(dir)
    }

    /// The tokenizer of a model path: a `.gguf` file or a Hugging Face directory.
    pub fn load(model_path: &Path) -> Result<Tokenizer> {
        if !model_path.exists() {
            return Err(ModelError::NotFound(model_path.to_path_buf()));
        }
        if model_path.is_dir() {
            Tokenizer::from_hf_dir(model_path)
        } else {
            let file = crate::gguf::open(model_path)?;
            Tokenizer::from_gguf(&file)
        }
    }

    /// Token ids for `text`. `add_special` adds BOS/EOS as the model asks (GGUF
    /// `add_bos_token`/`add_eos_token`; tokenizer.json's post-processor). `parse_special` matches
    /// special tokens written in the text (`<|im_start|>`) as those tokens; without it they are
    /// tokenized as plain text.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        match &self.engine {
            Engine::Hf { full, plain } => {
                let tok = if parse_special { full } else { plain };
                let enc = tok
                    .encode_fast(text, add_special)
                    .map_err(|e| ModelError::Invalid(format!("tokenizer: {e}")))?;
                Ok(enc.get_ids().to_vec())
            }
            Engine::Gguf { model, specials } => {
                let mut out = Vec::with_capacity(text.len() / 3 + 2);
                if add_special && self.add_bos {
                    out.extend(self.bos);
                }
                for frag in partition(text, specials, parse_special) {
                    match frag {
                        Fragment::Token(id) => out.push(id),
                        Fragment::Text(s) => {
                            let enc = model
                                .encode_fast(s, false)
                                .map_err(|e| ModelError::Invalid(format!("tokenizer: {e}")))?;
                            out.extend_from_slice(enc.get_ids());
                        }
                    }
                }
                if add_special && self.add_eos {
                    out.extend(self.eos);
                }
                Ok(out)
            }
        }
    }

    /// Text for `ids`, special tokens included as their text. Bytes that are not valid UTF-8
    /// become U+FFFD (as `String::from_utf8_lossy` does).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, false)
    }

    /// Like [`decode`](Tokenizer::decode), with special tokens ([`is_special`](Tokenizer::is_special))
    /// left out, as llama.cpp renders generated text.
    pub fn decode_skip_special(&self, ids: &[u32]) -> Result<String> {
        self.decode_inner(ids, true)
    }

    fn decode_inner(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        for (i, &id) in ids.iter().enumerate() {
            let piece = self.piece(id, i == 0)?;
            if !(skip_special && self.is_special(id)) {
                bytes.extend_from_slice(piece);
            }
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A decoder that turns ids into text one at a time (see [`StreamDecoder`]), special
    /// tokens included as in [`decode`](Tokenizer::decode).
    pub fn stream_decoder(&self) -> StreamDecoder<'_> {
        StreamDecoder::new(self)
    }

    /// The bytes token `id` decodes to; `first` when it starts the decoded text.
    pub fn token_bytes(&self, id: u32, first: bool) -> Result<&[u8]> {
        self.piece(id, first)
    }

    fn piece(&self, id: u32, first: bool) -> Result<&[u8]> {
        let p = self
            .pieces
            .get(id as usize)
            .ok_or(ModelError::TokenOutOfRange {
                id,
                vocab: self.pieces.len(),
            })?;
        if first && self.strip_first_space {
            if let Some(rest) = p.strip_prefix(b" ") {
                return Ok(rest);
            }
        }
        Ok(p)
    }

    /// The token's text as stored in the vocabulary (e.g. `Ġthe`, `▁the`, `<|im_end|>`).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a token by its stored text (the lowest id if the text repeats).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == text)
            .and_then(|i| u32::try_from(i).ok())
    }

    /// Whether `id` is a special (control) token; false for ids outside the vocabulary.
    pub fn is_special(&self, id: u32) -> bool {
        self.special.get(id as usize).copied().unwrap_or(false)
    }

    /// The beginning-of-sequence token, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// The end-of-sequence token, if the vocabulary has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Every token that ends generation: EOS, then end-of-turn tokens (`<|im_end|>`,
    /// `<|eot_id|>`, `<｜end▁of▁sentence｜>`, ...) present in the vocabulary.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// Whether `add_special` puts BOS in front.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether `add_special` puts EOS at the end.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }

    /// Number of token ids.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }
}

enum Fragment<'a> {
    Text(&'a str),
    Token(u32),
}

/// Cut `text` at special tokens, longest token text first, each occurrence left to right
/// (llama.cpp `tokenizer_st_partition`).
fn partition<'a>(text: &'a str, specials: &[Special], parse_special: bool) -> Vec<Fragment<'a>> {
    let mut frags = Vec::new();
    if text.is_empty() {
        return frags;
    }
    frags.push(Fragment::Text(text));
    for sp in specials {
        if sp.control && !parse_special {
            continue;
        }
        if !frags
            .iter()
            .any(|f| matches!(f, Fragment::Text(s) if s.contains(sp.text.as_str())))
        {
            continue;
        }
        let mut next = Vec::with_capacity(frags.len() + 2);
        for f in frags {
            match f {
                Fragment::Text(s) => {
                    let mut start = 0;
                    for (pos, m) in s.match_indices(sp.text.as_str()) {
                        if pos > start {
                            next.push(Fragment::Text(&s[start..pos]));
                        }
                        next.push(Fragment::Token(sp.id));
                        start = pos + m.len();
                    }
                    if start < s.len() {
                        next.push(Fragment::Text(&s[start..]));
                    }
                }
                token => next.push(token),
            }
        }
        frags = next;
    }
    frags
}
