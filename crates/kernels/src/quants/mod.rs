//! Block formats: one type per format implementing [`BlockFormat`], one dispatch point
//! ([`dequantize`]). Layouts follow ggml's definitions (`ggml-common.h`); each block struct's
//! byte size is asserted at compile time, and the dequantizers read fields at the offsets of
//! those structs (`offset_of!`), so the struct is the single statement of the layout.
//!
//! - plain floats (F32, F16, BF16, FP8 E4M3): this file
//! - legacy 32-element blocks (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): [`legacy`]
//! - 256-element super-blocks (Q2_K .. Q6_K, Q8_K): [`kquants`]
//!
//! Every dequantizer evaluates the same f32 expression in the same order as ggml's
//! `dequantize_row_*` (and gguf-py's numpy twins), so results are bit-exact; see
//! `tests/dequant_reference.rs`.

pub mod kquants;
pub mod legacy;

pub use kquants::*;
pub use legacy::*;

use crate::dtype::{DType, KernelError};

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
    for (s, d) in src
        .chunks_exact(F::BYTES)
        .zip(dst.chunks_exact_mut(F::BLOCK))
    {
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
        DType::Q4_0 => run::<Q4_0>(src, dst),
        DType::Q4_1 => run::<Q4_1>(src, dst),
        DType::Q5_0 => run::<Q5_0>(src, dst),
        DType::Q5_1 => run::<Q5_1>(src, dst),
        DType::Q8_0 => run::<Q8_0>(src, dst),
        DType::Q2K => run::<Q2K>(src, dst),
        DType::Q3K => run::<Q3K>(src, dst),
        DType::Q4K => run::<Q4K>(src, dst),
        DType::Q5K => run::<Q5K>(src, dst),
        DType::Q6K => run::<Q6K>(src, dst),
        DType::Q8K => run::<Q8K>(src, dst),
    }
    Ok(())
}

/// Read a little-endian IEEE half from the first two bytes of `b`.
#[inline(always)]
pub(crate) fn read_f16(b: &[u8]) -> f32 {
    f16_bits_to_f32(u16::from_le_bytes([b[0], b[1]]))
}

/// IEEE half to single, exactly (every half is a single), in a few integer operations that
/// inline into the converters' loops. `half`'s own conversion checks for F16C at run time and
/// is an out-of-line call per value, which cost the prefill converters a third of their time.
#[inline(always)]
pub fn f16_bits_to_f32(h: u16) -> f32 {
    let sign = ((h & 0x8000) as u32) << 16;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    match exp {
        // Zero and subnormals: man * 2^-24, exact in f32.
        0 => f32::from_bits((man as f32 * (1.0 / 16_777_216.0)).to_bits() | sign),
        // Infinities and NaNs (payload kept).
        31 => f32::from_bits(sign | 0x7f80_0000 | (man << 13)),
        // Normal: rebias the exponent from 15 to 127.
        _ => f32::from_bits(sign | ((exp + 112) << 23) | (man << 13)),
    }
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

/// bfloat16: the top half of an f32. Widening is a plain shift (as in ggml and gguf-py), so
/// every bit pattern, NaN payloads included, comes through unchanged.
pub struct BF16;
impl BlockFormat for BF16 {
    const BLOCK: usize = 1;
    const BYTES: usize = 2;
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        dst[0] = f32::from_bits(u32::from(u16::from_le_bytes([src[0], src[1]])) << 16);
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

/// Decode one FP8 E4M3FN value: 1 sign bit, 4 exponent bits (bias 7), 3 mantissa bits, no
/// infinities; `S.1111.111` is NaN. The result is built bit by bit (every E4M3 value is exact
/// in f32); a NaN keeps its sign and mantissa bits, as torch's `float8_e4m3fn` widening does.
pub fn f8e4m3_to_f32(b: u8) -> f32 {
    let sign = u32::from(b & 0x80) << 24;
    let exp = u32::from((b >> 3) & 0x0f);
    let man = u32::from(b & 0x07);
    let magnitude = if exp == 0x0f && man == 0x07 {
        0x7f80_0000 | (man << 20)
    } else if exp == 0 {
        // Subnormal: man * 2^-9, exact in f32 (0 stays 0, so -0 keeps its sign).
        (man as f32 * (1.0 / 512.0)).to_bits()
    } else {
        ((exp + 127 - 7) << 23) | (man << 20)
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes<F: BlockFormat>() -> (usize, usize) {
        (F::BLOCK, F::BYTES)
    }

    /// The format types and `DType`'s size table must agree, or `dequantize_row`'s length
    /// check and the block loop would disagree about where blocks start.
    #[test]
    fn block_sizes_match_dtype_table() {
        for dt in DType::ALL {
            let got = match dt {
                DType::F32 => sizes::<F32>(),
                DType::F16 => sizes::<F16>(),
                DType::BF16 => sizes::<BF16>(),
                DType::F8E4M3 => sizes::<F8E4M3>(),
                DType::Q4_0 => sizes::<Q4_0>(),
                DType::Q4_1 => sizes::<Q4_1>(),
                DType::Q5_0 => sizes::<Q5_0>(),
                DType::Q5_1 => sizes::<Q5_1>(),
                DType::Q8_0 => sizes::<Q8_0>(),
                DType::Q2K => sizes::<Q2K>(),
                DType::Q3K => sizes::<Q3K>(),
                DType::Q4K => sizes::<Q4K>(),
                DType::Q5K => sizes::<Q5K>(),
                DType::Q6K => sizes::<Q6K>(),
                DType::Q8K => sizes::<Q8K>(),
            };
            assert_eq!(got, (dt.block_size(), dt.block_bytes()), "{dt}");
        }
    }
}

#[cfg(test)]
mod f16_tests {
    use super::f16_bits_to_f32;

    #[test]
    fn every_half_converts_as_the_half_crate_does() {
        for h in 0..=u16::MAX {
            let want = half::f16::from_bits(h).to_f32();
            let got = f16_bits_to_f32(h);
            assert!(
                got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                "{h:#06x}: {got:e} vs {want:e}"
            );
        }
    }
}
