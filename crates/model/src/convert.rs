//! Load-time conversions shared by the format readers.

use crate::error::{ModelError, Result};
use crate::tensor::Tensor;

/// Split DeepSeek's `kv_b_proj` (`[n_head * (qk_nope + v_dim), kv_lora]`, as in HF checkpoints
/// and older GGUFs' `attn_kv_b`) into the absorbed-MLA pair used by the canonical scheme:
/// `k_b` `[n_head, kv_lora, qk_nope]` (each head's key block, transposed) and
/// `v_b` `[n_head, v_dim, kv_lora]`. Both are returned as owned f32 tensors.
pub fn split_kv_b(
    name: &str,
    kv_b: &Tensor,
    n_head: usize,
    qk_nope: usize,
    v_dim: usize,
    kv_lora: usize,
) -> Result<(Tensor, Tensor)> {
    let expected = [n_head * (qk_nope + v_dim), kv_lora];
    kv_b.expect_shape(name, &expected)?;
    let w = kv_b.to_f32()?;
    let per_head = (qk_nope + v_dim) * kv_lora;
    let mut k_b = vec![0f32; n_head * kv_lora * qk_nope];
    let mut v_b = vec![0f32; n_head * v_dim * kv_lora];
    for h in 0..n_head {
        let head = &w[h * per_head..(h + 1) * per_head];
        for d in 0..qk_nope {
            for l in 0..kv_lora {
                k_b[h * kv_lora * qk_nope + l * qk_nope + d] = head[d * kv_lora + l];
            }
        }
        v_b[h * v_dim * kv_lora..(h + 1) * v_dim * kv_lora]
            .copy_from_slice(&head[qk_nope * kv_lora..]);
    }
    if k_b.is_empty() && v_b.is_empty() {
        return Err(ModelError::Invalid(format!("{name}: empty kv_b")));
    }
    Ok((
        Tensor::from_f32(vec![n_head, kv_lora, qk_nope], &k_b),
        Tensor::from_f32(vec![n_head, v_dim, kv_lora], &v_b),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_kv_b_transposes_keys_and_copies_values() {
        let (h, nope, v, l) = (2, 3, 2, 4);
        let vals: Vec<f32> = (0..h * (nope + v) * l).map(|i| i as f32).collect();
        let t = Tensor::from_f32(vec![h * (nope + v), l], &vals);
        let (kb, vb) = split_kv_b("x", &t, h, nope, v, l).unwrap();
        let kb = kb.to_f32().unwrap();
        let vb = vb.to_f32().unwrap();
        // k_b[h][l][d] == kv_b[h*(nope+v) + d][l]
        assert_eq!(kb[(l * nope) + 2 * nope + 1], vals[(nope + v) * l + l + 2]);
        assert_eq!(kb[0], vals[0]);
        // v_b[1][0][3] == kv_b[1*(nope+v) + nope][3]
        assert_eq!(vb[v * l + 3], vals[((nope + v) + nope) * l + 3]);
        assert!(split_kv_b("x", &t, h, nope, v, l + 1).is_err());
    }
}
