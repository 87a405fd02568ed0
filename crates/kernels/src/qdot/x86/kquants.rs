//! K-quant dot products (Q2_K .. Q6_K weights with Q8_K activations) for AVX2 and AVX-512.
//!
//! Every kernel streams each weight byte once and follows one scheme per super-block: unpack
//! the quants to unsigned bytes, multiply them with the int8 activations by `maddubs` (u8 ×
//! i8, pairs summed to i16), weight those by the sub-block scales (`madd` / `dpwssd`) into
//! exact i32 lanes, take the mins or the quants' offset through the activations' `bsums`, and
//! add the block into f32 vector accumulators with one FMA by `d_w * d_a` (and one by
//! `dmin_w * d_a`). One horizontal sum per row. Each block also prefetches the weight bytes
//! ahead ([`super::prefetch`]): the hardware prefetcher alone leaves a single thread short of
//! the bus.
//!
//! AVX-512 works on 64 quants per register: a 32-byte group of packed quants is loaded into
//! both halves (a broadcast load, no shuffle) and the upper half shifted to its other bit
//! field, so the register lines up with 64 consecutive activations; `vpermw` spreads the
//! sub-block scales to match.
//!
//! Layouts are those of [`crate::quants::kquants`]; the formulas are the scalar twins'
//! ([`crate::qdot::scalar`]). The multi-row kernels (prefill) in [`super::kquants_n`] share
//! the helpers marked `pub(super)` here.

use super::prefetch;
use crate::qdot::{BlockQ8Kx, DotTable, Isa};
use crate::quants::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};
use std::ptr::read_unaligned;

/// Fill the K-quant entries of `t` for `isa`.
pub fn install(t: &mut DotTable, isa: Isa) {
    match isa {
        Isa::Scalar => {}
        Isa::Avx2 => {
            t.q2k = q2k_avx2;
            t.q3k = q3k_avx2;
            t.q4k = q4k_avx2;
            t.q5k = q5k_avx2;
            t.q6k = q6k_avx2;
        }
        Isa::Avx512 => {
            t.q2k = q2k_avx512;
            t.q3k = q3k_avx512;
            t.q4k = q4k_avx512;
            t.q5k = q5k_avx512;
            t.q6k = q6k_avx512;
        }
    }
    super::kquants_n::install(t, isa);
}

// ---------------------------------------------------------------------------------------------
// Shared scalar helpers.

/// Panics unless `w` holds `nb` blocks of `bytes` (a caller bug; checked once per row).
#[inline(always)]
pub(super) fn check_row(w: &[u8], bytes: usize, nb: usize) {
    assert!(
        w.len() >= nb * bytes,
        "weight row shorter than its activations"
    );
}

/// For a multi-row kernel of `n` rows: checks that `a_len` activation blocks split into
/// `out_len == n` rows and that the weight row (`bytes` per block) covers one; returns the
/// blocks per row.
pub(super) fn row_blocks(w: &[u8], bytes: usize, a_len: usize, out_len: usize, n: usize) -> usize {
    assert!(
        out_len == n && a_len.is_multiple_of(n),
        "{a_len} activation blocks do not split into {out_len} rows"
    );
    let nb = a_len / n;
    check_row(w, bytes, nb);
    nb
}

/// Little-endian u32 at `p` (unaligned).
#[inline(always)]
unsafe fn rd32(p: *const u8) -> u32 {
    u32::from_le(read_unaligned(p as *const u32))
}

/// Q4_K / Q5_K's 12 packed bytes as (8 scales, 8 mins), one 6-bit value per byte.
#[inline(always)]
pub(super) unsafe fn k4_scales(p: *const u8) -> (u64, u64) {
    let (w0, w1, w2) = (rd32(p), rd32(p.add(4)), rd32(p.add(8)));
    let sc_hi = (w2 & 0x0f0f_0f0f) | ((w0 >> 2) & 0x3030_3030);
    let mn_hi = ((w2 >> 4) & 0x0f0f_0f0f) | ((w1 >> 2) & 0x3030_3030);
    (
        (w0 & 0x3f3f_3f3f) as u64 | (sc_hi as u64) << 32,
        (w1 & 0x3f3f_3f3f) as u64 | (mn_hi as u64) << 32,
    )
}

