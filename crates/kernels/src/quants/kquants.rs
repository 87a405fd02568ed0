//! ggml's K-quants: 256-element super-blocks split into sub-blocks of 16 or 32 elements, each
//! with its own small integer scale (and min), multiplied by f16 super-block scales.
//!
//! Shared packing of the 2-bit planes (Q2_K, Q3_K low bits, Q6_K high bits): a super-block is
//! two halves of 128 elements; in half `h`, element `128 h + 32 j + l` (`j` in 0..4, `l` in
//! 0..32) sits in bits `2j, 2j+1` of byte `32 h + l` of the plane.

use super::{read_f16, BlockFormat};
use std::mem::{offset_of, size_of};

/// Elements per super-block (ggml's `QK_K`).
pub const QK_K: usize = 256;
/// Bytes of packed 6-bit scales and mins in Q4_K / Q5_K.
pub const K_SCALE_SIZE: usize = 12;

/// Q2_K: 16 sub-blocks of 16; `x = d * sc * q - dmin * m`, `q` in 0..4, `sc`/`m` 4-bit
/// (low/high nibble of `scales[i]`).
#[repr(C)]
pub struct BlockQ2K {
    pub scales: [u8; QK_K / 16],
    pub qs: [u8; QK_K / 4],
    pub d: [u8; 2],
    pub dmin: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ2K>() == 84);

pub struct Q2K;
impl BlockFormat for Q2K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ2K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ2K, d)..]);
        let dmin = read_f16(&src[offset_of!(BlockQ2K, dmin)..]);
        let scales = &src[offset_of!(BlockQ2K, scales)..offset_of!(BlockQ2K, qs)];
        let qs = &src[offset_of!(BlockQ2K, qs)..offset_of!(BlockQ2K, d)];
        // Sub-block `s` (16 elements) = half `s / 8`, shift `2 * ((s / 2) % 4)`, bytes
        // `16 * (s % 2)..` of that half's 32 bytes.
        for (s, (y, &sc)) in dst.chunks_exact_mut(16).zip(scales).enumerate() {
            let dl = d * (sc & 0x0f) as f32;
            let ml = dmin * (sc >> 4) as f32;
            let shift = 2 * ((s / 2) % 4);
            let q = &qs[32 * (s / 8) + 16 * (s % 2)..][..16];
            for (o, &b) in y.iter_mut().zip(q) {
                *o = dl * ((b >> shift) & 3) as f32 - ml;
            }
        }
    }
}

/// Q3_K: 16 sub-blocks of 16; `x = d * (sc - 32) * (q - 4 * !hbit)`, `q` in 0..4 from `qs`,
/// the high bit from `hmask`, `sc` 6-bit packed in `scales` (see [`q3k_scales`]).
#[repr(C)]
pub struct BlockQ3K {
    pub hmask: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 4],
    pub scales: [u8; 12],
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ3K>() == 110);

/// Unpack Q3_K's sixteen 6-bit scales (already offset by -32). Low 4 bits: low nibbles of
/// bytes 0..8 for scales 0..8, high nibbles for scales 8..16. High 2 bits of scale `i`: bits
/// `2 (i / 4)` of byte `8 + i % 4`.
#[inline]
pub(crate) fn q3k_scales(packed: &[u8]) -> [i8; 16] {
    let mut out = [0i8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        let lo = if i < 8 {
            packed[i] & 0x0f
        } else {
            packed[i - 8] >> 4
        };
        let hi = (packed[8 + i % 4] >> (2 * (i / 4))) & 3;
        *o = (lo | (hi << 4)) as i8 - 32;
    }
    out
}

pub struct Q3K;
impl BlockFormat for Q3K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ3K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ3K, d)..]);
        let hmask = &src[offset_of!(BlockQ3K, hmask)..offset_of!(BlockQ3K, qs)];
        let qs = &src[offset_of!(BlockQ3K, qs)..offset_of!(BlockQ3K, scales)];
        let scales = q3k_scales(&src[offset_of!(BlockQ3K, scales)..offset_of!(BlockQ3K, d)]);
        // Sub-block `s`: half `s / 8`, plane `j = (s / 2) % 4`, bytes `16 * (s % 2)..`; the
        // high bit is bit `4 * half + j` of `hmask[16 * (s % 2) + l]`.
        for (s, (y, &sc)) in dst.chunks_exact_mut(16).zip(&scales).enumerate() {
            let dl = d * sc as f32;
            let j = (s / 2) % 4;
            let hbit = 4 * (s / 8) + j;
            let q = &qs[32 * (s / 8) + 16 * (s % 2)..][..16];
            let hm = &hmask[16 * (s % 2)..][..16];
            for ((o, &b), &h) in y.iter_mut().zip(q).zip(hm) {
                let low = ((b >> (2 * j)) & 3) as i8;
                let sub = if (h >> hbit) & 1 != 0 { 0 } else { 4 };
                *o = dl * (low - sub) as f32;
            }
        }
    }
}

/// Scale and min of sub-block `j` (0..8) from Q4_K / Q5_K's 12 packed bytes: 6 bits each.
/// `j < 4`: low 6 bits of bytes `j` (scale) and `j + 4` (min). `j >= 4`: low/high nibble of
/// byte `j + 4`, with the top 2 bits taken from bits 6..8 of bytes `j - 4` / `j`.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// Q4_K: 8 sub-blocks of 32; `x = d * sc * q - dmin * m`, `q` in 0..16. Byte `l` of the
/// 32-byte chunk `c` holds element `64 c + l` (low nibble) and `64 c + 32 + l` (high nibble).
#[repr(C)]
pub struct BlockQ4K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ4K>() == 144);

