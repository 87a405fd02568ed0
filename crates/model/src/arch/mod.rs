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

    /// An empty cache shaped for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(&self.kv_widths())
    }
}

/// Which positions' logits a forward pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    All,
    Last,
}

impl Logits {
    /// The rows of the final hidden state `x` (`[t, d]`) to project: all, or the last.
    pub fn select(self, x: Vec<f32>, t: usize, d: usize) -> (Vec<f32>, usize) {
        match self {
            Logits::All => (x, t),
            Logits::Last => (x[(t - 1) * d..t * d].to_vec(), 1),
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