/// Q3_K's 12 packed bytes as sixteen unsigned 6-bit scales (subtract 32 for the value), as
/// four little-endian words of four.
#[inline(always)]
unsafe fn q3_scales(p: *const u8) -> [u32; 4] {
    let (w0, w1, w2) = (rd32(p), rd32(p.add(4)), rd32(p.add(8)));
    let m = 0x0f0f_0f0f;
    let h = 0x0303_0303;
    [
        (w0 & m) | (w2 & h) << 4,
        (w1 & m) | ((w2 >> 2) & h) << 4,
        ((w0 >> 4) & m) | ((w2 >> 4) & h) << 4,
        ((w1 >> 4) & m) | ((w2 >> 6) & h) << 4,
    ]
}

/// `[i16; 32]` vpermw indices: lane `i` takes word `base + i / width`.
const fn word_groups(base: i16, width: usize) -> [i16; 32] {
    let mut o = [0i16; 32];
    let mut i = 0;
    while i < 32 {
        o[i] = base + (i / width) as i16;
        i += 1;
    }
    o
}

/// vpshufb controls (two 128-bit lanes): low lane repeats word `lo`, high lane word `hi`.
const fn word_bcast(lo: u8, hi: u8) -> [u8; 32] {
    let mut o = [0u8; 32];
    let mut i = 0;
    while i < 16 {
        o[i] = 2 * lo + (i % 2) as u8;
        o[16 + i] = 2 * hi + (i % 2) as u8;
        i += 1;
    }
    o
}

/// AVX2: shuffles that broadcast word `k` of each lane (Q4_K / Q5_K, 32-element sub-blocks).
pub(super) static BCAST_SAME: [[u8; 32]; 8] = [
    word_bcast(0, 0),
    word_bcast(1, 1),
    word_bcast(2, 2),
    word_bcast(3, 3),
    word_bcast(4, 4),
    word_bcast(5, 5),
    word_bcast(6, 6),
    word_bcast(7, 7),
];
/// AVX2: word `2j` to the low lane, `2j + 1` to the high one (16-element sub-blocks).
pub(super) static BCAST_PAIR: [[u8; 32]; 4] = [
    word_bcast(0, 1),
    word_bcast(2, 3),
    word_bcast(4, 5),
    word_bcast(6, 7),
];
/// AVX-512, 32-element sub-blocks: chunk `c` puts scale `2c` in words 0..16, `2c + 1` above.
pub(super) static PERM_K4: [[i16; 32]; 4] = [
    word_groups(0, 16),
    word_groups(2, 16),
    word_groups(4, 16),
    word_groups(6, 16),
];
/// AVX-512, 16-element sub-blocks: register `r` spreads scales `4r .. 4r + 4` over its four
/// 128-bit lanes.
pub(super) static PERM_K16: [[i16; 32]; 4] = [
    word_groups(0, 8),
    word_groups(4, 8),
    word_groups(8, 8),
    word_groups(12, 8),
];

// ---------------------------------------------------------------------------------------------
// AVX2.

/// Unaligned 32-byte loads: weight bytes, activations, constants.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn ld(p: *const u8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn ld_i8(p: *const i8) -> __m256i {
    _mm256_loadu_si256(p as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn cst(c: &[u8; 32]) -> __m256i {
    _mm256_loadu_si256(c.as_ptr() as *const __m256i)
}

/// The f16 at `p`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_at(p: *const u8) -> f32 {
    let h = read_unaligned(p as *const u16) as i32;
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)))
}

/// `d · da` and `dmin · da` from the f16 pair at `p`, each broadcast to 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dd_pair(p: *const u8, da: f32) -> (__m256, __m256) {
    let v = _mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const i32)));
    let v = _mm256_castps128_ps256(_mm_mul_ps(v, _mm_set1_ps(da)));
    (
        _mm256_broadcastss_ps(_mm256_castps256_ps128(v)),
        _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(1)),
    )
}

/// Sum of the 8 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// Σ_k m_k (bsums[2k] + bsums[2k+1]) as 8 i32 lanes, `m` eight unsigned bytes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mins_k4(mn: u64, y: &BlockQ8Kx) -> __m256i {
    let m = _mm_cvtsi64_si128(mn as i64);
    let m16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m));
    _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), m16)
}

/// `maddubs(q, a)` weighted by the i16 scales `s`, as 8 i32 lanes.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_scaled(q: __m256i, a: *const i8, s: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, ld_i8(a)), s)
}

