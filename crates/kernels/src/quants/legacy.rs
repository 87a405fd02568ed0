//! ggml's original 32-element block formats.
//!
//! Each block holds one f16 scale `d` (and for the `_1` variants an f16 offset `m`) and 32
//! packed quants. Nibble packing: byte `j` of `qs` holds element `j` in its low nibble and
//! element `j + 16` in its high nibble. For the 5-bit formats, bit `i` of the little-endian
//! `u32` `qh` is the fifth bit of element `i`.

use super::{read_f16, BlockFormat};
use std::mem::{offset_of, size_of};

const QK: usize = 32;

/// Q4_0: `x = d * (q - 8)`, `q` in 0..16.
#[repr(C)]
pub struct BlockQ4_0 {
    pub d: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_0>() == 18);

pub struct Q4_0;
impl BlockFormat for Q4_0 {
    const BLOCK: usize = QK;
    const BYTES: usize = size_of::<BlockQ4_0>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ4_0, d)..]);
        let qs = &src[offset_of!(BlockQ4_0, qs)..Self::BYTES];
        let (lo, hi) = dst.split_at_mut(QK / 2);
        for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
            *l = d * ((q & 0x0f) as i32 - 8) as f32;
            *h = d * ((q >> 4) as i32 - 8) as f32;
        }
    }
}

/// Q4_1: `x = d * q + m`, `q` in 0..16.
#[repr(C)]
pub struct BlockQ4_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ4_1>() == 20);

pub struct Q4_1;
impl BlockFormat for Q4_1 {
    const BLOCK: usize = QK;
    const BYTES: usize = size_of::<BlockQ4_1>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ4_1, d)..]);
        let m = read_f16(&src[offset_of!(BlockQ4_1, m)..]);
        let qs = &src[offset_of!(BlockQ4_1, qs)..Self::BYTES];
        let (lo, hi) = dst.split_at_mut(QK / 2);
        for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
            *l = d * (q & 0x0f) as f32 + m;
            *h = d * (q >> 4) as f32 + m;
        }
    }
}

/// Q5_0: `x = d * (q - 16)`, `q` in 0..32 (low 4 bits in `qs`, fifth bit in `qh`).
#[repr(C)]
pub struct BlockQ5_0 {
    pub d: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_0>() == 22);

/// The 5-bit values of elements `j` and `j + 16` from `qs[j]` and the high-bit word `qh`.
#[inline]
fn q5_pair(qs_j: u8, qh: u32, j: usize) -> (u32, u32) {
    let lo = u32::from(qs_j & 0x0f) | (((qh >> j) & 1) << 4);
    let hi = u32::from(qs_j >> 4) | (((qh >> (j + 16)) & 1) << 4);
    (lo, hi)
}

#[inline]
fn read_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

pub struct Q5_0;
impl BlockFormat for Q5_0 {
    const BLOCK: usize = QK;
    const BYTES: usize = size_of::<BlockQ5_0>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ5_0, d)..]);
        let qh = read_u32(&src[offset_of!(BlockQ5_0, qh)..]);
        let qs = &src[offset_of!(BlockQ5_0, qs)..Self::BYTES];
        let (lo, hi) = dst.split_at_mut(QK / 2);
        for (j, ((&q, l), h)) in qs.iter().zip(lo).zip(hi).enumerate() {
            let (a, b) = q5_pair(q, qh, j);
            *l = d * (a as i32 - 16) as f32;
            *h = d * (b as i32 - 16) as f32;
        }
    }
}

/// Q5_1: `x = d * q + m`, `q` in 0..32.
#[repr(C)]
pub struct BlockQ5_1 {
    pub d: [u8; 2],
    pub m: [u8; 2],
    pub qh: [u8; 4],
    pub qs: [u8; QK / 2],
}
const _: () = assert!(size_of::<BlockQ5_1>() == 24);

pub struct Q5_1;
impl BlockFormat for Q5_1 {
    const BLOCK: usize = QK;
    const BYTES: usize = size_of::<BlockQ5_1>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ5_1, d)..]);
        let m = read_f16(&src[offset_of!(BlockQ5_1, m)..]);
        let qh = read_u32(&src[offset_of!(BlockQ5_1, qh)..]);
        let qs = &src[offset_of!(BlockQ5_1, qs)..Self::BYTES];
        let (lo, hi) = dst.split_at_mut(QK / 2);
        for (j, ((&q, l), h)) in qs.iter().zip(lo).zip(hi).enumerate() {
            let (a, b) = q5_pair(q, qh, j);
            *l = d * a as f32 + m;
            *h = d * b as f32 + m;
        }
    }
}

/// Q8_0: 32 int8 values with one f16 scale: `x = d * q`.
#[repr(C)]
pub struct BlockQ8_0 {
    pub d: [u8; 2],
    pub qs: [i8; QK],
}
const _: () = assert!(size_of::<BlockQ8_0>() == 34);

pub struct Q8_0;
impl BlockFormat for Q8_0 {
    const BLOCK: usize = QK;
    const BYTES: usize = size_of::<BlockQ8_0>();
    fn dequantize_block(src: &[u8], dst: &mut [f32]) {
        let d = read_f16(&src[offset_of!(BlockQ8_0, d)..]);
        let qs = &src[offset_of!(BlockQ8_0, qs)..Self::BYTES];
        for (o, &q) in dst.iter_mut().zip(qs) {
            *o = d * (q as i8) as f32;
        }
    }
}
