//! Constrained decoding: generated text is forced to be JSON of a given schema.
//!
//! [`ResponseFormat`] reads OpenAI's `response_format` (`text`, `json_object`, `json_schema`).
//! The schema is compiled into a small grammar ([`Grammar`]; the supported subset is listed in
//! [`schema`]), and [`JsonConstraint`] runs a byte-level pushdown matcher over it. Before each
//! sampling step [`JsonConstraint::mask`] walks a byte trie of the vocabulary ([`TokenBytes`])
//! with the matcher state, cloning the (small) state only where the walk branches and pruning
//! every subtree whose prefix is already impossible, and sets `-inf` on the logits of tokens
//! that cannot come next. Once the value is complete only the stop tokens are allowed.
//!
//! Whitespace between JSON tokens is allowed in runs of at most [`matcher::MAX_WS_RUN`] bytes,
//! so the model cannot stall on spaces forever; special tokens never appear inside the value.

pub mod json;
pub mod matcher;
pub mod schema;
pub mod vocab;

pub use json::Json;
pub use schema::Grammar;
pub use vocab::TokenBytes;

use matcher::{Stack, State};
use serde::Deserialize;
use std::sync::Arc;

/// Errors from reading a response format or building a constraint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConstrainError {
    #[error("json_schema at {path}: unsupported: {what}")]
    Unsupported { path: String, what: String },
    #[error("json_schema at {path}: {what}")]
    InvalidSchema { path: String, what: String },
    #[error("response_format: {0}")]
    Invalid(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
}

/// OpenAI's `response_format`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ResponseFormat {
    /// Free text (no constraint).
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema { json_schema: JsonSchemaFormat },
}

/// The `json_schema` member of a `json_schema` response format.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    /// Required by OpenAI; accepted when missing (some local clients leave it out).
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The schema, members in document order. Absent: any JSON value.
    #[serde(default)]
    pub schema: Option<Json>,
    #[serde(default)]
    pub strict: Option<bool>,
}

impl ResponseFormat {
    /// The grammar this format asks for; `None` for free text. Errors name the unsupported
    /// or invalid part of the schema.
    pub fn grammar(&self) -> Result<Option<Grammar>, ConstrainError> {
        match self {
            ResponseFormat::Text => Ok(None),
            ResponseFormat::JsonObject => Ok(Some(Grammar::any_object())),
            ResponseFormat::JsonSchema { json_schema } => {
                let schema = json_schema.schema.clone().unwrap_or(Json::Bool(true));
                Grammar::compile(&schema).map(Some)
            }
        }
    }
}

/// Constrains generation to one JSON value of a grammar, token by token.
#[derive(Debug, Clone)]
pub struct JsonConstraint {
    grammar: Arc<Grammar>,
    bytes: Arc<TokenBytes>,
    stop_ids: Vec<u32>,
    state: State,
    /// A stop token was accepted.
    done: bool,
    /// No token can continue the value (only when the nesting cap of
    /// [`matcher::MAX_FRAMES`] cuts a schema whose values must nest deeper): stop tokens are
    /// allowed then, so generation ends instead of sampling from nothing.
    stuck: bool,
    // Reused buffers for the mask walk.
    walk: Vec<State>,
    slot_of: Vec<usize>,
    forks: Vec<Stack>,
    allowed: Vec<bool>,
    scratch: State,
}

impl JsonConstraint {
    /// A constraint for `format` (`text` is an error: it needs no constraint). `stop_ids` are
    /// the tokens that end generation; they are the only tokens allowed once the value is
    /// complete, so there must be at least one.
    pub fn new(
        format: &ResponseFormat,
        bytes: Arc<TokenBytes>,
        stop_ids: &[u32],
    ) -> Result<JsonConstraint, ConstrainError> {
        let grammar = format
            .grammar()?
            .ok_or_else(|| ConstrainError::Invalid("type `text` needs no constraint".into()))?;
        JsonConstraint::from_grammar(Arc::new(grammar), bytes, stop_ids)
    }

    /// A constraint for a compiled grammar.
    pub fn from_grammar(
        grammar: Arc<Grammar>,
        bytes: Arc<TokenBytes>,
        stop_ids: &[u32],
    ) -> Result<JsonConstraint, ConstrainError> {
        if stop_ids.is_empty() {
            return Err(ConstrainError::Invalid(
                "constrained decoding needs at least one stop token".into(),
            ));
        }
        let depth = bytes.trie.max_depth + 1;
        Ok(JsonConstraint {
            state: State::new(grammar.root),
            grammar,
            stop_ids: stop_ids.to_vec(),
            done: false,
            stuck: false,
            walk: vec![State::default(); depth],
            slot_of: vec![0; depth],
            forks: Vec::new(),
            allowed: vec![false; bytes.len()],
            scratch: State::default(),
            bytes,
        })
    }