/// Q4_K: nibbles of each 32-byte chunk are two 32-element sub-blocks; scales by vpshufb.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q4k_avx2(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ4K>();
    check_row(w, BB, a.len());
    let m4 = _mm256_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b, y.d);
        let (sc, mn) = k4_scales(b.add(offset_of!(BlockQ4K, scales)));
        let s8 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let qs = b.add(offset_of!(BlockQ4K, qs));
        let yq = y.qs.as_ptr();
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            let q = ld(qs.add(32 * c));
            let lo = _mm256_and_si256(q, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            let s_lo = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c]));
            let s_hi = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c + 1]));
            let p = _mm256_add_epi32(
                dot_scaled(lo, yq.add(64 * c), s_lo),
                dot_scaled(hi, yq.add(64 * c + 32), s_hi),
            );
            isum = _mm256_add_epi32(isum, p);
        }
        let mins = mins_k4(mn, y);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, acc);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, acc);
    }
    hsum(acc)
}

/// Q5_K: Q4_K plus the fifth bits, walked two bits of `qh` per 32-byte chunk.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q5k_avx2(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ5K>();
    check_row(w, BB, a.len());
    let m4 = _mm256_set1_epi8(0x0f);
    let m10 = _mm256_set1_epi8(0x10);
    let mut acc = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b, y.d);
        let (sc, mn) = k4_scales(b.add(offset_of!(BlockQ5K, scales)));
        let s8 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let qs = b.add(offset_of!(BlockQ5K, qs));
        // Bits 2c, 2c+1 of each byte sit at bits 0, 1 after c shifts by two (bits pulled in
        // from the neighbouring byte land above bit 5 and are never read).
        let mut qh = ld(b.add(offset_of!(BlockQ5K, qh)));
        let yq = y.qs.as_ptr();
        let mut isum = _mm256_setzero_si256();
        for c in 0..4 {
            let q = ld(qs.add(32 * c));
            let lo = _mm256_or_si256(
                _mm256_and_si256(q, m4),
                _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m10),
            );
            let hi = _mm256_or_si256(
                _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4),
                _mm256_and_si256(_mm256_slli_epi16::<3>(qh), m10),
            );
            qh = _mm256_srli_epi16::<2>(qh);
            let s_lo = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c]));
            let s_hi = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c + 1]));
            let p = _mm256_add_epi32(
                dot_scaled(lo, yq.add(64 * c), s_lo),
                dot_scaled(hi, yq.add(64 * c + 32), s_hi),
            );
            isum = _mm256_add_epi32(isum, p);
        }
        let mins = mins_k4(mn, y);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, acc);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, acc);
    }
    hsum(acc)
}

/// Q6_K: 6-bit quants as unsigned 0..64 (nibble | two high bits << 4); the offset 32 comes
/// back as `32 Σ sc · bsums`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn q6k_avx2(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ6K>();
    check_row(w, BB, a.len());
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    let mut acc = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let ql = b.add(offset_of!(BlockQ6K, ql));
        let qhp = b.add(offset_of!(BlockQ6K, qh));
        let sc = _mm_loadu_si128(b.add(offset_of!(BlockQ6K, scales)) as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc);
        let yq = y.qs.as_ptr();
        let corr = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), sc16);
        let mut isum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<5>(corr));
        for h in 0..2 {
            let sh = if h == 0 {
                _mm256_permute2x128_si256::<0x00>(sc16, sc16)
            } else {
                _mm256_permute2x128_si256::<0x11>(sc16, sc16)
            };
            let l0 = ld(ql.add(64 * h));
            let l1 = ld(ql.add(64 * h + 32));
            let qh = ld(qhp.add(32 * h));
            let q = [
                _mm256_or_si256(
                    _mm256_and_si256(l0, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(l1, m4),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                    _mm256_and_si256(qh, m30),
                ),
                _mm256_or_si256(
                    _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                ),
            ];
            for (j, (&qj, ctl)) in q.iter().zip(&BCAST_PAIR).enumerate() {
                let s = _mm256_shuffle_epi8(sh, cst(ctl));
                isum = _mm256_add_epi32(isum, dot_scaled(qj, yq.add(128 * h + 32 * j), s));
            }
        }
        let d = y.d * f16_at(b.add(offset_of!(BlockQ6K, d)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d), acc);
    }
    hsum(acc)
}

