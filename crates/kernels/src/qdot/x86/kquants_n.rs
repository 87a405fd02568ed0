//! Multi-row K-quant dot products (prefill): one weight row against `N` = 1..=4 activation
//! rows per call, for Q4_K, Q5_K and Q6_K on AVX2 and AVX-512.
//!
//! Each weight super-block is unpacked once — quants to unsigned bytes, sub-block scales
//! spread to the lanes they multiply, `d` / `dmin` converted, the prefetch issued — and then
//! multiplied with the same super-block of every activation row, one i32 block sum and one
//! f32 accumulator per row. Only the multiplies (`maddubs` + `madd` / `dpwssd`) and a short
//! f32 tail are paid per row; the single-row kernels in [`super::kquants`] pay the unpacking
//! per row as well. Per row and block the f32 tail is
//! `acc += d_a · (d_w · isum − dmin_w · mins)`, and offsets that scale with the activations'
//! `bsums` (Q4_K / Q5_K mins, Q6_K's `−32`) cost one `madd` per row.
//!
//! `a` holds the rows back to back, `a.len() / out.len()` super-blocks each; `out[r]` gets
//! the dot with row `r`. The integer sums are exact, so results differ from the single-row
//! kernels only in the order f32 terms are added.

use super::kquants::{
    check_row, cst, dd_pair, dot512, dot_scaled, f16_at, hsum, k4_scales, ld, ld512, perm, twice,
    BCAST_PAIR, BCAST_SAME, PERM_K16, PERM_K4,
};
use super::prefetch;
use crate::qdot::{BlockQ8Kx, DotTable, Isa};
use crate::quants::{BlockQ4K, BlockQ5K, BlockQ6K};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};
use std::ptr::read_unaligned;

/// Fill the multi-row K-quant entries of `t` for `isa`.
pub fn install(t: &mut DotTable, isa: Isa) {
    match isa {
        Isa::Scalar => {}
        Isa::Avx2 => {
            t.n.q4k = Some(q4k_avx2_rows);
            t.n.q5k = Some(q5k_avx2_rows);
            t.n.q6k = Some(q6k_avx2_rows);
        }
        Isa::Avx512 => {
            t.n.q4k = Some(q4k_avx512_rows);
            t.n.q5k = Some(q5k_avx512_rows);
            t.n.q6k = Some(q6k_avx512_rows);
        }
    }
}

/// Blocks per row for `n` rows in `a`, checking the weight row covers them (a caller bug
/// otherwise; once per call).
#[inline(always)]
fn blocks_per_row(w: &[u8], bytes: usize, a: &[BlockQ8Kx], n: usize) -> usize {
    assert!(
        a.len().is_multiple_of(n),
        "{} activation blocks do not split into {n} rows",
        a.len()
    );
    let nb = a.len() / n;
    check_row(w, bytes, nb);
    nb
}

/// The 8 Q4_K / Q5_K mins as i16 pairs (`m_k` twice: `bsums` has two entries per 32-element
/// sub-block), ready to `madd` with a row's `bsums`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn mins16(mn: u64) -> __m256i {
    let m = _mm_cvtsi64_si128(mn as i64);
    _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(m, m))
}

/// A row's `bsums` as 16 i16 words.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn bsums(y: &BlockQ8Kx) -> __m256i {
    ld(y.bsums.as_ptr() as *const u8)
}

// ---------------------------------------------------------------------------------------------
// AVX-512 (F, BW, VL, VNNI).

/// The f16 pair at `p` broadcast: (the first in all 16 lanes, the second in all 16 lanes).
/// One broadcast load and one conversion for both.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn f16_pair512(p: *const u8) -> (__m512, __m512) {
    let v = _mm512_cvtph_ps(_mm256_set1_epi32(read_unaligned(p as *const i32)));
    (_mm512_moveldup_ps(v), _mm512_movehdup_ps(v))
}

