//! Dot products of the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with Q8_0 /
//! Q8_1 activations, for AVX2 and AVX-512.
//!
//! Per block the weight quants become 32 unsigned bytes `q` (nibbles, plus the fifth bit for
//! Q5_*; Q8_0 takes `|w|` and moves the sign of `w` onto the activations), multiplied with the
//! int8 activations `a` into exact i32 lanes (`maddubs` + `madd` on AVX2, `dpbusd` with VNNI).
//! A format's offset `o` (8 for Q4_0, 16 for Q5_0) comes off as `o · Σa`, computed by the same
//! instruction on a constant. Each block then enters an f32 accumulator with one FMA by
//! `d_w · d_a`; Q4_1 / Q5_1 add `m_w · s_a`. One horizontal sum per row. Formulas are those of
//! the scalar twins ([`crate::qdot::scalar`]); only the order of the per-block f32 terms
//! differs.
//!
//! Blocks go in groups of four, which share the scale work: their f16 `d` (and `m`) are
//! gathered and converted, and multiplied with the activations' scales, in one go; each block
//! then picks its product with one permute. The scale work would otherwise cost as much as the
//! integer dot. AVX-512 puts two blocks in each 512-bit register (16 bytes of packed nibbles
//! broadcast into two 128-bit lanes, the second shifted down by four, so the register lines up
//! with the activations as stored; the fifth bits of Q5_* are a 64-bit mask) and gathers the
//! four blocks' scales with `vpermt2w` / `vpermt2ps`. Q8_0 on AVX-512 stays on 256-bit VNNI:
//! with nothing to unpack, two blocks per register measured no faster. Blocks left over after
//! the groups (fewer than four) go one by one. Weights are prefetched ahead
//! ([`super::prefetch`]), since one thread's hardware prefetcher alone leaves it well short
//! of the memory bus.

use super::kquants::check_row;
use super::prefetch;
use crate::qdot::{BlockQ8_0x, BlockQ8_1x, DotTable, Isa};
use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};
use std::ptr::read_unaligned;

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
            t.q4_0 = q4_0_avx512;
            t.q5_0 = q5_0_avx512;
            // Q8_0 needs no unpacking, and two blocks per register measured no faster.
            t.q8_0 = q8_0_vnni;
            t.q4_1 = q4_1_avx512;
            t.q5_1 = q5_1_avx512;
            // Several rows take the grouped kernels (grouped.rs), which give each row these
            // kernels' bits.
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Loads and small helpers.

/// Little-endian integers at `p` (unaligned).
#[inline(always)]
unsafe fn rd16(p: *const u8) -> i16 {
    i16::from_le(read_unaligned(p as *const i16))
}

#[inline(always)]
unsafe fn rd32(p: *const u8) -> i32 {
    i32::from_le(read_unaligned(p as *const i32))
}

#[inline(always)]
unsafe fn rd64(p: *const u8) -> i64 {
    read_unaligned(p as *const i64)
}

/// `d_w · d_a` of one block in all 8 lanes (`d` the f16 at `p`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn scale1(p: *const u8, da: f32) -> __m256 {
    let d = _mm_cvtph_ps(_mm_cvtsi32_si128(rd16(p) as i32));
    _mm256_broadcastss_ps(_mm_mul_ss(d, _mm_set_ss(da)))
}

/// `m_w · s_a` of one block (`m` the f16 at `p`).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn min1(p: *const u8, sa: f32) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(rd16(p) as i32))) * sa
}

/// The f16 `d` of four blocks (at `b`, `b + s`, `b + 2s`, `b + 3s`) as f32 in lanes 0..3.
/// The single- and multi-row kernels load their scales through these four functions, so both
/// multiply the same values (a row gets the same bits from either).
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn w_d4(b: *const u8, s: usize) -> __m128 {
    _mm_cvtph_ps(_mm_setr_epi16(
        rd16(b),
        rd16(b.add(s)),
        rd16(b.add(2 * s)),
        rd16(b.add(3 * s)),
        0,
        0,
        0,
        0,
    ))
}

