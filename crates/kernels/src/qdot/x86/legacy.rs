//! Dot products of the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with Q8_0 /
//! Q8_1 activations, for AVX2 and AVX-512 (VNNI on 256-bit registers, one block each).
//!
//! Per block: the weight quants are unpacked to 32 unsigned bytes `q` (nibbles, plus the fifth
//! bit for Q5_*; Q8_0 takes `|w|` and moves the sign onto the activations), multiplied with
//! the int8 activations `a` into exact i32 lanes (`dpbusd`, or `maddubs` + `madd` on AVX2),
//! the formats' offsets (−8 for Q4_0, −16 for Q5_0) subtracted as `offset · Σa` by the same
//! instruction on a constant, and the block added into an f32 accumulator with one FMA by
//! `d_w · d_a`. Q4_1 / Q5_1 add `m_w · s_a` per block. One horizontal sum per row. Weights are
//! prefetched [`PF`] bytes ahead, since one thread's hardware prefetcher alone leaves it short
//! of the memory bus. Formulas are those of the scalar twins ([`crate::qdot::scalar`]).

use crate::qdot::{BlockQ8_0x, BlockQ8_1x, DotTable, Isa};
use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};
use std::ptr::read_unaligned;

/// Prefetch distance in bytes.
const PF: usize = 4096;

/// Fill the legacy-format entries of `t` for `isa`.
pub fn install(t: &mut DotTable, isa: Isa) {
    match isa {
        Isa::Scalar => {}
        Isa::Avx2 => {
            t.q4_0 = q4_0_avx2;
            t.q5_0 = q5_0_avx2;
            t.q8_0 = q8_0_avx2;
            t.q4_1 = q4_1_avx2;
            t.q5_1 = q5_1_avx2;
        }
        Isa::Avx512 => {
            t.q4_0 = q4_0_vnni;
            t.q5_0 = q5_0_vnni;
            t.q8_0 = q8_0_vnni;
            t.q4_1 = q4_1_vnni;
            t.q5_1 = q5_1_vnni;
        }
    }
}

/// Panics unless `w` holds `nb` blocks of `bytes` (a caller bug; checked once per row).
#[inline(always)]
fn check_row(w: &[u8], bytes: usize, nb: usize) {
    assert!(
        w.len() >= nb * bytes,
        "weight row shorter than its activations"
    );
}

#[inline(always)]
unsafe fn f16_at(p: *const u8) -> f32 {
    half::f16::from_bits(u16::from_le(read_unaligned(p as *const u16))).to_f32()
}

#[inline(always)]
unsafe fn prefetch(p: *const u8) {
    _mm_prefetch(p.wrapping_add(PF) as *const i8, _MM_HINT_T0);
}

/// 16 packed bytes → 32 unsigned nibbles: byte j's low nibble is element j, its high nibble
/// element j + 16.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn nibbles(p: *const u8) -> __m256i {
    let b = _mm_loadu_si128(p as *const __m128i);
    let m = _mm_set1_epi8(0x0f);
    let lo = _mm_and_si128(b, m);
    let hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    _mm256_set_m128i(hi, lo)
}

/// Bit j of the little-endian u32 at `p` as 0x10 in byte j (the fifth bit of Q5_*), AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn high_bits_avx2(p: *const u8) -> __m256i {
    let h = read_unaligned(p as *const u32) as i32;
    // Byte j gets byte j/8 of `h`; keep bit j%8 of it.
    let v = _mm256_shuffle_epi8(
        _mm256_set1_epi32(h),
        _mm256_set_epi64x(
            0x0303_0303_0303_0303,
            0x0202_0202_0202_0202,
            0x0101_0101_0101_0101,
            0,
        ),
    );
    let bits = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    let set = _mm256_cmpeq_epi8(_mm256_and_si256(v, bits), bits);
    _mm256_and_si256(set, _mm256_set1_epi8(0x10))
}

/// The same with an AVX-512 mask move.
#[inline]
#[target_feature(enable = "avx512bw,avx512vl")]
unsafe fn high_bits_512(p: *const u8) -> __m256i {
    let h = read_unaligned(p as *const u32);
    _mm256_maskz_mov_epi8(h, _mm256_set1_epi8(0x10))
}

/// Σ u8 × i8 over each group of 4 bytes into 8 i32 lanes, AVX2.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_u8i8_avx2(u: __m256i, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
}

