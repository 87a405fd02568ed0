//! The ops models call: matmul against a stored weight of any [`DType`], normalisation,
//! softmax, activation and rotary embedding. Plain slices and dimensions in, slices out.
//!
//! [`matmul`] runs block-quantized weights through the integer kernels of [`crate::qdot`]
//! (activations quantized to int8 once per call) and float weights through f32 dots.
//! [`matmul_reference`] is the slow twin: weights dequantized row by row and multiplied in f32,
//! with activations rounded as the int8 kernels see them ([`crate::actquant`]).

use crate::actquant::{q8_1_offset_corrections, round_trip, ActFormat};
use crate::dtype::{DType, KernelError};
use crate::quants::read_f16;
use rayon::prelude::*;

/// A borrowed 2-D weight `[rows, cols]` in its stored format; each row holds `cols` elements
/// in whole blocks, rows are contiguous.
#[derive(Clone, Copy, Debug)]
pub struct WeightRef<'a> {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    pub data: &'a [u8],
}

impl<'a> WeightRef<'a> {
    /// Check that `data` holds exactly `rows` rows of `cols` elements.
    pub fn new(
        dtype: DType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let row = dtype.row_bytes(cols)?;
        let expected = row * rows;
        if data.len() != expected {
            return Err(KernelError::ByteLength {
                dtype,
                n: rows * cols,
                expected,
                got: data.len(),
            });
        }
        Ok(WeightRef {
            dtype,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.len() / self.rows.max(1)
    }

    /// Dequantize row `r` into `dst` (`dst.len() == cols`).
    pub fn dequantize_row(&self, r: usize, dst: &mut [f32]) -> Result<(), KernelError> {
        let rb = self.row_bytes();
        self.dtype
            .dequantize_row(&self.data[r * rb..(r + 1) * rb], dst)
    }

    /// The whole weight as f32, row-major `[rows, cols]`.
    pub fn to_f32(&self) -> Result<Vec<f32>, KernelError> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row)?;
        }
        Ok(out)
    }
}

/// Dot product of f32 vectors (SIMD when the CPU has it; see [`crate::vecf32`]).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    crate::vecf32::dot(a, b)
}

/// `out[t, n] = sum_k x[t, k] * w[n, k]` for `t` rows of activations.
///
/// `x.len() == t * w.cols`, `out.len() == t * w.rows`. Quantized weights use the integer
/// kernels on int8 activations ([`crate::qdot`]); float weights are dequantized per row.
/// Several independent matmuls go faster together: [`crate::matmul::matmul_many`].
pub fn matmul(x: &[f32], t: usize, w: &WeightRef<'_>, out: &mut [f32]) -> Result<(), KernelError> {
    assert_eq!(x.len(), t * w.cols, "matmul: activation shape");
    if t == 0 {
        return Ok(());
    }
    crate::matmul::matmul_many(&mut [crate::matmul::MatJob { w: *w, x, out }])
}

/// The reference twin of [`matmul`]: dequantize each weight row and dot in f32 with the
/// activations rounded as the integer kernels see them. Same contract as [`matmul`].
pub fn matmul_reference(
    x: &[f32],
    t: usize,
    w: &WeightRef<'_>,
    out: &mut [f32],
) -> Result<(), KernelError> {
    let (n, k) = (w.rows, w.cols);
    let x_orig = x;
    assert_eq!(x.len(), t * k, "matmul: activation shape");
    assert_eq!(out.len(), t * n, "matmul: output shape");
    if t == 0 || n == 0 {
        return Ok(());
    }
    // Quantize the activations once, as the integer kernels (and llama.cpp) do; the tiled
    // prefill kernel rounds the 32-element formats' activations as Q8_0.
    let fmt = if crate::matmul::takes_tiled_kernel(w.dtype, t) {
        crate::gemm::act_format(w.dtype)
    } else {
        ActFormat::for_weight(w.dtype)
    };
    let quantized;
    let x = if fmt == ActFormat::F32 {
        x
    } else {
        let mut q = x.to_vec();
        round_trip(fmt, &mut q);
        quantized = q;
        &quantized[..]
    };
    // Q4_1 / Q5_1 against Q8_1: the weights' per-block offset `m` (f16 at byte 2 of each
    // block) multiplies the activation block sum as Q8_1 stores it.
    let offsets = (fmt == ActFormat::Q8_1).then(|| q8_1_offset_corrections(x_orig));
    let block_bytes = w.dtype.block_bytes();
    let n_blocks = k / w.dtype.block_size();
    // Rows of w in parallel; each task dequantizes its rows once and dots them with every token.
    const REF_ROWS_PER_TASK: usize = 16;
    let mut transposed = vec![0f32; n * t]; // [n, t]
    transposed
        .par_chunks_mut(REF_ROWS_PER_TASK * t)
        .enumerate()
        .try_for_each_init(
            || vec![0f32; k],
            |row, (chunk, dst)| -> Result<(), KernelError> {
                for (i, d) in dst.chunks_exact_mut(t).enumerate() {
                    let r = chunk * REF_ROWS_PER_TASK + i;
                    w.dequantize_row(r, row)?;
                    for (ti, o) in d.iter_mut().enumerate() {
                        *o = dot(&x[ti * k..(ti + 1) * k], row);
                    }
                    if let Some(corr) = &offsets {
                        let bytes = &w.data[r * w.row_bytes()..(r + 1) * w.row_bytes()];
                        for (ti, o) in d.iter_mut().enumerate() {
                            let c = &corr[ti * n_blocks..(ti + 1) * n_blocks];
                            *o += bytes
                                .chunks_exact(block_bytes)
                                .zip(c)
                                .map(|(b, c)| read_f16(&b[2..4]) * c)
                                .sum::<f32>();
                        }
                    }
                }
                Ok(())
            },
        )?;
    for r in 0..n {
        for ti in 0..t {
            out[ti * n + r] = transposed[r * t + ti];
        }
    }
    Ok(())
}