/// The activation scales `d` of four blocks from `y`, in lanes 0..3.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn a_d4(y: *const BlockQ8_0x) -> __m128 {
    _mm_setr_ps((*y).d, (*y.add(1)).d, (*y.add(2)).d, (*y.add(3)).d)
}

/// The f16 pairs `d, m` of four blocks (at `b`, `b + s`, ...) as f32 lane pairs.
#[inline]
#[target_feature(enable = "avx2,f16c")]
pub(super) unsafe fn w_dm4(b: *const u8, s: usize) -> __m256 {
    _mm256_cvtph_ps(_mm_setr_epi32(
        rd32(b),
        rd32(b.add(s)),
        rd32(b.add(2 * s)),
        rd32(b.add(3 * s)),
    ))
}

/// The activation pairs `d, s` of four blocks from `y`, as lane pairs.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn a_ds4(y: *const BlockQ8_1x) -> __m256 {
    _mm256_castsi256_ps(_mm256_setr_epi64x(
        rd64(y as *const u8),
        rd64(y.add(1) as *const u8),
        rd64(y.add(2) as *const u8),
        rd64(y.add(3) as *const u8),
    ))
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

/// Sum of the 4 lanes.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn hsum128(s: __m128) -> f32 {
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)))
}

// ---------------------------------------------------------------------------------------------
// One block in a 256-bit register: its 32 quants as unsigned bytes, dotted with 32 activations
// into 8 exact i32 lanes (AVX2, and VNNI on 256 bits for AVX-512's leftover blocks).

/// 16 packed bytes → 32 unsigned nibbles in element order: byte j's low nibble is element j,
/// its high nibble element j + 16. A broadcast load and a per-half shift, no shuffle.
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn nibbles(p: *const u8) -> __m256i {
    let x = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let x = _mm256_srlv_epi64(x, _mm256_set_epi64x(4, 4, 0, 0));
    _mm256_and_si256(x, _mm256_set1_epi8(0x0f))
}

/// Bit j of the little-endian u32 at `p` as 0x10 in byte j (the fifth bit of Q5_*).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn high_bits_avx2(p: *const u8) -> __m256i {
    // Byte j gets byte j/8 of the word; keep bit j%8 of it.
    let v = _mm256_shuffle_epi8(
        _mm256_set1_epi32(rd32(p)),
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
pub(super) unsafe fn high_bits_vnni(p: *const u8) -> __m256i {
    _mm256_maskz_mov_epi8(rd32(p) as u32, _mm256_set1_epi8(0x10))
}

/// The 32 activation quants at `y`.
#[inline(always)]
pub(super) unsafe fn acts(y: *const i8) -> __m256i {
    _mm256_loadu_si256(y as *const __m256i)
}

/// Σ u8 × i8 over each group of 4 bytes into 8 i32 lanes (AVX2; `q` below 64, so the i16
/// pair sums cannot saturate).
#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn dot_avx2(q: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), _mm256_set1_epi16(1))
}

/// Σ (q − o) × y over each group of 4 bytes: the offset comes off the i16 pair sums.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn dot_off_avx2(q: __m256i, y: __m256i, o: i8) -> __m256i {
    let p = _mm256_sub_epi16(
        _mm256_maddubs_epi16(q, y),
        _mm256_maddubs_epi16(_mm256_set1_epi8(o), y),
    );
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
pub(super) unsafe fn dot_vnni(q: __m256i, y: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), q, y)
}

#[inline]
#[target_feature(enable = "avx512vnni,avx512vl")]
pub(super) unsafe fn dot_off_vnni(q: __m256i, y: __m256i, o: i8) -> __m256i {
    let z = _mm256_setzero_si256();
    _mm256_sub_epi32(
        _mm256_dpbusd_epi32(z, q, y),
        _mm256_dpbusd_epi32(z, _mm256_set1_epi8(o), y),
    )
}

