//! Portable twins of every dot product: integer sums within a block, one f32 term per block
//! (per super-block for the K-quants) added in order, as ggml's generic `vec_dot_*`. The SIMD
//! kernels are tested against these.
//!
//! Every kernel takes `nb = a.len()` blocks and panics if `w` is shorter than `nb` weight
//! blocks (once per row, before any work).

use super::{BlockQ8Kx, BlockQ8_0x, BlockQ8_1x, DotTable, DotTableG, DotTableN, Isa};
use crate::quants::kquants::{q3k_scales, scale_min_k4};
use crate::quants::{
    read_f16, BlockQ2K, BlockQ3K, BlockQ4K, BlockQ4_0, BlockQ4_1, BlockQ5K, BlockQ5_0, BlockQ5_1,
    BlockQ6K, BlockQ8_0,
};
use std::mem::{offset_of, size_of};

pub const TABLE: DotTable = DotTable {
    isa: Isa::Scalar,
    g: DotTableG {
        q4_0: None,
        q5_0: None,
        q4_1: None,
        q5_1: None,
        q8_0: None,
    },
    n: DotTableN {
        q4_0: None,
        q5_0: None,
        q8_0: None,
        q4_1: None,
        q5_1: None,
        q2k: None,
        q3k: None,
        q4k: None,
        q5k: None,
        q6k: None,
    },
    q4_0,
    q5_0,
    q8_0,
    q4_1,
    q5_1,
    q2k,
    q3k,
    q4k,
    q5k,
    q6k,
};

/// The weight blocks of a row, checked to cover `nb` blocks.
#[inline]
pub(crate) fn blocks(w: &[u8], bytes: usize, nb: usize) -> std::slice::ChunksExact<'_, u8> {
    assert!(
        w.len() >= nb * bytes,
        "weight row shorter than its activations"
    );
    w[..nb * bytes].chunks_exact(bytes)
}

/// Nibble-packed 32-element block: element `j` low nibble of byte `j`, `j + 16` high nibble.
#[inline]
fn nibbles(qs: &[u8]) -> [u8; 32] {
    let mut q = [0u8; 32];
    for (j, &b) in qs.iter().enumerate().take(16) {
        q[j] = b & 0x0f;
        q[j + 16] = b >> 4;
    }
    q
}

/// The fifth bits of a Q5_0 / Q5_1 block: bit `j` of little-endian `qh`, moved to bit 4.
#[inline]
fn with_high_bits(mut q: [u8; 32], qh: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (j, v) in q.iter_mut().enumerate() {
        *v |= (((h >> j) & 1) as u8) << 4;
    }
    q
}

#[inline]
fn isum(q: &[u8; 32], offset: i32, a: &[i8; 32]) -> i32 {
    q.iter()
        .zip(a)
        .map(|(&w, &x)| (w as i32 - offset) * x as i32)
        .sum()
}

pub fn q4_0(w: &[u8], a: &[BlockQ8_0x]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ4_0>(), a.len()).zip(a) {
        let q = nibbles(&b[offset_of!(BlockQ4_0, qs)..]);
        sum += isum(&q, 8, &y.qs) as f32 * (read_f16(b) * y.d);
    }
    sum
}

pub fn q5_0(w: &[u8], a: &[BlockQ8_0x]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ5_0>(), a.len()).zip(a) {
        let q = with_high_bits(
            nibbles(&b[offset_of!(BlockQ5_0, qs)..]),
            &b[offset_of!(BlockQ5_0, qh)..],
        );
        sum += isum(&q, 16, &y.qs) as f32 * (read_f16(b) * y.d);
    }
    sum
}

pub fn q8_0(w: &[u8], a: &[BlockQ8_0x]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ8_0>(), a.len()).zip(a) {
        let qs = &b[offset_of!(BlockQ8_0, qs)..];
        let s: i32 = qs
            .iter()
            .zip(&y.qs)
            .map(|(&w, &x)| (w as i8) as i32 * x as i32)
            .sum();
        sum += s as f32 * (read_f16(b) * y.d);
    }
    sum
}

pub fn q4_1(w: &[u8], a: &[BlockQ8_1x]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ4_1>(), a.len()).zip(a) {
        let q = nibbles(&b[offset_of!(BlockQ4_1, qs)..]);
        let d = read_f16(b);
        let m = read_f16(&b[offset_of!(BlockQ4_1, m)..]);
        sum += isum(&q, 0, &y.qs) as f32 * (d * y.d) + m * y.s;
    }
    sum
}

pub fn q5_1(w: &[u8], a: &[BlockQ8_1x]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ5_1>(), a.len()).zip(a) {
        let q = with_high_bits(
            nibbles(&b[offset_of!(BlockQ5_1, qs)..]),
            &b[offset_of!(BlockQ5_1, qh)..],
        );
        let d = read_f16(b);
        let m = read_f16(&b[offset_of!(BlockQ5_1, m)..]);
        sum += isum(&q, 0, &y.qs) as f32 * (d * y.d) + m * y.s;
    }
    sum
}

/// 16-element sub-block `s` of a 2-bit plane (Q2_K, Q3_K low bits): half `s / 8`, shift
/// `2 * ((s / 2) % 4)`, bytes `16 * (s % 2)..` of that half's 32 bytes.
#[inline]
fn plane2(qs: &[u8], s: usize) -> impl Iterator<Item = i32> + '_ {
    let shift = 2 * ((s / 2) % 4);
    qs[32 * (s / 8) + 16 * (s % 2)..][..16]
        .iter()
        .map(move |&b| ((b >> shift) & 3) as i32)
}