/// Q4_K / Q5_K body: `quants(b)` unpacks the four 64-quant chunks of the block at `b` (each
/// [32 low-nibble quants | 32 high-nibble quants], matching `PERM_K4`).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn k4_avx512_n<const N: usize>(
    w: &[u8],
    a: &[BlockQ8Kx],
    out: &mut [f32],
    bytes: usize,
    scales_at: usize,
    quants: impl Fn(*const u8) -> [__m512i; 4],
) {
    let nb = blocks_per_row(w, bytes, a, N);
    let mut acc = [_mm512_setzero_ps(); N];
    for i in 0..nb {
        let b = w.as_ptr().add(i * bytes);
        prefetch(b, bytes);
        let (dw, dmin) = f16_pair512(b);
        let (sc, mn) = k4_scales(b.add(scales_at));
        let s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let s = [
            perm(&PERM_K4[0], s16),
            perm(&PERM_K4[1], s16),
            perm(&PERM_K4[2], s16),
            perm(&PERM_K4[3], s16),
        ];
        let m16 = mins16(mn);
        let q = quants(b);
        // Chunk by chunk across the rows: N independent dependency chains.
        let mut isum = [_mm512_setzero_si512(); N];
        for c in 0..4 {
            for (r, isum) in isum.iter_mut().enumerate() {
                let yq = (*a.as_ptr().add(r * nb + i)).qs.as_ptr();
                *isum = dot512(*isum, q[c], yq.add(64 * c), s[c]);
            }
        }
        for (r, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
            let y = &*a.as_ptr().add(r * nb + i);
            let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums(y), m16));
            let t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
            let t = _mm512_fnmadd_ps(_mm512_zextps256_ps512(mins), dmin, t);
            *acc = _mm512_fmadd_ps(t, _mm512_set1_ps(y.d), *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = _mm512_reduce_add_ps(acc);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_avx512_n<const N: usize>(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    let m4 = _mm512_set1_epi8(0x0f);
    let quants = |b: *const u8| {
        let qs = b.add(offset_of!(BlockQ4K, qs));
        [0, 1, 2, 3].map(|c| _mm512_and_si512(twice::<4>(qs.add(32 * c)), m4))
    };
    let scales = offset_of!(BlockQ4K, scales);
    k4_avx512_n::<N>(w, a, out, size_of::<BlockQ4K>(), scales, quants);
}

/// Q5_K: the fifth bits from [qh | qh >> 1], moved onto bit 4 per chunk (as the single-row
/// kernel).
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q5k_avx512_n<const N: usize>(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    let m4 = _mm512_set1_epi8(0x0f);
    let m10 = _mm512_set1_epi8(0x10);
    let quants = |b: *const u8| {
        let qs = b.add(offset_of!(BlockQ5K, qs));
        let hz = twice::<1>(b.add(offset_of!(BlockQ5K, qh)));
        let hb = [
            _mm512_slli_epi16::<4>(hz),
            _mm512_slli_epi16::<2>(hz),
            hz,
            _mm512_srli_epi16::<2>(hz),
        ];
        [0, 1, 2, 3].map(|c| {
            _mm512_or_si512(
                _mm512_and_si512(twice::<4>(qs.add(32 * c)), m4),
                _mm512_and_si512(hb[c], m10),
            )
        })
    };
    let scales = offset_of!(BlockQ5K, scales);
    k4_avx512_n::<N>(w, a, out, size_of::<BlockQ5K>(), scales, quants);
}

/// Q6_K: quants as unsigned 0..64 in four registers (groups [0 | 1], [2 | 3] of each half);
/// the offset −32 enters each row's block sum as `bsums · (−32 sc)`.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_avx512_n<const N: usize>(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    const BB: usize = size_of::<BlockQ6K>();
    let nb = blocks_per_row(w, BB, a, N);
    let m4 = _mm512_set1_epi8(0x0f);
    let m30 = _mm512_set1_epi8(0x30);
    let mut acc = [_mm512_setzero_ps(); N];
    for i in 0..nb {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let ql = b.add(offset_of!(BlockQ6K, ql));
        let qh = b.add(offset_of!(BlockQ6K, qh));
        let sc = _mm_loadu_si128(b.add(offset_of!(BlockQ6K, scales)) as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc);
        // |32 sc| <= 4096 fits the i16 lanes.
        let neg32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(sc16));
        let s16 = _mm512_castsi256_si512(sc16);
        let s = [
            perm(&PERM_K16[0], s16),
            perm(&PERM_K16[1], s16),
            perm(&PERM_K16[2], s16),
            perm(&PERM_K16[3], s16),
        ];
        let mut q = [_mm512_setzero_si512(); 4];
        for h in 0..2 {
            let l = ld512(ql.add(64 * h));
            let hz = twice::<2>(qh.add(32 * h));
            q[2 * h] = _mm512_or_si512(
                _mm512_and_si512(l, m4),
                _mm512_and_si512(_mm512_slli_epi16::<4>(hz), m30),
            );
            q[2 * h + 1] = _mm512_or_si512(
                _mm512_and_si512(_mm512_srli_epi16::<4>(l), m4),
                _mm512_and_si512(hz, m30),
            );
        }
        // `d` is the block's last field: read it with the two scale bytes before it.
        let (_, dw) = f16_pair512(b.add(offset_of!(BlockQ6K, d) - 2));
        let mut isum: [__m512i; N] = std::array::from_fn(|r| {
            let y = &*a.as_ptr().add(r * nb + i);
            _mm512_zextsi256_si512(_mm256_madd_epi16(bsums(y), neg32))
        });
        for c in 0..4 {
            for (r, isum) in isum.iter_mut().enumerate() {
                let yq = (*a.as_ptr().add(r * nb + i)).qs.as_ptr();
                *isum = dot512(*isum, q[c], yq.add(64 * c), s[c]);
            }
        }
        for (r, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
            let y = &*a.as_ptr().add(r * nb + i);
            let t = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), dw);
            *acc = _mm512_fmadd_ps(t, _mm512_set1_ps(y.d), *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = _mm512_reduce_add_ps(acc);
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q4k_avx512_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => q4k_avx512_n::<4>(w, a, out),
        3 => q4k_avx512_n::<3>(w, a, out),
        2 => q4k_avx512_n::<2>(w, a, out),
        1 => q4k_avx512_n::<1>(w, a, out),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q5k_avx512_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => q5k_avx512_n::<4>(w, a, out),
        3 => q5k_avx512_n::<3>(w, a, out),
        2 => q5k_avx512_n::<2>(w, a, out),
        1 => q5k_avx512_n::<1>(w, a, out),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")]
unsafe fn q6k_avx512_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => q6k_avx512_n::<4>(w, a, out),
        3 => q6k_avx512_n::<3>(w, a, out),
        2 => q6k_avx512_n::<2>(w, a, out),
        1 => q6k_avx512_n::<1>(w, a, out),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

// ---------------------------------------------------------------------------------------------
// AVX2.

/// Q4_K (`Q5 = false`) and Q5_K (`Q5 = true`): per 32-byte chunk of nibbles, the low and high
/// 32-element sub-blocks (plus the fifth bits from `qh`, two per chunk) against each row.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn k4_avx2_n<const N: usize, const Q5: bool>(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    let (bytes, scales_at, qs_at) = if Q5 {
        let (s, q) = (offset_of!(BlockQ5K, scales), offset_of!(BlockQ5K, qs));
        (size_of::<BlockQ5K>(), s, q)
    } else {
        let (s, q) = (offset_of!(BlockQ4K, scales), offset_of!(BlockQ4K, qs));
        (size_of::<BlockQ4K>(), s, q)
    };
    let nb = blocks_per_row(w, bytes, a, N);
    let m4 = _mm256_set1_epi8(0x0f);
    let m10 = _mm256_set1_epi8(0x10);
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..nb {
        let b = w.as_ptr().add(i * bytes);
        prefetch(b, bytes);
        let (sc, mn) = k4_scales(b.add(scales_at));
        let s8 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
        let qs = b.add(qs_at);
        // Q5_K: bits 2c, 2c+1 of each qh byte reach bits 0, 1 after c shifts by two.
        let mut qh = if Q5 {
            ld(b.add(offset_of!(BlockQ5K, qh)))
        } else {
            _mm256_setzero_si256()
        };
        let mut isum = [_mm256_setzero_si256(); N];
        for c in 0..4 {
            let q = ld(qs.add(32 * c));
            let mut lo = _mm256_and_si256(q, m4);
            let mut hi = _mm256_and_si256(_mm256_srli_epi16::<4>(q), m4);
            if Q5 {
                lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m10));
                hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16::<3>(qh), m10));
                qh = _mm256_srli_epi16::<2>(qh);
            }
            let s_lo = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c]));
            let s_hi = _mm256_shuffle_epi8(s8, cst(&BCAST_SAME[2 * c + 1]));
            for (r, isum) in isum.iter_mut().enumerate() {
                let yq = (*a.as_ptr().add(r * nb + i)).qs.as_ptr();
                let p = _mm256_add_epi32(
                    dot_scaled(lo, yq.add(64 * c), s_lo),
                    dot_scaled(hi, yq.add(64 * c + 32), s_hi),
                );
                *isum = _mm256_add_epi32(*isum, p);
            }
        }
        let m16 = mins16(mn);
        // Per row as the single-row kernels: `acc += isum · (d_w d_a) − mins · (dmin_w d_a)`,
        // so a row gets the same bits from either.
        for (r, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
            let y = &*a.as_ptr().add(r * nb + i);
            let (dd, dm) = dd_pair(b, y.d);
            let mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bsums(y), m16));
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), dd, *acc);
            *acc = _mm256_fnmadd_ps(mins, dm, *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = hsum(acc);
    }
}