// Per format: block `b` (its bytes) against activations `y` (32 quants), exact i32 lanes.

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_0_isum_avx2(b: *const u8, y: *const i8) -> __m256i {
    dot_off_avx2(nibbles(b.add(offset_of!(BlockQ4_0, qs))), acts(y), 8)
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_1_isum_avx2(b: *const u8, y: *const i8) -> __m256i {
    dot_avx2(nibbles(b.add(offset_of!(BlockQ4_1, qs))), acts(y))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q5_0_isum_avx2(b: *const u8, y: *const i8) -> __m256i {
    let q = _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_0, qh))),
    );
    dot_off_avx2(q, acts(y), 16)
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q5_1_isum_avx2(b: *const u8, y: *const i8) -> __m256i {
    let q = _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_1, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_1, qh))),
    );
    dot_avx2(q, acts(y))
}

/// Q8_0: `|w|` times the activations carrying the sign of `w`.
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q8_0_isum_avx2(b: *const u8, y: *const i8) -> __m256i {
    let w = _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i);
    let y = acts(y);
    // |w| reaches 128, too large for `dot_avx2`'s pairs: madd the i16 products directly.
    _mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(y, w)),
        _mm256_set1_epi16(1),
    )
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_0_isum_vnni(b: *const u8, y: *const i8) -> __m256i {
    dot_off_vnni(nibbles(b.add(offset_of!(BlockQ4_0, qs))), acts(y), 8)
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl,avx512vnni")]
unsafe fn q4_1_isum_vnni(b: *const u8, y: *const i8) -> __m256i {
    dot_vnni(nibbles(b.add(offset_of!(BlockQ4_1, qs))), acts(y))
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl,avx512vnni")]
unsafe fn q5_0_isum_vnni(b: *const u8, y: *const i8) -> __m256i {
    let q = _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_vnni(b.add(offset_of!(BlockQ5_0, qh))),
    );
    dot_off_vnni(q, acts(y), 16)
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl,avx512vnni")]
unsafe fn q5_1_isum_vnni(b: *const u8, y: *const i8) -> __m256i {
    let q = _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_1, qs))),
        high_bits_vnni(b.add(offset_of!(BlockQ5_1, qh))),
    );
    dot_vnni(q, acts(y))
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_0_isum_vnni(b: *const u8, y: *const i8) -> __m256i {
    let w = _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i);
    dot_vnni(_mm256_abs_epi8(w), _mm256_sign_epi8(acts(y), w))
}