/// RMS normalisation of each `w.len()`-wide row of `x` in place: `x * w / sqrt(mean(x^2) + eps)`.
pub fn rms_norm(x: &mut [f32], w: &[f32], eps: f32) {
    let d = w.len();
    for row in x.chunks_exact_mut(d) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for (v, g) in row.iter_mut().zip(w) {
            *v = *v * inv * g;
        }
    }
}

/// Numerically stable softmax in place.
pub fn softmax(x: &mut [f32]) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

/// log-softmax of `x` evaluated at index `i`.
pub fn log_softmax_at(x: &[f32], i: usize) -> f32 {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lse = x.iter().map(|v| ((v - max) as f64).exp()).sum::<f64>().ln() as f32 + max;
    x[i] - lse
}

/// SiLU activation: `x * sigmoid(x)`.
#[inline]
pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// Logistic sigmoid.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `gate[i] = silu(gate[i]) * up[i]`.
pub fn swiglu(gate: &mut [f32], up: &[f32]) {
    for (g, u) in gate.iter_mut().zip(up) {
        *g = silu(*g) * u;
    }
}

/// How the rotary embedding pairs the dimensions of a head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Adjacent pairs `(2i, 2i+1)` (ggml's "normal" rope; GGUF llama, DeepSeek).
    Interleaved,
    /// Halves `(i, i + d/2)` (GPT-NeoX / HF `rotate_half`).
    Neox,
}

/// Rotate the first `cos.len() * 2` dims of one head vector `x` with precomputed `cos`/`sin`
/// of length `rot_dims / 2`.
pub fn rope(x: &mut [f32], cos: &[f32], sin: &[f32], style: RopeStyle) {
    let half = cos.len();
    match style {
        RopeStyle::Interleaved => {
            for i in 0..half {
                let (a, b) = (x[2 * i], x[2 * i + 1]);
                x[2 * i] = a * cos[i] - b * sin[i];
                x[2 * i + 1] = a * sin[i] + b * cos[i];
            }
        }
        RopeStyle::Neox => {
            for i in 0..half {
                let (a, b) = (x[i], x[i + half]);
                x[i] = a * cos[i] - b * sin[i];
                x[i + half] = a * sin[i] + b * cos[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_matches_naive() {
        let (t, n, k) = (3, 5, 40);
        let x: Vec<f32> = (0..t * k)
            .map(|i| ((i * 7 % 13) as f32 - 6.0) / 5.0)
            .collect();
        let wf: Vec<f32> = (0..n * k)
            .map(|i| ((i * 5 % 11) as f32 - 5.0) / 3.0)
            .collect();
        let bytes: Vec<u8> = wf.iter().flat_map(|v| v.to_le_bytes()).collect();
        let w = WeightRef::new(DType::F32, n, k, &bytes).unwrap();
        let mut out = vec![0f32; t * n];
        matmul(&x, t, &w, &mut out).unwrap();
        for ti in 0..t {
            for r in 0..n {
                let want: f32 = (0..k).map(|i| x[ti * k + i] * wf[r * k + i]).sum();
                assert!((out[ti * n + r] - want).abs() < 1e-4, "{ti} {r}");
            }
        }
    }

    #[test]
    fn weight_ref_rejects_wrong_length() {
        assert!(WeightRef::new(DType::Q8_0, 2, 32, &[0u8; 67]).is_err());
        assert!(WeightRef::new(DType::Q8_0, 2, 33, &[0u8; 68]).is_err());
    }

    #[test]
    fn rope_styles_agree_under_permutation() {
        let x: Vec<f32> = (0..8).map(|i| i as f32 + 1.0).collect();
        let cos = [0.5f32, 0.8, 0.1, 0.9];
        let sin = [0.3f32, -0.2, 0.7, 0.4];
        let mut a = x.clone();
        rope(&mut a, &cos, &sin, RopeStyle::Interleaved);
        // interleaved pairs (2i,2i+1) == neox pairs (i, i+4) after permuting
        let mut p = vec![0f32; 8];
        for i in 0..4 {
            p[i] = x[2 * i];
            p[i + 4] = x[2 * i + 1];
        }
        rope(&mut p, &cos, &sin, RopeStyle::Neox);
        for i in 0..4 {
            assert!((a[2 * i] - p[i]).abs() < 1e-6);
            assert!((a[2 * i + 1] - p[i + 4]).abs() < 1e-6);
        }
    }
}