#[inline]
fn dot16(q: impl Iterator<Item = i32>, a: &[i8]) -> i32 {
    q.zip(a).map(|(w, &x)| w * x as i32).sum()
}

pub fn q2k(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ2K>(), a.len()).zip(a) {
        let scales = &b[offset_of!(BlockQ2K, scales)..offset_of!(BlockQ2K, qs)];
        let qs = &b[offset_of!(BlockQ2K, qs)..offset_of!(BlockQ2K, d)];
        let mins: i32 = scales
            .iter()
            .zip(&y.bsums)
            .map(|(&sc, &bs)| (sc >> 4) as i32 * bs as i32)
            .sum();
        let isum: i32 = (0..16)
            .map(|s| (scales[s] & 0x0f) as i32 * dot16(plane2(qs, s), &y.qs[16 * s..]))
            .sum();
        let dall = y.d * read_f16(&b[offset_of!(BlockQ2K, d)..]);
        let dmin = y.d * read_f16(&b[offset_of!(BlockQ2K, dmin)..]);
        sum += dall * isum as f32 - dmin * mins as f32;
    }
    sum
}

pub fn q3k(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ3K>(), a.len()).zip(a) {
        let hmask = &b[offset_of!(BlockQ3K, hmask)..offset_of!(BlockQ3K, qs)];
        let qs = &b[offset_of!(BlockQ3K, qs)..offset_of!(BlockQ3K, scales)];
        let scales = q3k_scales(&b[offset_of!(BlockQ3K, scales)..offset_of!(BlockQ3K, d)]);
        let isum: i32 = (0..16)
            .map(|s| {
                let hbit = 4 * (s / 8) + (s / 2) % 4;
                let hm = &hmask[16 * (s % 2)..][..16];
                let q = plane2(qs, s)
                    .zip(hm)
                    .map(|(low, &h)| low - if (h >> hbit) & 1 != 0 { 0 } else { 4 });
                scales[s] as i32 * dot16(q, &y.qs[16 * s..])
            })
            .sum();
        sum += y.d * read_f16(&b[offset_of!(BlockQ3K, d)..]) * isum as f32;
    }
    sum
}

/// Shared tail of Q4_K and Q5_K: `q(sub, l)` gives quant `l` of 32-element sub-block `sub`.
#[inline]
fn k4_block(b: &[u8], scales: &[u8], y: &BlockQ8Kx, q: impl Fn(usize, usize) -> i32) -> f32 {
    let mut isum = 0i32;
    let mut mins = 0i32;
    for sub in 0..8 {
        let (sc, m) = scale_min_k4(sub, scales);
        let s: i32 = (0..32).map(|l| q(sub, l) * y.qs[32 * sub + l] as i32).sum();
        isum += sc as i32 * s;
        mins += m as i32 * (y.bsums[2 * sub] as i32 + y.bsums[2 * sub + 1] as i32);
    }
    let d = y.d * read_f16(b);
    let dmin = y.d * read_f16(&b[2..]);
    d * isum as f32 - dmin * mins as f32
}

pub fn q4k(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ4K>(), a.len()).zip(a) {
        let scales = &b[offset_of!(BlockQ4K, scales)..offset_of!(BlockQ4K, qs)];
        let qs = &b[offset_of!(BlockQ4K, qs)..];
        // Sub-block 2c: low nibbles of qs[32c..32c+32]; 2c+1: high nibbles.
        sum += k4_block(b, scales, y, |sub, l| {
            ((qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0x0f) as i32
        });
    }
    sum
}

pub fn q5k(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ5K>(), a.len()).zip(a) {
        let scales = &b[offset_of!(BlockQ5K, scales)..offset_of!(BlockQ5K, qh)];
        let qh = &b[offset_of!(BlockQ5K, qh)..offset_of!(BlockQ5K, qs)];
        let qs = &b[offset_of!(BlockQ5K, qs)..];
        // As Q4_K, plus bit `sub` of qh[l].
        sum += k4_block(b, scales, y, |sub, l| {
            (((qs[32 * (sub / 2) + l] >> (4 * (sub % 2))) & 0x0f) | (((qh[l] >> sub) & 1) << 4))
                as i32
        });
    }
    sum
}

pub fn q6k(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    let mut sum = 0f32;
    for (b, y) in blocks(w, size_of::<BlockQ6K>(), a.len()).zip(a) {
        let ql = &b[offset_of!(BlockQ6K, ql)..offset_of!(BlockQ6K, qh)];
        let qh = &b[offset_of!(BlockQ6K, qh)..offset_of!(BlockQ6K, scales)];
        let scales = &b[offset_of!(BlockQ6K, scales)..offset_of!(BlockQ6K, d)];
        let mut isum = 0i32;
        // Half `h`, 32-element group `j`: nibble `j / 2` of ql[64h + 32 (j % 2) + l], high
        // bits `2j` of qh[32h + l], scale `8h + 2j + l / 16`.
        for h in 0..2 {
            for j in 0..4 {
                for half16 in 0..2 {
                    let mut s = 0i32;
                    for l in 16 * half16..16 * half16 + 16 {
                        let lo = (ql[64 * h + 32 * (j % 2) + l] >> (4 * (j / 2))) & 0x0f;
                        let hi = (qh[32 * h + l] >> (2 * j)) & 3;
                        let q = (lo | (hi << 4)) as i32 - 32;
                        s += q * y.qs[128 * h + 32 * j + l] as i32;
                    }
                    isum += (scales[8 * h + 2 * j + half16] as i8) as i32 * s;
                }
            }
        }
        sum += y.d * read_f16(&b[offset_of!(BlockQ6K, d)..]) * isum as f32;
    }
    sum
}
