//! What a model costs per token: parameters and weight bytes in all and those one decoded
//! token reads, and the KV cache size per position. `inspect` prints it; `bench` divides the
//! measured memory bandwidth by the active bytes to get the decode bound.

use crate::names;
use crate::spec::HParams;
use crate::tensor::WeightStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    pub total_params: usize,
    /// Parameters that take part in one token (routed experts counted `used / n_experts`).
    pub active_params: usize,
    pub total_bytes: usize,
    /// Weight bytes one decoded token streams: every matrix it multiplies with (routed
    /// experts scaled by `used / n_experts`, the output matrix, the embedding table only when
    /// it doubles as the output), not the embedding table it only looks one row up in.
    pub active_bytes: usize,
    /// Values the KV cache holds per position (MLA: the latent plus the rope key).
    pub kv_values_per_token: usize,
}

impl Footprint {
    pub fn of(hp: &HParams, weights: &WeightStore) -> Footprint {
        let (mut total, mut experts, mut total_b, mut experts_b) = (0, 0, 0, 0);
        for (name, t) in &weights.tensors {
            total += t.numel();
            total_b += t.bytes().len();
            if name.contains(".exp.") {
                experts += t.numel();
                experts_b += t.bytes().len();
            }
        }
        let scale = |all: usize, exp: usize| match &hp.moe {
            Some(p) if p.n_experts > 0 => all - exp + exp / p.n_experts * p.n_experts_used,
            _ => all,
        };
        let embd_b = if weights.contains(names::OUTPUT) {
            weights
                .tensors
                .get(names::TOKEN_EMBD)
                .map_or(0, |t| t.bytes().len())
        } else {
            0
        };
        Footprint {
            total_params: total,
            active_params: scale(total, experts),
            total_bytes: total_b,
            active_bytes: scale(total_b, experts_b) - embd_b,
            kv_values_per_token: match &hp.mla {
                Some(p) => hp.n_layers * (p.kv_lora_rank + p.qk_rope_dim),
                None => hp.n_layers * 2 * hp.n_kv_heads * hp.head_dim,
            },
        }
    }
}