/// A row kernel on 256-bit registers: `$isum` gives block `i`'s exact i32 lanes. Groups of
/// four blocks gather their four f16 scales (and offsets `m` with `$with_m`, the `_1` formats
/// on Q8_1 activations) into one conversion and one multiply with the activations' scales;
/// each block broadcasts its product with a permute and adds itself with one FMA into its own
/// accumulator. The last `nb % 4` blocks take their scales one at a time.
macro_rules! kernel_256 {
    ($(#[$doc:meta])* $name:ident, $feat:literal, $blk:ty, $act:ty, $isum:ident, $with_m:tt) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        pub(super) unsafe fn $name(w: &[u8], a: &[$act]) -> f32 {
            const S: usize = size_of::<$blk>();
            let nb = a.len();
            check_row(w, S, nb);
            let (wp, ap) = (w.as_ptr(), a.as_ptr());
            let mut acc = [_mm256_setzero_ps(); 4];
            #[allow(unused_mut)]
            let mut mins = _mm256_setzero_ps();
            let mut i = 0;
            while i + 4 <= nb {
                let b = wp.add(i * S);
                let y = ap.add(i);
                prefetch(b, 4 * S);
                let sc = kernel_256!(@scales $with_m, b, y, S, mins);
                for (k, acc) in acc.iter_mut().enumerate() {
                    let s = _mm256_permutevar8x32_ps(sc, kernel_256!(@lane $with_m, k));
                    let isum = $isum(b.add(k * S), (*y.add(k)).qs.as_ptr());
                    *acc = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), *acc);
                }
                i += 4;
            }
            #[allow(unused_mut)]
            let mut tail = 0f32;
            while i < nb {
                let b = wp.add(i * S);
                let y = &*ap.add(i);
                let isum = $isum(b, y.qs.as_ptr());
                acc[0] = _mm256_fmadd_ps(scale1(b, y.d), _mm256_cvtepi32_ps(isum), acc[0]);
                kernel_256!(@min1 $with_m, tail, b, y, $blk);
                i += 1;
            }
            let acc = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
            hsum(acc) + kernel_256!(@mins $with_m, mins) + tail
        }
    };
    // [d_w d_a] of blocks 0..3 in lanes 0..3.
    (@scales false, $b:ident, $y:ident, $s:ident, $mins:ident) => {{
        _mm256_castps128_ps256(_mm_mul_ps(w_d4($b, $s), a_d4($y)))
    }};
    // [d_w d_a, m_w s_a] of blocks 0..3 in lane pairs; the odd lanes go to `mins`.
    (@scales true, $b:ident, $y:ident, $s:ident, $mins:ident) => {{
        let p = _mm256_mul_ps(w_dm4($b, $s), a_ds4($y));
        $mins = _mm256_add_ps($mins, p);
        p
    }};
    (@lane false, $k:ident) => {
        _mm256_set1_epi32($k as i32)
    };
    (@lane true, $k:ident) => {
        _mm256_set1_epi32(2 * $k as i32)
    };
    (@min1 false, $tail:ident, $b:ident, $y:ident, $blk:ty) => {};
    (@min1 true, $tail:ident, $b:ident, $y:ident, $blk:ty) => {
        $tail += min1($b.add(offset_of!($blk, m)), $y.s)
    };
    (@mins false, $mins:ident) => {{
        let _ = $mins;
        0f32
    }};
    (@mins true, $mins:ident) => {{
        // Odd lanes: m_w s_a.
        let m = _mm256_permutevar8x32_ps($mins, _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0));
        hsum128(_mm256_castps256_ps128(m))
    }};
}

kernel_256!(
    /// Q4_0 × Q8_0 on AVX2: nibbles, `maddubs` less `8 · Σa`, one FMA per block.
    q4_0_avx2,
    "avx2,fma,f16c",
    BlockQ4_0,
    BlockQ8_0x,
    q4_0_isum_avx2,
    false
);
kernel_256!(
    /// Q4_1 × Q8_1 on AVX2: nibbles by `maddubs`, one FMA per block, plus `m_w · s_a`.
    q4_1_avx2,
    "avx2,fma,f16c",
    BlockQ4_1,
    BlockQ8_1x,
    q4_1_isum_avx2,
    true
);
kernel_256!(
    /// Q5_0 × Q8_0 on AVX2: nibbles with the fifth bit from `qh`, `maddubs` less `16 · Σa`.
    q5_0_avx2,
    "avx2,fma,f16c",
    BlockQ5_0,
    BlockQ8_0x,
    q5_0_isum_avx2,
    false
);
kernel_256!(
    /// Q5_1 × Q8_1 on AVX2: 5-bit quants by `maddubs`, plus `m_w · s_a`.
    q5_1_avx2,
    "avx2,fma,f16c",
    BlockQ5_1,
    BlockQ8_1x,
    q5_1_isum_avx2,
    true
);
kernel_256!(
    /// Q8_0 × Q8_0 on AVX2: `|w|` by `maddubs` with the sign of `w` on the activations.
    q8_0_avx2,
    "avx2,fma,f16c",
    BlockQ8_0,
    BlockQ8_0x,
    q8_0_isum_avx2,
    false
);

