//! The architectures. Each is one file that reads like its paper; they share the blocks in
//! [`layers`]. A new architecture touches its file, one [`Arch`] variant and one arm in
//! [`build`].

use crate::error::Result;
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
    /// Returns logits `[tokens.len(), vocab]`.
    fn forward(&self, tokens: &[u32], cache: &mut KvCache) -> Result<Vec<f32>>;

    /// An empty cache shaped for this model.
    fn new_cache(&self) -> KvCache {
        KvCache::new(&self.kv_widths())
    }
}

/// Build the architecture named by the spec.
pub fn build(model: LoadedModel) -> Result<Box<dyn Architecture>> {
    let _ = &model;
    match model.spec.arch {
        Arch::Llama | Arch::Qwen2 | Arch::Qwen3Moe | Arch::Mixtral | Arch::Deepseek2 => {
            Err(crate::error::ModelError::UnknownArch(
                model.spec.arch.name().to_string(),
            ))
        }
    }
}