/// Q3_K: quants as unsigned 0..8 (two low bits | high bit << 2); the offset 4 comes back as
/// `4 Σ sc · bsums`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q3k_avx2(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ3K>();
    check_row(w, BB, a.len());
    let m3 = _mm256_set1_epi8(3);
    let m04 = _mm256_set1_epi8(4);
    let mut acc = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let [s0, s1, s2, s3] = q3_scales(b.add(offset_of!(BlockQ3K, scales)));
        let sc = _mm_sub_epi8(
            _mm_setr_epi32(s0 as i32, s1 as i32, s2 as i32, s3 as i32),
            _mm_set1_epi8(32),
        );
        let sc16 = _mm256_cvtepi8_epi16(sc);
        let qsp = b.add(offset_of!(BlockQ3K, qs));
        // Bit `4h + j` of each hmask byte moves to bit 0 after that many shifts by one.
        let mut hm = ld(b.add(offset_of!(BlockQ3K, hmask)));
        let yq = y.qs.as_ptr();
        let corr = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), sc16);
        let mut isum = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32::<2>(corr));
        for h in 0..2 {
            let sh = if h == 0 {
                _mm256_permute2x128_si256::<0x00>(sc16, sc16)
            } else {
                _mm256_permute2x128_si256::<0x11>(sc16, sc16)
            };
            let mut qs = ld(qsp.add(32 * h));
            for (j, ctl) in BCAST_PAIR.iter().enumerate() {
                let q = _mm256_or_si256(
                    _mm256_and_si256(qs, m3),
                    _mm256_and_si256(_mm256_slli_epi16::<2>(hm), m04),
                );
                qs = _mm256_srli_epi16::<2>(qs);
                hm = _mm256_srli_epi16::<1>(hm);
                let s = _mm256_shuffle_epi8(sh, cst(ctl));
                isum = _mm256_add_epi32(isum, dot_scaled(q, yq.add(128 * h + 32 * j), s));
            }
        }
        let d = y.d * f16_at(b.add(offset_of!(BlockQ3K, d)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(d), acc);
    }
    hsum(acc)
}

/// Q2_K: 2-bit planes; scales are the low nibbles, the mins (high nibbles) meet `bsums`.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q2k_avx2(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ2K>();
    check_row(w, BB, a.len());
    let m3 = _mm256_set1_epi8(3);
    let m4x = _mm_set1_epi8(0x0f);
    let mut acc = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b.add(offset_of!(BlockQ2K, d)), y.d);
        let raw = _mm_loadu_si128(b.add(offset_of!(BlockQ2K, scales)) as *const __m128i);
        let sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4x));
        let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4x));
        let mins = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), mn16);
        let qsp = b.add(offset_of!(BlockQ2K, qs));
        let yq = y.qs.as_ptr();
        let mut isum = _mm256_setzero_si256();
        for h in 0..2 {
            let sh = if h == 0 {
                _mm256_permute2x128_si256::<0x00>(sc16, sc16)
            } else {
                _mm256_permute2x128_si256::<0x11>(sc16, sc16)
            };
            let mut qs = ld(qsp.add(32 * h));
            for (j, ctl) in BCAST_PAIR.iter().enumerate() {
                let q = _mm256_and_si256(qs, m3);
                qs = _mm256_srli_epi16::<2>(qs);
                let s = _mm256_shuffle_epi8(sh, cst(ctl));
                isum = _mm256_add_epi32(isum, dot_scaled(q, yq.add(128 * h + 32 * j), s));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, acc);
        acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, acc);
    }
    hsum(acc)
}

// ---------------------------------------------------------------------------------------------
// AVX-512 (F, BW, VL, VNNI).

/// Unaligned 64-byte load.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn ld512(p: *const u8) -> __m512i {
    _mm512_loadu_si512(p as *const __m512i)
}

/// The 32 bytes at `p` in both halves of a register, the upper half shifted right by `S` bits
/// (within 16-bit lanes: the bits it pulls in from the next byte are above any field read).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn twice<const S: u32>(p: *const u8) -> __m512i {
    let x = _mm512_broadcast_i64x4(ld(p));
    _mm512_mask_srli_epi16::<S>(x, 0xffff_0000, x)
}

/// The i16 `words` rearranged by the vpermw indices `idx`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn perm(idx: &[i16; 32], words: __m512i) -> __m512i {
    _mm512_permutexvar_epi16(_mm512_loadu_si512(idx.as_ptr() as *const __m512i), words)
}

