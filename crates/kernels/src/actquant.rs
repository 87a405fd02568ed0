//! Activation quantization: before a matmul against block-quantized weights, activations are
//! quantized once to the int8 format the integer dot product consumes — llama.cpp's
//! `vec_dot_type`: Q8_0 for Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants.
//!
//! The reference path ([`crate::ops::matmul`]) applies the same rounding as a round trip
//! (quantize, then dequantize to f32) and multiplies in f32, so its numbers are those of the
//! integer kernels up to summation order — and those of llama.cpp on the same file.
//! Float weights (F32, F16, BF16) keep f32 activations.

use crate::dtype::DType;
use half::f16;

/// The format activations are quantized to for a given weight type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActFormat {
    F32,
    /// 32 int8 values, f16 scale `amax / 127`.
    Q8_0,
    /// As Q8_0, plus the (f16) scaled sum of the block, used by the weights' offsets.
    Q8_1,
    /// 256 int8 values, f32 scale, scale sign chosen so the largest magnitude maps to -127.
    Q8K,
}

impl ActFormat {
    pub fn for_weight(w: DType) -> ActFormat {
        match w {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => ActFormat::Q8_0,
            DType::Q4_1 | DType::Q5_1 => ActFormat::Q8_1,
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K | DType::Q8K => {
                ActFormat::Q8K
            }
            DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 => ActFormat::F32,
        }
    }

    pub fn block(self) -> usize {
        match self {
            ActFormat::F32 => 1,
            ActFormat::Q8_0 | ActFormat::Q8_1 => 32,
            ActFormat::Q8K => 256,
        }
    }
}

/// Replace `x` (a whole number of blocks) by its quantize/dequantize round trip in `fmt`.
pub fn round_trip(fmt: ActFormat, x: &mut [f32]) {
    match fmt {
        ActFormat::F32 => {}
        ActFormat::Q8_0 | ActFormat::Q8_1 => {
            for b in x.chunks_mut(32) {
                let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                let d = f16::from_f32(amax / 127.0).to_f32();
                let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
                for v in b.iter_mut() {
                    *v = d * (*v * id).round_ties_even();
                }
            }
        }
        ActFormat::Q8K => {
            for b in x.chunks_mut(256) {
                let (mut amax, mut max) = (0f32, 0f32);
                for &v in b.iter() {
                    if v.abs() > amax {
                        amax = v.abs();
                        max = v;
                    }
                }
                if amax == 0.0 {
                    b.iter_mut().for_each(|v| *v = 0.0);
                    continue;
                }
                let iscale = -127.0 / max;
                let d = 1.0 / iscale;
                for v in b.iter_mut() {
                    *v = d * (iscale * *v).round_ties_even().min(127.0);
                }
            }
        }
    }
}

/// Q8_1 carries, per block, `s = f16(d * Σq)` (with `d = amax / 127` in f32), and the
/// Q4_1 / Q5_1 dot products use it for the weights' offsets: `Σ_b m_b * s_b`. The f32 round
/// trip of [`round_trip`] implies `f16(d) * Σq` instead. Weights centred near zero make the
/// offset term cancel most of the product, so that small difference is amplified; this
/// returns, for each block of each row, `s - f16(d) * Σq`, which [`crate::ops::matmul`] adds
/// times the block's weight offset `m_b`.
pub fn q8_1_offset_corrections(x: &[f32]) -> Vec<f32> {
    x.chunks(32)
        .map(|b| {
            let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
            let sum: f32 = b.iter().map(|v| (v * id).round_ties_even()).sum();
            f16::from_f32(d * sum).to_f32() - f16::from_f32(d).to_f32() * sum
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_is_close_and_idempotent_on_grid() {
        let mut x: Vec<f32> = (0..64)
            .map(|i| ((i * 29 % 17) as f32 - 8.0) * 0.37)
            .collect();
        let orig = x.clone();
        round_trip(ActFormat::Q8_0, &mut x);
        for (b, o) in x.chunks(32).zip(orig.chunks(32)) {
            let amax = o.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (q, v) in b.iter().zip(o) {
                assert!(
                    (q - v).abs() <= amax / 127.0 * 0.5 + 1e-3 * amax,
                    "{q} vs {v}"
                );
            }
            // the largest element is represented almost exactly
            let i = o.iter().position(|v| v.abs() == amax).unwrap();
            assert!((b[i] - o[i]).abs() <= amax * 1e-3);
        }
        assert_ne!(x, orig, "rounding must change some values");
    }

    #[test]
    fn q8k_maps_largest_magnitude_to_minus_127() {
        let mut x: Vec<f32> = (0..256).map(|i| (i as f32 - 100.0) / 7.0).collect();
        let orig = x.clone();
        round_trip(ActFormat::Q8K, &mut x);
        let amax = orig.iter().fold(0f32, |m, v| m.max(v.abs()));
        for (q, v) in x.iter().zip(&orig) {
            assert!((q - v).abs() <= amax / 127.0 * 0.51, "{q} vs {v}");
        }
        let mut zeros = vec![0f32; 256];
        round_trip(ActFormat::Q8K, &mut zeros);
        assert!(zeros.iter().all(|v| *v == 0.0));
    }

    #[test]
    fn formats_follow_llama_cpp_vec_dot_types() {
        assert_eq!(ActFormat::for_weight(DType::Q4_1), ActFormat::Q8_1);
        assert_eq!(ActFormat::for_weight(DType::Q8_0), ActFormat::Q8_0);
        assert_eq!(ActFormat::for_weight(DType::Q6K), ActFormat::Q8K);
        assert_eq!(ActFormat::for_weight(DType::BF16), ActFormat::F32);
    }
}
