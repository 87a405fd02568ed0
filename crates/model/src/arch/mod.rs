//! The architectures. Each is one file that reads like its paper; they share the blocks in
//! [`layers`] and the rotary tables in [`rope`]. A new architecture touches its file, one
//! [`Arch`] variant and one arm in [`build`].

pub mod deepseek2;
pub mod layers;
pub mod llama;
pub mod rope;

use crate::error::{ModelError, Result};
use crate::kv::KvCache;
use crate::load::LoadedModel;
use crate::spec::{Arch, ModelSpec};
use mixture_kernels::reuse::{self, Buf, Stash};

/// A model ready to run. Stateless between calls: all per-sequence state is in the
/// [`KvCache`] the caller passes.
pub trait Architecture: Send + Sync {
    fn spec(&self) -> &ModelSpec;

    /// Per-layer `(k_width, v_width)` values stored in the KV cache for one token.
    fn kv_widths(&self) -> Vec<(usize, usize)>;

    /// Run `tokens` at positions `cache.len ..` and append them to the cache.
    /// Returns logits `[tokens.len(), vocab]` ([`Logits::All`]) or `[1, vocab]` for the last
    /// token only ([`Logits::Last`]: a prompt before generation needs no more, and the output
    /// matrix is the largest one). On error the cache may hold a partial step; callers
    /// truncate it back to its previous length.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache, logits: Logits) -> Result<Vec<f32>>;

    /// Several sequences in one pass, each with its own tokens, cache and logits choice
    /// (e.g. one prefill chunk and several decode steps). Returns each item's logits, as
    /// [`Architecture::forward`] would for it alone (up to float rounding: the stacked rows
    /// may take another matmul kernel). Architectures override it to run every weight once
    /// over the rows of all sequences; positions, attention and the cache append stay per
    /// sequence. On error any cache may hold a partial step: callers truncate them back.
    fn forward_batch(&self, items: &mut [BatchItem<'_>]) -> Result<Vec<Vec<f32>>> {
        items
            .iter_mut()
            .map(|it| self.forward(it.tokens, it.cache, it.logits))
            .collect()
    }

    /// An empty cache shaped for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(&self.kv_widths())
    }
}

/// One sequence's part of a [`Architecture::forward_batch`] call.
#[derive(Debug)]
pub struct BatchItem<'a> {
    /// New tokens, run at positions `cache.len ..`.
    pub tokens: &'a [u32],
    pub cache: &'a mut KvCache,
    pub logits: Logits,
}