kernel_256!(
    /// Q4_0 × Q8_0 with 256-bit VNNI (`dpbusd`): AVX-512's leftover blocks.
    q4_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ4_0,
    BlockQ8_0x,
    q4_0_isum_vnni,
    false
);
kernel_256!(
    /// Q4_1 × Q8_1 with 256-bit VNNI: AVX-512's leftover blocks.
    q4_1_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ4_1,
    BlockQ8_1x,
    q4_1_isum_vnni,
    true
);
kernel_256!(
    /// Q5_0 × Q8_0 with 256-bit VNNI, the fifth bits by a mask move: AVX-512's leftover blocks.
    q5_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ5_0,
    BlockQ8_0x,
    q5_0_isum_vnni,
    false
);
kernel_256!(
    /// Q5_1 × Q8_1 with 256-bit VNNI: AVX-512's leftover blocks.
    q5_1_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ5_1,
    BlockQ8_1x,
    q5_1_isum_vnni,
    true
);
kernel_256!(
    /// Q8_0 × Q8_0 with 256-bit VNNI (`|w|` times sign-moved activations): the AVX-512
    /// entry, as two blocks per 512-bit register measured no faster for a format with nothing
    /// to unpack.
    q8_0_vnni,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    BlockQ8_0,
    BlockQ8_0x,
    q8_0_isum_vnni,
    false
);

// ---------------------------------------------------------------------------------------------
// Two blocks in a 512-bit register (AVX-512 VNNI): 128-bit lanes hold elements 0..16 and
// 16..32 of block 0, then of block 1, as the activations lie in memory.

/// The nibbles of two blocks whose packed quants are at `p` and `p + s`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn nibbles2(p: *const u8, s: usize) -> __m512i {
    let lo = _mm256_broadcastsi128_si256(_mm_loadu_si128(p as *const __m128i));
    let hi = _mm256_broadcastsi128_si256(_mm_loadu_si128(p.add(s) as *const __m128i));
    let x = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    let x = _mm512_srlv_epi64(x, _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0));
    _mm512_and_si512(x, _mm512_set1_epi8(0x0f))
}

/// The fifth bits of two blocks (little-endian u32 at `p` and `p + s`) as a byte mask.
#[inline(always)]
unsafe fn high_bits2(p: *const u8, s: usize) -> __mmask64 {
    (rd32(p) as u32 as u64) | ((rd32(p.add(s)) as u32 as u64) << 32)
}

/// 32 bytes at `p` and 32 at `p + s`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn load2(p: *const u8, s: usize) -> __m512i {
    _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256(p as *const __m256i)),
        _mm256_loadu_si256(p.add(s) as *const __m256i),
        1,
    )
}

/// Σ u8 × i8 over each group of 4 bytes into 16 i32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot2(q: __m512i, y: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(_mm512_setzero_si512(), q, y)
}

/// Σ (q − o) × y over each group of 4 bytes into 16 i32 lanes.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot_off2(q: __m512i, y: __m512i, o: u8) -> __m512i {
    let z = _mm512_setzero_si512();
    _mm512_sub_epi32(
        _mm512_dpbusd_epi32(z, q, y),
        _mm512_dpbusd_epi32(z, _mm512_set1_epi8(o as i8), y),
    )
}

// Per format: blocks `b` and the next as unsigned bytes (`_w2`), and those bytes against two
// blocks' activation quants (`_isum2`), exact i32 lanes. The unpacking depends on the weights
// only, so the multi-row kernels do it once for every row.

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn q4_0_w2(b: *const u8) -> __m512i {
    nibbles2(b.add(offset_of!(BlockQ4_0, qs)), size_of::<BlockQ4_0>())
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn q4_1_w2(b: *const u8) -> __m512i {
    nibbles2(b.add(offset_of!(BlockQ4_1, qs)), size_of::<BlockQ4_1>())
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn q5_0_w2(b: *const u8) -> __m512i {
    const S: usize = size_of::<BlockQ5_0>();
    let q = nibbles2(b.add(offset_of!(BlockQ5_0, qs)), S);
    let h = high_bits2(b.add(offset_of!(BlockQ5_0, qh)), S);
    _mm512_mask_add_epi8(q, h, q, _mm512_set1_epi8(0x10))
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
pub(super) unsafe fn q5_1_w2(b: *const u8) -> __m512i {
    const S: usize = size_of::<BlockQ5_1>();
    let q = nibbles2(b.add(offset_of!(BlockQ5_1, qs)), S);
    let h = high_bits2(b.add(offset_of!(BlockQ5_1, qh)), S);
    _mm512_mask_add_epi8(q, h, q, _mm512_set1_epi8(0x10))
}

/// Q4_0: `dpbusd` less `8 · Σa`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn q4_0_isum2(q: __m512i, y: __m512i) -> __m512i {
    dot_off2(q, y, 8)
}

/// Q5_0: `dpbusd` less `16 · Σa`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn q5_0_isum2(q: __m512i, y: __m512i) -> __m512i {
    dot_off2(q, y, 16)
}

/// Q4_1 / Q5_1: plain `dpbusd` (the offsets `m` come in through the activation sums).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn q_1_isum2(q: __m512i, y: __m512i) -> __m512i {
    dot2(q, y)
}