/// Q6_K: per half, the four 32-element groups (nibble | two high bits << 4, unsigned) one at
/// a time against each row; the offset −32 as in the AVX-512 kernel.
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_avx2_n<const N: usize>(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    const BB: usize = size_of::<BlockQ6K>();
    let nb = blocks_per_row(w, BB, a, N);
    let m4 = _mm256_set1_epi8(0x0f);
    let m30 = _mm256_set1_epi8(0x30);
    let mut acc = [_mm256_setzero_ps(); N];
    for i in 0..nb {
        let b = w.as_ptr().add(i * BB);
        prefetch(b, BB);
        let ql = b.add(offset_of!(BlockQ6K, ql));
        let qhp = b.add(offset_of!(BlockQ6K, qh));
        let sc = _mm_loadu_si128(b.add(offset_of!(BlockQ6K, scales)) as *const __m128i);
        let sc16 = _mm256_cvtepi8_epi16(sc);
        let neg32 = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16::<5>(sc16));
        let mut isum: [__m256i; N] =
            std::array::from_fn(|r| _mm256_madd_epi16(bsums(&*a.as_ptr().add(r * nb + i)), neg32));
        for h in 0..2 {
            let sh = if h == 0 {
                _mm256_permute2x128_si256::<0x00>(sc16, sc16)
            } else {
                _mm256_permute2x128_si256::<0x11>(sc16, sc16)
            };
            let l0 = ld(ql.add(64 * h));
            let l1 = ld(ql.add(64 * h + 32));
            let qh = ld(qhp.add(32 * h));
            for (j, ctl) in BCAST_PAIR.iter().enumerate() {
                let q = match j {
                    0 => _mm256_or_si256(
                        _mm256_and_si256(l0, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<4>(qh), m30),
                    ),
                    1 => _mm256_or_si256(
                        _mm256_and_si256(l1, m4),
                        _mm256_and_si256(_mm256_slli_epi16::<2>(qh), m30),
                    ),
                    2 => _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l0), m4),
                        _mm256_and_si256(qh, m30),
                    ),
                    _ => _mm256_or_si256(
                        _mm256_and_si256(_mm256_srli_epi16::<4>(l1), m4),
                        _mm256_and_si256(_mm256_srli_epi16::<2>(qh), m30),
                    ),
                };
                let s = _mm256_shuffle_epi8(sh, cst(ctl));
                for (r, isum) in isum.iter_mut().enumerate() {
                    let yq = (*a.as_ptr().add(r * nb + i)).qs.as_ptr();
                    *isum = _mm256_add_epi32(*isum, dot_scaled(q, yq.add(128 * h + 32 * j), s));
                }
            }
        }
        let dw = f16_at(b.add(offset_of!(BlockQ6K, d)));
        // Per row as the single-row kernel: `acc += isum · (d_a d_w)`, the same bits.
        for (r, (acc, isum)) in acc.iter_mut().zip(isum).enumerate() {
            let y = &*a.as_ptr().add(r * nb + i);
            let d = _mm256_set1_ps(y.d * dw);
            *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), d, *acc);
        }
    }
    for (o, acc) in out.iter_mut().zip(acc) {
        *o = hsum(acc);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q4k_avx2_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => k4_avx2_n::<4, false>(w, a, out),
        3 => k4_avx2_n::<3, false>(w, a, out),
        2 => k4_avx2_n::<2, false>(w, a, out),
        // The single-row kernel: the same sums in the same order.
        1 => out[0] = super::kquants::q4k_avx2(w, a),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q5k_avx2_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => k4_avx2_n::<4, true>(w, a, out),
        3 => k4_avx2_n::<3, true>(w, a, out),
        2 => k4_avx2_n::<2, true>(w, a, out),
        1 => out[0] = super::kquants::q5k_avx2(w, a),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_avx2_rows(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]) {
    match out.len() {
        4 => q6k_avx2_n::<4>(w, a, out),
        3 => q6k_avx2_n::<3>(w, a, out),
        2 => q6k_avx2_n::<2>(w, a, out),
        1 => out[0] = super::kquants::q6k_avx2(w, a),
        n => panic!("multi-row kernel called for {n} rows"),
    }
}