/// Run one sequence through `run` (an architecture's batched forward, which appends each
/// item's logits to the vector it is given): [`Architecture::forward`] without allocating
/// the list of one.
pub(crate) fn forward_one(
    item: BatchItem<'_>,
    run: impl FnOnce(&mut [BatchItem<'_>], &mut Vec<Vec<f32>>) -> Result<()>,
) -> Result<Vec<f32>> {
    thread_local! {
        static LOGITS: Stash<Vec<f32>> = const { Stash::new() };
    }
    let mut outs: Vec<Vec<f32>> = Stash::take(&LOGITS);
    let done = run(&mut [item], &mut outs);
    let logits = outs.pop();
    Stash::put(&LOGITS, outs);
    done?;
    Ok(logits.unwrap_or_default())
}

/// Where each item's rows start in the stacked `[total, hidden]` activations of a batch.
pub(crate) struct BatchRows {
    pub start: Vec<usize>,
    pub tokens: Vec<u32>,
}

thread_local! {
    // `BatchRows`' vectors, kept between forward passes (`reuse`).
    static STARTS: Stash<usize> = const { Stash::new() };
    static TOKENS: Stash<u32> = const { Stash::new() };
}

impl Drop for BatchRows {
    fn drop(&mut self) {
        Stash::put(&STARTS, std::mem::take(&mut self.start));
        Stash::put(&TOKENS, std::mem::take(&mut self.tokens));
    }
}

impl BatchRows {
    /// Check every item (context, cache shape, a row to take logits from) before anything
    /// changes, and stack their tokens.
    pub(crate) fn of(items: &[BatchItem<'_>], n_layers: usize, context: usize) -> Result<Self> {
        let mut rows = BatchRows {
            start: Stash::take(&STARTS),
            tokens: Stash::take(&TOKENS),
        };
        let BatchRows { start, tokens } = &mut rows;
        for it in items {
            check_context(it.cache.len + it.tokens.len(), context)?;
            if it.cache.layers.len() != n_layers {
                return Err(ModelError::Invalid(format!(
                    "a cache of {} layers for a model of {n_layers}",
                    it.cache.layers.len()
                )));
            }
            if it.tokens.is_empty() && it.logits == Logits::Last {
                return Err(ModelError::Invalid(
                    "the last token's logits of no tokens".into(),
                ));
            }
            start.push(tokens.len());
            tokens.extend_from_slice(it.tokens);
        }
        Ok(rows)
    }

    /// Item `i`'s rows `[first, end)`.
    pub(crate) fn range(&self, i: usize) -> std::ops::Range<usize> {
        let end = self.start.get(i + 1).copied().unwrap_or(self.tokens.len());
        self.start[i]..end
    }

    /// The final hidden state `x` (`[total, d]`) to logits: each item's selected rows
    /// (all, or its last) normalised and projected in one matmul, then split per item and
    /// appended to `out`.
    pub(crate) fn logits(
        &self,
        items: &[BatchItem<'_>],
        x: Buf,
        d: usize,
        norm: &layers::RmsNorm,
        output: &layers::Linear,
        out: &mut Vec<Vec<f32>>,
    ) -> Result<()> {
        let mut counts: Vec<usize> = Stash::take(&COUNTS);
        let mut sel = if items.len() == 1 {
            // One sequence: its rows as they are (no copy for `All`).
            let r = self.range(0);
            let (sel, n) = items[0].logits.select(x, r.len(), d);
            counts.push(n);
            sel
        } else {
            let mut sel = Buf::zeros(0);
            for (i, it) in items.iter().enumerate() {
                let r = self.range(i);
                let rows = match it.logits {
                    Logits::All => r,
                    Logits::Last => r.end - 1..r.end,
                };
                counts.push(rows.len());
                sel.extend_from_slice(&x[rows.start * d..rows.end * d]);
            }
            sel
        };
        norm.apply(&mut sel);
        let total: usize = counts.iter().sum();
        let all = output.forward(&sel, total)?; // [total, vocab]
        if counts.len() == 1 {
            out.push(all.into_vec());
        } else {
            let vocab = output.out;
            let mut at = 0;
            for &n in &counts {
                out.push(reuse::floats_from(&all[at * vocab..(at + n) * vocab]));
                at += n;
            }
        }
        Stash::put(&COUNTS, counts);
        Ok(())
    }
}

thread_local! {
    static COUNTS: Stash<usize> = const { Stash::new() };
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    All,
    Last,
}

impl Logits {
    /// The rows of the final hidden state `x` (`[t, d]`) to project: all, or the last.
    pub fn select(self, x: Buf, t: usize, d: usize) -> (Buf, usize) {
        match self {
            Logits::All => (x, t),
            Logits::Last => (Buf::copy_of(&x[(t - 1) * d..t * d]), 1),
        }
    }
}

/// Build the architecture named by the spec.
pub fn build(model: LoadedModel) -> Result<Box<dyn Architecture>> {
    Ok(match model.spec.arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3Moe | Arch::Mixtral => {
            Box::new(llama::Llama::new(model)?)
        }
        Arch::Deepseek2 => Box::new(deepseek2::Deepseek2::new(model)?),
    })
}

/// Refuse sequences longer than the model's context.
pub(crate) fn check_context(len: usize, max: usize) -> Result<()> {
    if max > 0 && len > max {
        return Err(ModelError::ContextOverflow { len, max });
    }
    Ok(())
}
