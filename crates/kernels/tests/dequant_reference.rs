//! Dequantization against reference vectors made by `tools/make_dequant_vectors.py`:
//! real blocks (gguf-py's quantizers where it has them, random bytes with sane scales where it
//! does not) and gguf-py's `gguf.quants.dequantize` output; FP8 E4M3 against torch's
//! `float8_e4m3fn`. See the script's header for where each file comes from.
//!
//! Comparison is bit-exact. Our dequantizers evaluate the same f32 expressions in the same
//! order as gguf-py (numpy, one rounding per operation, no fused multiply-add), so there is
//! nothing to tolerate. The one exception is NaN: a NaN must decode to a NaN of the same sign,
//! but the payload may differ (the `half` crate, like x86's F16C and ggml, quiets signalling
//! f16 NaNs; numpy keeps them signalling).

use mixture_kernels::quants::f8e4m3_to_f32;
use mixture_kernels::{DType, KernelError};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/dequant")
}

/// Read `<name>.bin` and `<name>.f32`; panics (fails the test) when either is missing.
fn load(name: &str) -> (Vec<u8>, Vec<f32>) {
    let dir = data_dir();
    let bin = std::fs::read(dir.join(format!("{name}.bin")))
        .unwrap_or_else(|e| panic!("missing reference blocks {name}.bin in {dir:?}: {e}"));
    let f32_bytes = std::fs::read(dir.join(format!("{name}.f32")))
        .unwrap_or_else(|e| panic!("missing reference values {name}.f32 in {dir:?}: {e}"));
    assert_eq!(
        f32_bytes.len() % 4,
        0,
        "{name}.f32 is not a whole number of f32s"
    );
    let refs = f32_bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (bin, refs)
}

fn same_value(got: f32, want: f32) -> bool {
    if want.is_nan() {
        got.is_nan() && got.is_sign_negative() == want.is_sign_negative()
    } else {
        got.to_bits() == want.to_bits()
    }
}

/// Dequantize the whole file as one row and compare every value bit for bit; also check a
/// row of a single block (the first) so block-boundary bookkeeping is exercised both ways.
fn check(dtype: DType, name: &str, min_blocks: usize) {
    let (bin, want) = load(name);
    let blocks = bin.len() / dtype.block_bytes();
    assert!(blocks >= min_blocks, "{name}: only {blocks} blocks");
    assert_eq!(
        bin.len(),
        blocks * dtype.block_bytes(),
        "{name}: ragged .bin"
    );
    assert_eq!(
        want.len(),
        blocks * dtype.block_size(),
        "{name}: .f32 length"
    );

    let mut got = vec![f32::NAN; want.len()];
    dtype.dequantize_row(&bin, &mut got).unwrap();
    let bad: Vec<usize> = (0..want.len())
        .filter(|&i| !same_value(got[i], want[i]))
        .collect();
    if let Some(&i) = bad.first() {
        panic!(
            "{name}: {} of {} values differ; first at {i} (block {}, element {}): \
             got {} ({:#010x}), want {} ({:#010x})",
            bad.len(),
            want.len(),
            i / dtype.block_size(),
            i % dtype.block_size(),
            got[i],
            got[i].to_bits(),
            want[i],
            want[i].to_bits(),
        );
    }

    let mut one = vec![0f32; dtype.block_size()];
    dtype
        .dequantize_row(&bin[..dtype.block_bytes()], &mut one)
        .unwrap();
    assert!(
        one.iter().zip(&want).all(|(&g, &w)| same_value(g, w)),
        "{name}: single-block row differs"
    );
}

#[test]
fn q4_0_matches_gguf_py() {
    check(DType::Q4_0, "Q4_0", 8);
}

#[test]
fn q4_1_matches_gguf_py() {
    check(DType::Q4_1, "Q4_1", 8);
}

#[test]
fn q5_0_matches_gguf_py() {
    check(DType::Q5_0, "Q5_0", 8);
}

#[test]
fn q5_1_matches_gguf_py() {
    check(DType::Q5_1, "Q5_1", 8);
}

#[test]
fn q8_0_matches_gguf_py() {
    check(DType::Q8_0, "Q8_0", 8);
}

#[test]
fn q2_k_matches_gguf_py() {
    check(DType::Q2K, "Q2_K", 4);
}

#[test]
fn q3_k_matches_gguf_py() {
    check(DType::Q3K, "Q3_K", 4);
}