pub struct Q4K;
impl BlockFormat for Q4K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ4K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ4K, d)..]);
        let dmin = read_f16(&src[offset_of!(BlockQ4K, dmin)..]);
        let scales = &src[offset_of!(BlockQ4K, scales)..offset_of!(BlockQ4K, qs)];
        let qs = &src[offset_of!(BlockQ4K, qs)..Self::BYTES];
        for (c, (y, q)) in dst
            .chunks_exact_mut(64)
            .zip(qs.chunks_exact(32))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * c, scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for ((&b, l), h) in q.iter().zip(lo).zip(hi) {
                *l = d1 * (b & 0x0f) as f32 - m1;
                *h = d2 * (b >> 4) as f32 - m2;
            }
        }
    }
}

/// Q5_K: Q4_K plus a fifth bit: element `64 c + l` takes bit `2 c` of `qh[l]`, element
/// `64 c + 32 + l` takes bit `2 c + 1`.
#[repr(C)]
pub struct BlockQ5K {
    pub d: [u8; 2],
    pub dmin: [u8; 2],
    pub scales: [u8; K_SCALE_SIZE],
    pub qh: [u8; QK_K / 8],
    pub qs: [u8; QK_K / 2],
}
const _: () = assert!(size_of::<BlockQ5K>() == 176);

pub struct Q5K;
impl BlockFormat for Q5K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ5K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ5K, d)..]);
        let dmin = read_f16(&src[offset_of!(BlockQ5K, dmin)..]);
        let scales = &src[offset_of!(BlockQ5K, scales)..offset_of!(BlockQ5K, qh)];
        let qh = &src[offset_of!(BlockQ5K, qh)..offset_of!(BlockQ5K, qs)];
        let qs = &src[offset_of!(BlockQ5K, qs)..Self::BYTES];
        for (c, (y, q)) in dst
            .chunks_exact_mut(64)
            .zip(qs.chunks_exact(32))
            .enumerate()
        {
            let (sc1, m1) = scale_min_k4(2 * c, scales);
            let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
            let (d1, m1) = (d * sc1 as f32, dmin * m1 as f32);
            let (d2, m2) = (d * sc2 as f32, dmin * m2 as f32);
            let (lo, hi) = y.split_at_mut(32);
            for (((&b, &h), l), o) in q.iter().zip(qh).zip(lo).zip(hi) {
                let a = (b & 0x0f) | (((h >> (2 * c)) & 1) << 4);
                let e = (b >> 4) | (((h >> (2 * c + 1)) & 1) << 4);
                *l = d1 * a as f32 - m1;
                *o = d2 * e as f32 - m2;
            }
        }
    }
}

/// Q6_K: 16 sub-blocks of 16; `x = d * sc * (q - 32)`, `q` in 0..64 (low 4 bits in `ql`,
/// high 2 bits in `qh`), `sc` a signed 8-bit scale.
#[repr(C)]
pub struct BlockQ6K {
    pub ql: [u8; QK_K / 2],
    pub qh: [u8; QK_K / 4],
    pub scales: [i8; QK_K / 16],
    pub d: [u8; 2],
}
const _: () = assert!(size_of::<BlockQ6K>() == 210);

pub struct Q6K;
impl BlockFormat for Q6K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ6K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ6K, d)..]);
        let ql = &src[offset_of!(BlockQ6K, ql)..offset_of!(BlockQ6K, qh)];
        let qh = &src[offset_of!(BlockQ6K, qh)..offset_of!(BlockQ6K, scales)];
        let scales = &src[offset_of!(BlockQ6K, scales)..offset_of!(BlockQ6K, d)];
        // Half `h` (128 elements) uses ql[64h..64h+64], qh[32h..32h+32], scales[8h..8h+8].
        // Within it, element `32 j + l` (j in 0..4): low nibble (j even) or high nibble (j odd)
        // of ql[32 (j % 2) + l], high bits `2j, 2j+1` of qh[l], scale index `2 j + l / 16`.
        for (h, y) in dst.chunks_exact_mut(128).enumerate() {
            let ql = &ql[64 * h..][..64];
            let qh = &qh[32 * h..][..32];
            let sc = &scales[8 * h..][..8];
            for (j, yj) in y.chunks_exact_mut(32).enumerate() {
                let lows = &ql[32 * (j % 2)..][..32];
                let nib = 4 * (j / 2);
                for (l, ((o, &lb), &hb)) in yj.iter_mut().zip(lows).zip(qh).enumerate() {
                    let q = ((lb >> nib) & 0x0f) | (((hb >> (2 * j)) & 3) << 4);
                    let s = sc[2 * j + l / 16] as i8;
                    *o = d * s as f32 * (q as i8 - 32) as f32;
                }
            }
        }
    }
}

/// Q8_K: ggml's intermediate format for dot products: an f32 scale, 256 int8 quants and the
/// sums of each group of 16 quants (`bsums`, unused by dequantization). `x = d * q`.
#[repr(C)]
pub struct BlockQ8K {
    pub d: [u8; 4],
    pub qs: [i8; QK_K],
    pub bsums: [[u8; 2]; QK_K / 16],
}
const _: () = assert!(size_of::<BlockQ8K>() == 292);

pub struct Q8K;
impl BlockFormat for Q8K {
    const BLOCK: usize = QK_K;
    const BYTES: usize = size_of::<BlockQ8K>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let o = offset_of!(BlockQ8K, d);
        let d = f32::from_le_bytes([src[o], src[o + 1], src[o + 2], src[o + 3]]);
        let qs = &src[offset_of!(BlockQ8K, qs)..offset_of!(BlockQ8K, bsums)];
        for (y, &q) in dst.iter_mut().zip(qs) {
            *y = d * (q as i8) as f32;
        }
    }
}
