//! DeepSeek-V3/R1 native FP8 weights: `W.weight` (F8_E4M3, `[rows, cols]`) plus
//! `W.weight_scale_inv` (one multiplier per `block_rows x block_cols` tile, shape
//! `[ceil(rows / block_rows), ceil(cols / block_cols)]`): `w[r][c] = fp8(q[r][c]) *
//! scale_inv[r / block_rows][c / block_cols]`.
//!
//! For now the weight is dequantized at load into an owned F32 tensor. This is the simple,
//! exact path; for full-size V3/R1 it multiplies the weight memory by four, so the next step is
//! to repack straight into a block-quantized format (Q8_0 keeps FP8's precision at about
//! 1.06 bytes per weight) instead of F32.

use crate::error::{ModelError, Result};
use crate::tensor::{Storage, Tensor};
use mixture_kernels::quants::f8e4m3_to_f32;
use mixture_kernels::DType;
use rayon::prelude::*;
use std::sync::Arc;

/// The name of the scale that belongs to an FP8 tensor: `x.weight` → `x.weight_scale_inv`.
pub fn scale_name(weight: &str) -> String {
    format!("{weight}_scale_inv")
}

/// Dequantize a block-scaled FP8 weight into an owned F32 tensor of the same shape.
pub fn dequantize_fp8(
    name: &str,
    w: &Tensor,
    scale_inv: &Tensor,
    block: [usize; 2],
) -> Result<Tensor> {
    let invalid = |msg: String| ModelError::Invalid(format!("tensor `{name}`: {msg}"));
    if w.dtype != DType::F8E4M3 {
        return Err(invalid(format!("expected F8_E4M3, found {}", w.dtype)));
    }
    let (rows, cols) = match w.shape.as_slice() {
        [r, c] => (*r, *c),
        s => {
            return Err(invalid(format!(
                "FP8 weight must be 2-D, found shape {s:?}"
            )))
        }
    };
    let [br, bc] = block;
    if br == 0 || bc == 0 {
        return Err(invalid(format!(
            "FP8 block size {block:?} must be positive"
        )));
    }
    let (sr, sc) = (rows.div_ceil(br), cols.div_ceil(bc));
    scale_inv.expect_shape(&scale_name(name), &[sr, sc])?;
    let scales = scale_inv.to_f32()?;
    let q = w.bytes();
    let out_bytes = rows
        .checked_mul(cols)
        .and_then(|n| n.checked_mul(4))
        .ok_or_else(|| invalid(format!("shape {:?} overflows", w.shape)))?;
    if q.len() != rows * cols || scales.len() != sr * sc {
        return Err(invalid("byte length does not match the shape".into()));
    }
    let mut out = vec![0u8; out_bytes];
    if cols > 0 {
        out.par_chunks_mut(cols * 4)
            .zip(q.par_chunks(cols))
            .enumerate()
            .for_each(|(r, (dst, src))| {
                let srow = &scales[(r / br) * sc..(r / br + 1) * sc];
                for (c, (d, &b)) in dst.chunks_exact_mut(4).zip(src).enumerate() {
                    let v = f8e4m3_to_f32(b) * srow[c / bc];
                    d.copy_from_slice(&v.to_le_bytes());
                }
            });
    }
    Ok(Tensor {
        dtype: DType::F32,
        shape: w.shape.clone(),
        data: Storage::Owned(Arc::new(out)),
    })
}