/// `isum + Σ pairs of maddubs(q, a) · s`. The `vpdpwssd` is written as assembly because LLVM
/// (tuning for a generic x86-64) splits a chain of them into `vpmaddwd` + `vpaddd`, one more
/// uop per call on the two vector ports this loop is bound by.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
pub(super) unsafe fn dot512(isum: __m512i, q: __m512i, a: *const i8, s: __m512i) -> __m512i {
    let p = _mm512_maddubs_epi16(q, _mm512_loadu_si512(a as *const __m512i));
    let mut acc = isum;
    std::arch::asm!(
        "vpdpwssd {acc}, {p}, {s}",
        acc = inout(zmm_reg) acc,
        p = in(zmm_reg) p,
        s = in(zmm_reg) s,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// The 8 scales of Q4_K / Q5_K as i16 words 0..8 of a register, and the mins term (AVX2).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k4_setup(p: *const u8, y: &BlockQ8Kx) -> (__m512i, __m256i) {
    let (sc, mn) = k4_scales(p);
    let s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
    (s16, mins_k4(mn, y))
}

/// Q4_K: each 32-byte chunk as [low nibbles | high nibbles] against 64 activations.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_avx512(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ4K>();
    check_row(w, BB, a.len());
    let m4 = _mm512_set1_epi8(0x0f);
    let mut acc = _mm512_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b, y.d);
        let (s16, mins) = k4_setup(b.add(offset_of!(BlockQ4K, scales)), y);
        let qs = b.add(offset_of!(BlockQ4K, qs));
        let yq = y.qs.as_ptr();
        let mut isum = _mm512_setzero_si512();
        for (c, idx) in PERM_K4.iter().enumerate() {
            let q = _mm512_and_si512(twice::<4>(qs.add(32 * c)), m4);
            isum = dot512(isum, q, yq.add(64 * c), perm(idx, s16));
        }
        let dd = _mm512_broadcastss_ps(_mm256_castps256_ps128(dd));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
        accm = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, accm);
    }
    _mm512_reduce_add_ps(acc) + hsum(accm)
}

/// Q5_K: Q4_K plus the fifth bits from [qh | qh >> 1], shifted onto bit 4 per chunk.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q5k_avx512(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ5K>();
    check_row(w, BB, a.len());
    let m4 = _mm512_set1_epi8(0x0f);
    let m10 = _mm512_set1_epi8(0x10);
    let mut acc = _mm512_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b, y.d);
        let (s16, mins) = k4_setup(b.add(offset_of!(BlockQ5K, scales)), y);
        let qs = b.add(offset_of!(BlockQ5K, qs));
        let hz = twice::<1>(b.add(offset_of!(BlockQ5K, qh)));
        // Chunk c needs bit 2c of each half on bit 4.
        let hb = [
            _mm512_slli_epi16::<4>(hz),
            _mm512_slli_epi16::<2>(hz),
            hz,
            _mm512_srli_epi16::<2>(hz),
        ];
        let yq = y.qs.as_ptr();
        let mut isum = _mm512_setzero_si512();
        for (c, idx) in PERM_K4.iter().enumerate() {
            let q = _mm512_or_si512(
                _mm512_and_si512(twice::<4>(qs.add(32 * c)), m4),
                _mm512_and_si512(hb[c], m10),
            );
            isum = dot512(isum, q, yq.add(64 * c), perm(idx, s16));
        }
        let dd = _mm512_broadcastss_ps(_mm256_castps256_ps128(dd));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
        accm = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, accm);
    }
    _mm512_reduce_add_ps(acc) + hsum(accm)
}

