//! Block formats: one type per format implementing [`BlockFormat`], one dispatch point
//! ([`dequantize`]). Layouts follow ggml's definitions (`ggml-common.h`); each block struct's
//! byte size is asserted at compile time.

use crate::dtype::{DType, KernelError};
use half::{bf16, f16};

/// A block-quantized (or plain float) storage format.
pub trait BlockFormat {
    /// Elements per block.
    const BLOCK: usize;
    /// Bytes per block.
    const BYTES: usize;
    /// Dequantize one block (`src.len() == BYTES`, `dst.len() == BLOCK`).
    fn dequantize_block(src: &[u8], dst: &mut [f32]);
}

fn run<F: BlockFormat>(src: &[u8], dst: &mut [f32]) {
    for (s, d) in src.chunks_exact(F::BYTES).zip(dst.chunks_exact_mut(F::BLOCK)) {
        F::dequantize_block(s, d);
    }
}

/// Dequantize `src` into `dst`; lengths have been checked by the caller
/// ([`DType::dequantize_row`]).
pub(crate) fn dequantize(dtype: DType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    match dtype {
        DType::F32 => run::<F32>(src, dst),
        DType::F16 => run::<F16>(src, dst),
        DType::BF16 => run::<BF16>(src, dst),
        DType::F8E4M3 => run::<F8E4M3>(src, dst),
        DType::Q8_0 => run::<Q8_0>(src, dst),
        other => return Err(KernelError::Unsupported(other)),
    }
    Ok(())
}

#[inline]
pub(crate) fn read_f16(b: &[u8]) -> f32 {
    f16::from_le_bytes([b[0], b[1]]).to_f32()
}

pub struct F32;
impl BlockFormat for F32 {
    const BLOCK: usize = 1;
    const BYTES: usize = 4;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        dst[0] = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    }
}

pub struct F16;
impl BlockFormat for F16 {
    const BLOCK: usize = 1;
    const BYTES: usize = 2;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        dst[0] = read_f16(src);
    }
}

pub struct BF16;
impl BlockFormat for BF16 {
    const BLOCK: usize = 1;
    const BYTES: usize = 2;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        dst[0] = bf16::from_le_bytes([src[0], src[1]]).to_f32();
    }
}

/// FP8 E4M3 ("fn" variant: no infinities, 0x7f/0xff are NaN), as in DeepSeek-V3 checkpoints.
pub struct F8E4M3;
impl BlockFormat for F8E4M3 {
    const BLOCK: usize = 1;
    const BYTES: usize = 1;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        dst[0] = f8e4m3_to_f32(src[0]);
    }
}

/// Decode one FP8 E4M3FN value: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits.
pub fn f8e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let exp = ((b >> 3) & 0x0f) as i32;
    let man = (b & 0x07) as f32;
    if exp == 0x0f && (b & 0x07) == 0x07 {
        return f32::NAN;
    }
    if exp == 0 {
        sign * man / 8.0 * 2f32.powi(-6)
    } else {
        sign * (1.0 + man / 8.0) * 2f32.powi(exp - 7)
    }
}

/// Q8_0: 32 int8 values with one f16 scale: `x = d * q`.
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);

pub struct Q8_0;
impl BlockFormat for Q8_0 {
    const BLOCK: usize = 32;
    const BYTES: usize = 34;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(src);
        for (o, &q) in dst.iter_mut().zip(&src[2..34]) {
            *o = d * (q as i8) as f32;
        }
    }
}