/// Where the second of the two 64-byte loads that gather four blocks' f16 fields starts: the
/// first covers bytes 0..64 of the group, the second ends with it (groups of 64 to 128 bytes)
/// or, for Q8_0's groups of 136, covers 64..128, which holds the last two `d`.
pub(super) const fn scale_hi(s: usize) -> usize {
    assert!(4 * s >= 64 && 4 * s <= 136);
    if 4 * s <= 128 {
        4 * s - 64
    } else {
        64 // Q8_0: its groups of 136 bytes keep their last `d` (at 102) within 128
    }
}

/// `vpermt2w` indices gathering the f16 `d` of four blocks `s` bytes apart into words 0..3 and
/// their `m` (with `with_m`; else `d` again) into words 4..7, from the 64 bytes at the group's
/// start (indices 0..32) and the 64 at [`scale_hi`] (32..64).
pub(super) const fn scale_index(s: usize, with_m: bool) -> [i16; 32] {
    let hi = scale_hi(s);
    let mut idx = [0i16; 32];
    let mut k = 0;
    while k < 8 {
        let o = (k % 4) * s + if k >= 4 && with_m { 2 } else { 0 };
        idx[k] = if o + 2 <= 64 {
            (o / 2) as i16
        } else {
            assert!(o >= hi && o + 2 <= hi + 64 && (o - hi).is_multiple_of(2));
            (32 + (o - hi) / 2) as i16
        };
        k += 1;
    }
    idx
}

/// `vpermt2ps` indices gathering the activation scales `d` of four blocks `a` bytes apart into
/// lanes 0..3 and their sums `s` (with `with_m`; else `d` again) into lanes 4..7, from the
/// first 128 bytes of the group.
const fn act_index(a: usize, with_m: bool) -> [i32; 16] {
    let mut idx = [0i32; 16];
    let mut k = 0;
    while k < 8 {
        let o = (k % 4) * a / 4 + if k >= 4 && with_m { 1 } else { 0 };
        assert!(o < 32);
        idx[k] = o as i32;
        k += 1;
    }
    idx
}