/// Q6_K: per half, one 64-byte load of `ql` holds groups [0 | 1] (low nibbles) and [2 | 3]
/// (high nibbles); their high bits come from [qh | qh >> 2].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_avx512(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ6K>();
    check_row(w, BB, a.len());
    let m4 = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let mut acc = _mm512_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let ql = b.add(offset_of!(BlockQ6K, ql));
        let qh = b.add(offset_of!(BlockQ6K, qh));
        let sc = _mm_loadu_si128(b.add(offset_of!(BlockQ6K, scales)) as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc);
        let s16 = _mm512_castsi256_si512(sc16);
        let corr = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), sc16);
        let mut isum = _mm512_zextsi256_si512(_mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32::<5>(corr),
        ));
        let yq = y.qs.as_ptr();
        for h in 0..2 {
            let l = ld512(ql.add(64 * h));
            let hz = twice::<2>(qh.add(32 * h));
            let q01 = _mm512_or_si512(
                _mm512_and_si512(l, m4),
                _mm512_and_si512(_mm512_slli_epi16::<4>(hz), m30),
            );
            let q23 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(l), m4),
                _mm512_and_si512(hz, m30),
            );
            isum = dot512(isum, q01, yq.add(128 * h), perm(&PERM_K16[2 * h], s16));
            isum = dot512(
                isum,
                q23,
                yq.add(128 * h + 64),
                perm(&PERM_K16[2 * h + 1], s16),
            );
        }
        let d = y.d * f16_at(b.add(offset_of!(BlockQ6K, d)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// Q3_K: per half, [qs | qs >> 2] holds groups [0 | 1] and (>> 4) [2 | 3]; the high bits
/// come from [hmask | hmask >> 1].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q3k_avx512(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ3K>();
    check_row(w, BB, a.len());
    let m3 = _mm512_set1_epi8(3);
    let m04 = _mm512_set1_epi8(4);
    let mut acc = _mm512_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let [s0, s1, s2, s3] = q3_scales(b.add(offset_of!(BlockQ3K, scales)));
        let sc = _mm_sub_epi8(
            _mm_setr_epi32(s0 as i32, s1 as i32, s2 as i32, s3 as i32),
            _mm_set1_epi8(32),
        );
        let sc16 = _mm256_cvtepi8_epi16(sc);
        let s16 = _mm512_castsi256_si512(sc16);
        let corr = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), sc16);
        let mut isum = _mm512_zextsi256_si512(_mm256_sub_epi32(
            _mm256_setzero_si256(),
            _mm256_slli_epi32::<2>(corr),
        ));
        let hz = twice::<1>(b.add(offset_of!(BlockQ3K, hmask)));
        // Half h, groups [2p | 2p + 1] need bit 4h + 2p of each half on bit 2.
        let hb = [
            _mm512_slli_epi16::<2>(hz),
            hz,
            _mm512_srli_epi16::<2>(hz),
            _mm512_srli_epi16::<4>(hz),
        ];
        let qs = b.add(offset_of!(BlockQ3K, qs));
        let yq = y.qs.as_ptr();
        for h in 0..2 {
            let qz = twice::<2>(qs.add(32 * h));
            let q01 = _mm512_or_si512(_mm512_and_si512(qz, m3), _mm512_and_si512(hb[2 * h], m04));
            let q23 = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(qz), m3),
                _mm512_and_si512(hb[2 * h + 1], m04),
            );
            isum = dot512(isum, q01, yq.add(128 * h), perm(&PERM_K16[2 * h], s16));
            isum = dot512(
                isum,
                q23,
                yq.add(128 * h + 64),
                perm(&PERM_K16[2 * h + 1], s16),
            );
        }
        let d = y.d * f16_at(b.add(offset_of!(BlockQ3K, d)));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(d), acc);
    }
    _mm512_reduce_add_ps(acc)
}

/// Q2_K: per half, [qs | qs >> 2] holds groups [0 | 1] and (>> 4) [2 | 3].
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q2k_avx512(w: &[u8], a: &[BlockQ8Kx]) -> f32 {
    const BB: usize = size_of::<BlockQ2K>();
    check_row(w, BB, a.len());
    let m3 = _mm512_set1_epi8(3);
    let m4x = _mm_set1_epi8(0x0f);
    let mut acc = _mm512_setzero_ps();
    let mut accm = _mm256_setzero_ps();
    for (i, y) in a.iter().enumerate() {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let (dd, dm) = dd_pair(b.add(offset_of!(BlockQ2K, d)), y.d);
        let raw = _mm_loadu_si128(b.add(offset_of!(BlockQ2K, scales)) as *const __m128i);
        let s16 = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(raw, m4x)));
        let mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16::<4>(raw), m4x));
        let mins = _mm256_madd_epi16(ld(y.bsums.as_ptr() as *const u8), mn16);
        let qs = b.add(offset_of!(BlockQ2K, qs));
        let yq = y.qs.as_ptr();
        let mut isum = _mm512_setzero_si512();
        for h in 0..2 {
            let qz = twice::<2>(qs.add(32 * h));
            let q01 = _mm512_and_si512(qz, m3);
            let q23 = _mm512_and_si512(_mm512_srli_epi16::<4>(qz), m3);
            isum = dot512(isum, q01, yq.add(128 * h), perm(&PERM_K16[2 * h], s16));
            isum = dot512(
                isum,
                q23,
                yq.add(128 * h + 64),
                perm(&PERM_K16[2 * h + 1], s16),
            );
        }
        let dd = _mm512_broadcastss_ps(_mm256_castps256_ps128(dd));
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), dd, acc);
        accm = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(mins), dm, accm);
    }
    _mm512_reduce_add_ps(acc) + hsum(accm)
}
