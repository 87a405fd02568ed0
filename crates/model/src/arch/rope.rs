//! Rotary position embedding tables: base frequencies with the scalings real checkpoints use
//! (linear, YaRN, Llama 3, or per-dimension factors from a GGUF `rope_freqs` tensor).

use crate::spec::{RopeParams, RopeScaling};
use mixture_kernels::ops::{rope, RopeStyle};
use mixture_kernels::reuse::Stash;
use std::f64::consts::PI;

/// `get_mscale` of the YaRN paper / DeepSeek: `0.1 * m * ln(s) + 1` for scale `s > 1`.
pub fn yarn_mscale(scale: f32, m: f32) -> f32 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// Precomputed inverse frequencies and the factor applied to cos/sin.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f64>,
    /// Multiplies cos and sin (YaRN's attention factor; 1 otherwise).
    attn_factor: f32,
    style: RopeStyle,
}

impl Rope {
    /// Build the table for `params`; `freq_factors` (GGUF `rope_freqs`) divide the frequencies.
    pub fn new(params: &RopeParams, freq_factors: Option<&[f32]>) -> Rope {
        let dim = params.dims;
        let half = dim / 2;
        let base = params.theta as f64;
        let mut inv_freq: Vec<f64> = (0..half)
            .map(|i| 1.0 / base.powf((2 * i) as f64 / dim as f64))
            .collect();
        let mut attn_factor = 1.0f32;
        match &params.scaling {
            RopeScaling::None => {}
            RopeScaling::Linear { factor } => {
                for f in &mut inv_freq {
                    *f /= *factor as f64;
                }
            }
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_context,
            } => {
                let (factor, lo, hi) = (
                    *factor as f64,
                    *low_freq_factor as f64,
                    *high_freq_factor as f64,
                );
                let old = *original_context as f64;
                let low_wavelen = old / lo;
                let high_wavelen = old / hi;
                for f in &mut inv_freq {
                    let wavelen = 2.0 * PI / *f;
                    if wavelen > low_wavelen {
                        *f /= factor;
                    } else if wavelen >= high_wavelen {
                        let smooth = (old / wavelen - lo) / (hi - lo);
                        *f = (1.0 - smooth) * *f / factor + smooth * *f;
                    }
                }
            }
            RopeScaling::Yarn {
                factor,
                original_context,
                beta_fast,
                beta_slow,
                mscale,
                mscale_all_dim,
            } => {
                let f = *factor as f64;
                let orig = *original_context as f64;
                let corr_dim =
                    |rot: f64| (dim as f64 * (orig / (rot * 2.0 * PI)).ln()) / (2.0 * base.ln());
                let low = corr_dim(*beta_fast as f64).floor().max(0.0);
                let high = corr_dim(*beta_slow as f64).ceil().min(dim as f64 - 1.0);
                let high = if low == high { high + 0.001 } else { high };
                for (i, fr) in inv_freq.iter_mut().enumerate() {
                    let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                    let extrapolation = 1.0 - ramp;
                    let interp = *fr / f;
                    *fr = interp * (1.0 - extrapolation) + *fr * extrapolation;
                }
                attn_factor = if *mscale > 0.0 && *mscale_all_dim > 0.0 {
                    yarn_mscale(*factor, *mscale) / yarn_mscale(*factor, *mscale_all_dim)
                } else {
                    yarn_mscale(*factor, 1.0)
                };
            }
        }
        if let Some(ff) = freq_factors {
            for (f, d) in inv_freq.iter_mut().zip(ff) {
                *f /= *d as f64;
            }
        }
        Rope {
            inv_freq,
            attn_factor,
            style: params.style,
        }
    }

    /// cos and sin for one position into `cos` and `sin` (each `dims / 2` long).
    fn cos_sin_into(&self, pos: usize, cos: &mut [f32], sin: &mut [f32]) {
        for ((f, c), s) in self.inv_freq.iter().zip(cos).zip(sin) {
            // Angles in f32 like the references (position * inv_freq computed in f32).
            let angle = (pos as f32) * (*f as f32);
            *c = angle.cos() * self.attn_factor;
            *s = angle.sin() * self.attn_factor;
        }
    }

    /// Rotate each of the `n_heads` heads of `x` (stride `head_stride`, rotated part starting
    /// at `offset` within each head) at position `pos`.
    pub fn apply(
        &self,
        x: &mut [f32],
        n_heads: usize,
        head_stride: usize,
        offset: usize,
        pos: usize,
    ) {
        thread_local! {
            // The tables of one position, kept between calls (`reuse`).
            static TABLE: Stash<f32> = const { Stash::new() };
        }
        let mut table: Vec<f32> = Stash::take(&TABLE);
        let half = self.inv_freq.len();
        table.resize(2 * half, 0.0);
        let (cos, sin) = table.split_at_mut(half);
        self.cos_sin_into(pos, cos, sin);
        for h in 0..n_heads {
            let start = h * head_stride + offset;
            rope(&mut x[start..start + 2 * half], cos, sin, self.style);
        }
        Stash::put(&TABLE, table);
    }
}