/// Σ u8 × i8 over each group of 4 bytes into 8 i32 lanes, VNNI.
#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
unsafe fn dot_u8i8_vnni(u: __m256i, s: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// One kernel body per (format, instruction set): `$unpack` gives the unsigned quants of
/// block `b`, `$offset` the constant subtracted from them (0 for none), `$dot` the u8 × i8
/// product, `$with_m` whether the format has an offset `m` (Q8_1 activations).
macro_rules! legacy_kernel {
    ($name:ident, $feat:literal, $blk:ty, $act:ty, $dot:ident, $offset:expr, $with_m:tt,
     |$b:ident| $unpack:expr) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[u8], a: &[$act]) -> f32 {
            const BYTES: usize = size_of::<$blk>();
            let nb = a.len();
            check_row(w, BYTES, nb);
            let off = _mm256_set1_epi8($offset);
            // Block `i` into the accumulators `acc` (f32 lanes) and `summs` (the offset term).
            macro_rules! step {
                ($i:expr, $acc:ident, $summs:ident) => {{
                    let y = &a[$i];
                    let $b = w.as_ptr().add($i * BYTES);
                    prefetch($b);
                    let q: __m256i = $unpack;
                    let ya = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let mut isum = $dot(q, ya);
                    if $offset != 0 {
                        isum = _mm256_sub_epi32(isum, $dot(off, ya));
                    }
                    let d = f16_at($b) * y.d;
                    $acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), $acc);
                    legacy_kernel!(@m $with_m, $summs, $b, $blk, y);
                }};
            }
            // Two independent accumulator pairs, so consecutive blocks do not wait on each
            // other's FMA (its latency, not the bus, bounds one chain).
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            #[allow(unused_mut)]
            let (mut s0, mut s1) = (0f32, 0f32);
            let mut i = 0;
            while i + 1 < nb {
                step!(i, acc0, s0);
                step!(i + 1, acc1, s1);
                i += 2;
            }
            if i < nb {
                step!(i, acc0, s0);
            }
            hsum(_mm256_add_ps(acc0, acc1)) + (s0 + s1)
        }
    };
    (@m true, $summs:ident, $b:ident, $blk:ty, $y:ident) => {
        $summs += f16_at($b.add(offset_of!($blk, m))) * $y.s;
    };
    (@m false, $summs:ident, $b:ident, $blk:ty, $y:ident) => {};
}

legacy_kernel!(
    q4_0_avx2,
    "avx2,fma,f16c",
    BlockQ4_0,
    BlockQ8_0x,
    dot_u8i8_avx2,
    8,
    false,
    |b| nibbles(b.add(offset_of!(BlockQ4_0, qs)))
);
legacy_kernel!(
    q4_1_avx2,
    "avx2,fma,f16c",
    BlockQ4_1,
    BlockQ8_1x,
    dot_u8i8_avx2,
    0,
    true,
    |b| nibbles(b.add(offset_of!(BlockQ4_1, qs)))
);
legacy_kernel!(
    q5_0_avx2,
    "avx2,fma,f16c",
    BlockQ5_0,
    BlockQ8_0x,
    dot_u8i8_avx2,
    16,
    false,
    |b| _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_0, qh)))
    )
);
legacy_kernel!(
    q5_1_avx2,
    "avx2,fma,f16c",
    BlockQ5_1,
    BlockQ8_1x,
    dot_u8i8_avx2,
    0,
    true,
    |b| _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_1, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_1, qh)))
    )
);

legacy_kernel!(
    q4_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ4_0,
    BlockQ8_0x,
    dot_u8i8_vnni,
    8,
    false,
    |b| nibbles(b.add(offset_of!(BlockQ4_0, qs)))
);
legacy_kernel!(
    q4_1_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ4_1,
    BlockQ8_1x,
    dot_u8i8_vnni,
    0,
    true,
    |b| nibbles(b.add(offset_of!(BlockQ4_1, qs)))
);
legacy_kernel!(
    q5_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ5_0,
    BlockQ8_0x,
    dot_u8i8_vnni,
    16,
    false,
    |b| _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_512(b.add(offset_of!(BlockQ5_0, qh)))
    )
);
legacy_kernel!(
    q5_1_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ5_1,
    BlockQ8_1x,
    dot_u8i8_vnni,
    0,
    true,
    |b| _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_1, qs))),
        high_bits_512(b.add(offset_of!(BlockQ5_1, qh)))
    )
);

/// Q8_0 × Q8_0: `|w|` (unsigned) times `a` carrying the sign of `w`.
macro_rules! q8_0_kernel {
    ($name:ident, $feat:literal, $dot:ident) => {
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[u8], a: &[BlockQ8_0x]) -> f32 {
            const BYTES: usize = size_of::<BlockQ8_0>();
            check_row(w, BYTES, a.len());
            macro_rules! step {
                ($i:expr, $acc:ident) => {{
                    let y = &a[$i];
                    let b = w.as_ptr().add($i * BYTES);
                    prefetch(b);
                    let wq = _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i);
                    let ya = _mm256_loadu_si256(y.qs.as_ptr() as *const __m256i);
                    let isum = $dot(_mm256_sign_epi8(wq, wq), _mm256_sign_epi8(ya, wq));
                    let d = f16_at(b) * y.d;
                    $acc = _mm256_fmadd_ps(_mm256_set1_ps(d), _mm256_cvtepi32_ps(isum), $acc);
                }};
            }
            let (mut acc0, mut acc1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 1 < a.len() {
                step!(i, acc0);
                step!(i + 1, acc1);
                i += 2;
            }
            if i < a.len() {
                step!(i, acc0);
            }
            hsum(_mm256_add_ps(acc0, acc1))
        }
    };
}

q8_0_kernel!(q8_0_avx2, "avx2,fma,f16c", dot_u8i8_avx2);
q8_0_kernel!(
    q8_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    dot_u8i8_vnni
);