/// A row kernel on 512-bit registers: `$w2` unpacks blocks `i` and `i + 1`, `$isum2` gives
/// their exact i32 lanes. Groups of four blocks gather their f16 scales (and `m` with
/// `$with_m`) with one `vpermt2w`; the activations' scales come with one `vpermt2ps`, are
/// multiplied with the weights' in one go, and one permute spreads the products over each
/// pair's lanes before its FMA (the per-group step `grouped.rs`'s multi-row kernels share,
/// `group4_weights!` / `group4_row!`). The last `nb % 4` blocks go to `$rest`, the 256-bit
/// kernel.
macro_rules! kernel_512 {
    ($(#[$doc:meta])* $name:ident, $blk:ty, $act:ty, $w2:ident, $isum2:ident, $with_m:tt, $rest:ident) => {
        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: &[$act]) -> f32 {
            const S: usize = size_of::<$blk>();
            const A: usize = size_of::<$act>();
            const W_IDX: [i16; 32] = scale_index(S, $with_m);
            const A_IDX: [i32; 16] = act_index(A, $with_m);
            let nb = a.len();
            check_row(w, S, nb);
            let (wp, ap) = (w.as_ptr(), a.as_ptr());
            let w_idx = _mm512_loadu_si512(W_IDX.as_ptr() as *const _);
            let a_idx = _mm512_loadu_si512(A_IDX.as_ptr() as *const _);
            let p01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            let p23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
            let (mut acc0, mut acc1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
            #[allow(unused_mut)]
            let mut mins = _mm256_setzero_ps();
            let mut i = 0;
            while i + 4 <= nb {
                let b = wp.add(i * S);
                prefetch(b, 4 * S);
                let y = ap.add(i);
                let yf = y as *const f32;
                group4_row!(
                    $with_m,
                    $isum2,
                    group4_weights!($w2, b, w_idx, S),
                    load2((*y).qs.as_ptr() as *const u8, A),
                    load2((*y.add(2)).qs.as_ptr() as *const u8, A),
                    _mm512_castps512_ps256(_mm512_permutex2var_ps(
                        _mm512_loadu_ps(yf),
                        a_idx,
                        _mm512_loadu_ps(yf.add(16)),
                    )),
                    p01,
                    p23,
                    acc0,
                    acc1,
                    mins
                );
                i += 4;
            }
            let mut sum = group4_row!(@sum $with_m, acc0, acc1, mins);
            if i < nb {
                sum += $rest(&w[i * S..], &a[i..]);
            }
            sum
        }
    };
}

kernel_512!(
    /// Q4_0 × Q8_0 on AVX-512: two blocks per register, `dpbusd` less `8 · Σa`.
    q4_0_avx512,
    BlockQ4_0,
    BlockQ8_0x,
    q4_0_w2,
    q4_0_isum2,
    false,
    q4_0_vnni
);
kernel_512!(
    /// Q4_1 × Q8_1 on AVX-512: two blocks per register, plus `m_w · s_a`.
    q4_1_avx512,
    BlockQ4_1,
    BlockQ8_1x,
    q4_1_w2,
    q_1_isum2,
    true,
    q4_1_vnni
);
kernel_512!(
    /// Q5_0 × Q8_0 on AVX-512: two blocks per register, fifth bits from a 64-bit mask,
    /// `dpbusd` less `16 · Σa`.
    q5_0_avx512,
    BlockQ5_0,
    BlockQ8_0x,
    q5_0_w2,
    q5_0_isum2,
    false,
    q5_0_vnni
);
kernel_512!(
    /// Q5_1 × Q8_1 on AVX-512: two blocks per register, fifth bits from a 64-bit mask,
    /// plus `m_w · s_a`.
    q5_1_avx512,
    BlockQ5_1,
    BlockQ8_1x,
    q5_1_w2,
    q_1_isum2,
    true,
    q5_1_vnni
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qdot::{quantize_q8_0, quantize_q8_1, scalar};
    use crate::DType;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    /// `nb` random blocks of `t` with sane f16 scales (and offsets), plus `extra` bytes.
    fn weights(t: DType, nb: usize, extra: usize, rng: &mut Rng) -> Vec<u8> {
        let bb = t.block_bytes();
        let mut w: Vec<u8> = (0..nb * bb + extra).map(|_| rng.next() as u8).collect();
        let fields: &[usize] = match t {
            DType::Q4_1 | DType::Q5_1 => &[0, 2],
            _ => &[0],
        };
        for b in w[..nb * bb].chunks_exact_mut(bb) {
            for &o in fields {
                let v = half::f16::from_f32(rng.f32() * 0.05).to_le_bytes();
                b[o..o + 2].copy_from_slice(&v);
            }
        }
        w
    }

    /// Activations with some outliers.
    fn acts(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n)
            .map(|i| rng.f32() * if i % 37 == 3 { 30.0 } else { 1.0 })
            .collect()
    }

    /// Σ |w · x| over the dequantized row (and |m s| for the `_1` formats): the scale of
    /// rounding differences.
    fn magnitude(t: DType, w: &[u8], x: &[f32]) -> f64 {
        let mut wf = vec![0f32; x.len()];
        t.dequantize_row(&w[..t.row_bytes(x.len()).unwrap()], &mut wf)
            .unwrap();
        wf.iter()
            .zip(x)
            .map(|(&a, &b)| (a as f64 * b as f64).abs())
            .sum::<f64>()
            + 1e-6
    }

    type T0 = fn(&[u8], &[BlockQ8_0x]) -> f32;
    type T1 = fn(&[u8], &[BlockQ8_1x]) -> f32;
    type K0 = unsafe fn(&[u8], &[BlockQ8_0x]) -> f32;
    type K1 = unsafe fn(&[u8], &[BlockQ8_1x]) -> f32;

    /// Every kernel of this file, for 0..=13 blocks (every count of leftover blocks, with and
    /// without whole groups) and rows longer than the activations, equals its scalar twin.
    #[test]
    fn every_kernel_matches_its_twin_for_any_block_count() {
        if !super::super::has_avx2() {
            return;
        }
        let vnni = super::super::has_avx512();
        let mut k0: Vec<(DType, T0, K0)> = vec![
            (DType::Q4_0, scalar::q4_0, q4_0_avx2),
            (DType::Q5_0, scalar::q5_0, q5_0_avx2),
            (DType::Q8_0, scalar::q8_0, q8_0_avx2),
        ];
        let mut k1: Vec<(DType, T1, K1)> = vec![
            (DType::Q4_1, scalar::q4_1, q4_1_avx2),
            (DType::Q5_1, scalar::q5_1, q5_1_avx2),
        ];
        if vnni {
            k0.extend([
                (DType::Q4_0, scalar::q4_0 as T0, q4_0_vnni as K0),
                (DType::Q5_0, scalar::q5_0, q5_0_vnni),
                (DType::Q8_0, scalar::q8_0, q8_0_vnni),
                (DType::Q4_0, scalar::q4_0, q4_0_avx512),
                (DType::Q5_0, scalar::q5_0, q5_0_avx512),
            ]);
            k1.extend([
                (DType::Q4_1, scalar::q4_1 as T1, q4_1_vnni as K1),
                (DType::Q5_1, scalar::q5_1, q5_1_vnni),
                (DType::Q4_1, scalar::q4_1, q4_1_avx512),
                (DType::Q5_1, scalar::q5_1, q5_1_avx512),
            ]);
        }
        let mut rng = Rng(0x243f6a8885a308d3);
        for nb in 0..=13 {
            for extra in [0, 1, 70] {
                let x = acts(32 * nb, &mut rng);
                let mut a0 = vec![BlockQ8_0x::default(); nb];
                let mut a1 = vec![BlockQ8_1x::default(); nb];
                quantize_q8_0(&x, &mut a0);
                quantize_q8_1(&x, &mut a1);
                for &(t, twin, f) in &k0 {
                    let w = weights(t, nb, extra, &mut rng);
                    // SAFETY: the CPU has the kernel's features (checked above).
                    let (want, got) = (twin(&w, &a0), unsafe { f(&w, &a0) });
                    let tol = 1e-5 * magnitude(t, &w, &x);
                    assert!(
                        (want - got).abs() as f64 <= tol,
                        "{t:?} nb {nb}: {got} vs {want}"
                    );
                }
                for &(t, twin, f) in &k1 {
                    let w = weights(t, nb, extra, &mut rng);
                    // SAFETY: as above.
                    let (want, got) = (twin(&w, &a1), unsafe { f(&w, &a1) });
                    let m: f64 = a1.iter().map(|y| y.s.abs() as f64).sum::<f64>() * 0.05;
                    let tol = 1e-5 * (magnitude(t, &w, &x) + m);
                    assert!(
                        (want - got).abs() as f64 <= tol,
                        "{t:?} nb {nb}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "weight row shorter")]
    fn short_rows_panic() {
        if !super::super::has_avx512() {
            panic!("weight row shorter (no AVX-512 here)");
        }
        let a = vec![BlockQ8_0x::default(); 8];
        let w = vec![0u8; 7 * size_of::<BlockQ4_0>()];
        // SAFETY: the CPU has AVX-512; the kernel asserts before reading.
        unsafe { q4_0_avx512(&w, &a) };
    }
}