    /// Which tokens may come next, by id (`allowed[id]`), stop tokens included.
    pub fn allowed(&mut self) -> &[bool] {
        self.compute_allowed();
        &self.allowed
    }

    fn compute_allowed(&mut self) {
        self.allowed.iter_mut().for_each(|a| *a = false);
        let complete = self.is_complete();
        if complete || self.state.can_finish(&self.grammar) {
            for &id in &self.stop_ids {
                if let Some(a) = self.allowed.get_mut(id as usize) {
                    *a = true;
                }
            }
        }
        if complete {
            return;
        }
        let trie = &self.bytes.trie;
        let g = &*self.grammar;
        self.walk[0].copy_from(&self.state);
        self.slot_of[0] = 0;
        let mut i = 0usize;
        let n = trie.len();
        while i < n {
            let d = trie.depth[i] as usize;
            let b = trie.byte[i];
            let parent = self.slot_of[d - 1];
            if trie.plain[i] {
                if let Some(room) = self.walk[parent].plain_room() {
                    // The whole subtree stays inside the string: its tokens are allowed when
                    // they fit in what is left of a maximum length.
                    let (lo, hi) = (trie.sub_lo[i] as usize, trie.sub_hi[i] as usize);
                    let before = d - 1;
                    for &id in &trie.ids[lo..hi] {
                        let fits = room == u32::MAX
                            || self
                                .bytes
                                .get(id)
                                .is_some_and(|t| t.len().saturating_sub(before) <= room as usize);
                        if fits {
                            if let Some(a) = self.allowed.get_mut(id as usize) {
                                *a = true;
                            }
                        }
                    }
                    i = trie.end[i] as usize;
                    continue;
                }
            }
            if self.walk[parent].unchanged_by(b) {
                self.slot_of[d] = parent;
            } else {
                let (lo, hi) = self.walk.split_at_mut(d);
                if !lo[parent].advance(g, b, &mut hi[0], &mut self.forks) {
                    i = trie.end[i] as usize;
                    continue;
                }
                self.slot_of[d] = d;
            }
            for &id in &trie.ids[trie.tok_lo[i] as usize..trie.tok_hi[i] as usize] {
                if let Some(a) = self.allowed.get_mut(id as usize) {
                    *a = true;
                }
            }
            i += 1;
        }
        self.stuck = !self.allowed.iter().any(|a| *a);
        if self.stuck {
            for &id in &self.stop_ids {
                if let Some(a) = self.allowed.get_mut(id as usize) {
                    *a = true;
                }
            }
        }
    }

    /// Set `-inf` on the logits of tokens that cannot come next.
    pub fn mask(&mut self, logits: &mut [f32]) {
        self.compute_allowed();
        for (i, l) in logits.iter_mut().enumerate() {
            if !self.allowed.get(i).copied().unwrap_or(false) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Advance with the chosen token. An error leaves the state as it was.
    pub fn accept(&mut self, token: u32) -> Result<(), String> {
        if self.done {
            return Err("the JSON value is already complete".into());
        }
        if self.stop_ids.contains(&token) {
            if self.state.is_closed() || self.state.can_finish(&self.grammar) || self.stuck {
                self.done = true;
                return Ok(());
            }
            return Err(format!(
                "stop token {token} before the JSON value is complete"
            ));
        }
        if self.state.is_closed() {
            return Err(format!("token {token} after the complete JSON value"));
        }
        let Some(bytes) = self.bytes.get(token) else {
            return Err(format!("token {token} cannot appear in JSON output"));
        };
        let mut cur = self.state.clone();
        for (k, &b) in bytes.iter().enumerate() {
            if !cur.advance(&self.grammar, b, &mut self.scratch, &mut self.forks) {
                return Err(format!(
                    "token {token} ({:?}) does not fit the JSON schema at byte {k}",
                    String::from_utf8_lossy(bytes)
                ));
            }
            std::mem::swap(&mut cur, &mut self.scratch);
        }
        self.state = cur;
        Ok(())
    }

    /// The value is finished: a stop token was accepted, or nothing but one can follow.
    pub fn is_complete(&self) -> bool {
        self.done || self.state.is_closed()
    }

    /// The input so far is a complete value, though it might go on (a number at the top level).
    pub fn can_stop(&self) -> bool {
        self.is_complete() || self.state.can_finish(&self.grammar)
    }
}

impl crate::scheduler::TokenConstraint for JsonConstraint {
    fn mask(&mut self, logits: &mut [f32]) {
        JsonConstraint::mask(self, logits)
    }

    fn accept(&mut self, token: u32) -> Result<(), String> {
        JsonConstraint::accept(self, token)
    }

    fn is_complete(&self) -> bool {
        JsonConstraint::is_complete(self)
    }
}
