//! The per-sequence key/value cache. The engine owns it; architectures say how wide each
//! layer's rows are ([`crate::arch::Architecture::kv_widths`]) and append to it.
//!
//! MLA layers store only the compressed latent plus the rope key in `k` (`kv_lora + rope`
//! values per token) and nothing in `v`.

#[derive(Debug, Clone)]
pub struct LayerKv {
    pub k: Vec<f32>,
    pub v: Vec<f32>,
    pub k_width: usize,
    pub v_width: usize,
}

#[derive(Debug, Clone)]
pub struct KvCache {
    pub layers: Vec<LayerKv>,
    /// Number of positions stored.
    pub len: usize,
}

impl KvCache {
    /// An empty cache with the given per-layer `(k_width, v_width)`.
    pub fn new(widths: &[(usize, usize)]) -> KvCache {
        KvCache {
            layers: widths
                .iter()
                .map(|&(k_width, v_width)| LayerKv {
                    k: Vec::new(),
                    v: Vec::new(),
                    k_width,
                    v_width,
                })
                .collect(),
            len: 0,
        }
    }

    /// Make room for `tokens` more positions without growing again (the decode loop then
    /// appends in place). Untouched capacity is address space only: no page of it is resident
    /// until written. Only a hint: a request the allocator refuses (or absurdly many tokens)
    /// leaves the cache to grow as it fills.
    pub fn reserve(&mut self, tokens: usize) {
        for l in &mut self.layers {
            for (v, w) in [(&mut l.k, l.k_width), (&mut l.v, l.v_width)] {
                if let Some(n) = tokens.checked_mul(w) {
                    let _ = v.try_reserve_exact(n);
                }
            }
        }
    }

    /// Drop everything after the first `len` positions.
    pub fn truncate(&mut self, len: usize) {
        for l in &mut self.layers {
            l.k.truncate(len * l.k_width);
            l.v.truncate(len * l.v_width);
        }
        self.len = self.len.min(len);
    }

    /// Values stored per token, over all layers (for reporting).
    pub fn values_per_token(&self) -> usize {
        self.layers.iter().map(|l| l.k_width + l.v_width).sum()
    }
}