#[test]
fn q4_k_matches_gguf_py() {
    check(DType::Q4K, "Q4_K", 4);
}

#[test]
fn q5_k_matches_gguf_py() {
    check(DType::Q5K, "Q5_K", 4);
}

#[test]
fn q6_k_matches_gguf_py() {
    check(DType::Q6K, "Q6_K", 4);
}

/// gguf-py has no Q8_K dequantizer; the reference is numpy's `d * q` in f32 (ggml's formula).
#[test]
fn q8_k_matches_reference() {
    check(DType::Q8K, "Q8_K", 4);
}

#[test]
fn f16_matches_numpy() {
    check(DType::F16, "F16", 512);
}

#[test]
fn bf16_matches_gguf_py() {
    check(DType::BF16, "BF16", 512);
}

/// All 256 FP8 E4M3 byte values against torch's `float8_e4m3fn` (the bytes are 0..=255),
/// bit for bit, the two NaN encodings included.
#[test]
fn f8e4m3_matches_torch() {
    let (bin, want) = load("F8_E4M3");
    assert_eq!(bin, (0..=255u8).collect::<Vec<_>>());
    assert_eq!(want.len(), 256);
    for (b, &w) in (0..=255u8).zip(&want) {
        let got = f8e4m3_to_f32(b);
        assert!(
            got.to_bits() == w.to_bits(),
            "byte {b:#04x}: got {got} ({:#010x}), torch {w} ({:#010x})",
            got.to_bits(),
            w.to_bits()
        );
    }
    check(DType::F8E4M3, "F8_E4M3", 256);
}

/// Every BF16 bit pattern widens to exactly `bits << 16` (ggml's and gguf-py's definition).
#[test]
fn bf16_all_patterns_are_a_shift() {
    let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let mut got = vec![0f32; 1 << 16];
    DType::BF16.dequantize_row(&src, &mut got).unwrap();
    for (bits, g) in (0..=u16::MAX).zip(got) {
        assert_eq!(g.to_bits(), u32::from(bits) << 16, "bf16 {bits:#06x}");
    }
}

/// Every F16 bit pattern against a decoder written from IEEE 754 binary16's definition.
#[test]
fn f16_all_patterns_match_ieee_definition() {
    let src: Vec<u8> = (0..=u16::MAX).flat_map(u16::to_le_bytes).collect();
    let mut got = vec![0f32; 1 << 16];
    DType::F16.dequantize_row(&src, &mut got).unwrap();
    for (bits, g) in (0..=u16::MAX).zip(got) {
        let sign = if bits & 0x8000 != 0 { -1.0f64 } else { 1.0 };
        let exp = i32::from((bits >> 10) & 0x1f);
        let man = f64::from(bits & 0x3ff);
        let want = match exp {
            0 => sign * man * 2f64.powi(-24),
            31 if man == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN.copysign(sign),
            _ => sign * (1.0 + man / 1024.0) * 2f64.powi(exp - 15),
        } as f32;
        assert!(same_value(g, want), "f16 {bits:#06x}: got {g}, want {want}");
    }
}

/// Wrong byte counts and ragged rows are errors, never panics, for every type.
#[test]
fn dequantize_row_rejects_bad_lengths() {
    for dt in DType::ALL {
        let (block, bytes) = (dt.block_size(), dt.block_bytes());
        let mut dst = vec![0f32; 2 * block];
        for got in [0, 2 * bytes - 1, 2 * bytes + 1, bytes, 3 * bytes] {
            let src = vec![0u8; got];
            assert_eq!(
                dt.dequantize_row(&src, &mut dst),
                Err(KernelError::ByteLength {
                    dtype: dt,
                    n: 2 * block,
                    expected: 2 * bytes,
                    got,
                }),
                "{dt}: {got} bytes"
            );
        }
        if block > 1 {
            for n in [1, block - 1, block + 1, 2 * block - 1] {
                let mut dst = vec![0f32; n];
                let src = vec![0u8; 2 * bytes];
                assert_eq!(
                    dt.dequantize_row(&src, &mut dst),
                    Err(KernelError::RaggedRow {
                        dtype: dt,
                        n,
                        block
                    }),
                    "{dt}: ragged row of {n}"
                );
            }
        }
        // An empty row is fine and writes nothing.
        assert_eq!(dt.dequantize_row(&[], &mut []), Ok(()), "{dt}: empty row");
    }
}