#[cfg(test)]
mod tests {
    use crate::qdot::{quantize_q8k, BlockQ8Kx, DotTable, Isa, MAX_N};
    use crate::DType;

    /// Every multi-row kernel, for 1..=MAX_N rows, equals the single-row kernel of its table
    /// row by row, within f32 rounding of the per-block terms.
    #[test]
    fn multi_row_kernels_match_single_row() {
        let mut s = 0x853c49e6748fea9bu64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let k = 1024;
        for isa in Isa::available() {
            let t = DotTable::for_isa(isa).unwrap();
            let kernels = [
                (DType::Q4K, t.q4k, t.n.q4k, &[0usize, 2][..]),
                (DType::Q5K, t.q5k, t.n.q5k, &[0, 2]),
                (DType::Q6K, t.q6k, t.n.q6k, &[208]),
            ];
            for (dt, one, many, f16s) in kernels {
                let Some(many) = many else { continue };
                let bb = dt.block_bytes();
                let mut w: Vec<u8> = (0..k / 256 * bb).map(|_| next() as u8).collect();
                for blk in w.chunks_exact_mut(bb) {
                    for &o in f16s {
                        let v = (next() >> 40) as f32 / (1u64 << 24) as f32 * 0.1 - 0.05;
                        blk[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                    }
                }
                let mut wf = vec![0f32; k];
                dt.dequantize_row(&w, &mut wf).unwrap();
                for n in 1..=MAX_N {
                    let x: Vec<f32> = (0..n * k)
                        .map(|_| (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
                        .collect();
                    let mut a = vec![BlockQ8Kx::default(); n * k / 256];
                    quantize_q8k(&x, &mut a);
                    let mut out = vec![0f32; n];
                    // SAFETY: the table is for an instruction set this CPU has.
                    unsafe { many(&w, &a, &mut out) };
                    for (r, (&got, ar)) in out.iter().zip(a.chunks(k / 256)).enumerate() {
                        let want = unsafe { one(&w, ar) };
                        let mag: f32 = ar
                            .iter()
                            .flat_map(|b| b.qs.iter().map(move |&q| (b.d * q as f32).abs()))
                            .zip(&wf)
                            .map(|(x, w)| x * w.abs())
                            .sum();
                        assert!(
                            (got - want).abs() <= 1e-5 * mag,
                            "{dt:?} {isa:?} {n} rows, row {r}: {got} vs {want} (scale {mag})"
                        );
                    }
                }
            }
        }
    }
}
