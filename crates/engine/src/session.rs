//! One sequence over a model: prefill, decode, generate, score.

use crate::sampler::Sampler;
use crate::{EngineError, Result};
use mixture_kernels::ops::log_softmax_at;
use mixture_kernels::reuse;
use mixture_model::arch::{Architecture, Logits};
use mixture_model::{KvCache, ModelError};

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token (end of sequence / end of turn) was produced.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The model's context is full.
    Context,
}

/// Positions reserved at most ahead of use: a long answer beyond them grows the cache as it
/// fills (amortised doubling), but a sequence never commits address space for a 128k context
/// it may not use (which counts under strict overcommit, `vm.overcommit_memory=2`).
const RESERVE_AHEAD: usize = 8192;

/// Reserve room in `cache` for `tokens` more positions, capped at the context `ctx` (0 =
/// unknown) and at [`RESERVE_AHEAD`].
pub(crate) fn reserve_room(cache: &mut KvCache, ctx: usize, tokens: usize) {
    let room = if ctx > 0 {
        tokens.min(ctx.saturating_sub(cache.len))
    } else {
        tokens
    };
    cache.reserve(room.min(RESERVE_AHEAD));
}

pub struct Session<'m> {
    model: &'m dyn Architecture,
    cache: KvCache,
    vocab: usize,
}

impl<'m> Session<'m> {
    pub fn new(model: &'m dyn Architecture) -> Session<'m> {
        Session {
            cache: model.new_cache(),
            vocab: model.spec().hparams.vocab_size,
            model,
        }
    }

    /// The model's context length (0 = unknown).
    pub fn context_length(&self) -> usize {
        self.model.spec().hparams.context_length
    }

    /// Positions held in the cache.
    pub fn len(&self) -> usize {
        self.cache.len
    }

    pub fn is_empty(&self) -> bool {
        self.cache.len == 0
    }

    /// Make room in the cache for `tokens` more positions (at most up to the context, and
    /// 8192 ahead), so that decoding them appends in place.
    pub fn reserve(&mut self, tokens: usize) {
        let ctx = self.context_length();
        reserve_room(&mut self.cache, ctx, tokens);
    }

    /// Forget everything.
    pub fn reset(&mut self) {
        self.cache.truncate(0);
    }

    /// Keep only the first `len` positions (to reuse a shared prefix of a new prompt).
    pub fn truncate(&mut self, len: usize) {
        self.cache.truncate(len);
    }

    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(ModelError::TokenOutOfRange {
                id,
                vocab: self.vocab,
            }
            .into());
        }
        Ok(())
    }

    /// Run `ids` through the model; returns logits `[ids.len(), vocab]`. The cache is left
    /// unchanged on error.
    pub fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        self.feed_with(ids, Logits::All)
    }

    /// Run `ids` through the model; returns the last token's logits `[vocab]` only (what
    /// generation needs; skips the output projection of the others).
    pub fn feed_last(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(EngineError::Request("nothing to feed".into()));
        }
        self.feed_with(ids, Logits::Last)
    }

    fn feed_with(&mut self, ids: &[u32], logits: Logits) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let before = self.cache.len;
        let (model, cache) = (self.model, &mut self.cache);
        match model.forward(ids, cache, logits) {
            Ok(l) => Ok(l),
            Err(e) => {
                self.cache.truncate(before);
                Err(e.into())
            }
        }
    }

    /// Feed a prompt and generate up to `max_tokens` tokens, calling `on_token` for each
    /// (return `false` from it to stop early). Stops after emitting any of `stop_ids`.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        max_tokens: usize,
        sampler: &mut Sampler,
        stop_ids: &[u32],
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<(Vec<u32>, StopReason)> {
        if prompt.is_empty() {
            return Err(EngineError::Request("the prompt is empty".into()));
        }
        let ctx = self.model.spec().hparams.context_length;
        // Room for the whole answer up front (capped at the context): the cache then never
        // grows (and copies itself) while decoding.
        self.reserve(prompt.len().saturating_add(max_tokens));
        let mut last = self.feed_last(prompt)?;
        let mut out = Vec::new();
        loop {
            if out.len() >= max_tokens {
                return Ok((out, StopReason::Length));
            }
            let tok = sampler.sample(&last);
            // The logits' buffer goes back for the next step's (no allocation per token).
            reuse::give(std::mem::take(&mut last));
            out.push(tok);
            if !on_token(tok) || stop_ids.contains(&tok) {
                return Ok((out, StopReason::Stop));
            }
            if out.len() >= max_tokens {
                return Ok((out, StopReason::Length));
            }
            if ctx > 0 && self.cache.len >= ctx {
                return Ok((out, StopReason::Context));
            }
            last = self.feed_last(&[tok])?;
        }
    }

    /// Per-token log-probabilities of `ids` under the model: entry `i-1` is
    /// `log p(ids[i] | ids[..i])` for `i = 1..n`. Starts from an empty cache.
    pub fn score(&mut self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.len() < 2 {
            return Err(EngineError::Request(
                "scoring needs at least two token ids".into(),
            ));
        }
        self.reset();
        let logits = self.feed(ids)?;
        Ok((1..ids.len())
            .map(|i| {
                log_softmax_at(
                    &logits[(i - 1) * self.vocab..i * self.vocab],
                    ids[i] as usize,
                )
            })
            .collect())
    }
}
