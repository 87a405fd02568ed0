//! Multi-row AVX-512 VNNI dot products of Q4_0, Q4_1, Q5_0 and Q5_1 against activations
//! also laid out in groups of four blocks ([`ActGroup`]): one weight row against `N` = 2..=4
//! activation rows per call (batched decode and short prefill jobs).
//!
//! They compute exactly what the single-row AVX-512 kernels of [`super::legacy`] compute for
//! each row — the same integer sums, the same products of the same scales, the same FMAs
//! into the same lanes, the same final sums, and the leftover `nb % 4` blocks as their 256-bit
//! kernel takes them — so a token gets the same bits alone (one row, the single-row kernel)
//! as in a batch (here). What changes is where the activations come from: each row's four
//! blocks are one group of contiguous quants (two 64-byte loads instead of four 32-byte loads
//! and two inserts) with the four scales `d` and sums `s` side by side (one load instead of
//! two and a two-source permute), and the weight side — nibbles, fifth bits, the gather and
//! conversion of the f16 fields, the leftover blocks' unpacking — is done once for all rows,
//! with no call per row for the leftovers.

use super::kquants::row_blocks;
use super::legacy::{
    acts, dot_off_vnni, dot_vnni, high_bits_vnni, hsum, hsum128, min1, nibbles, q4_0_isum2,
    q4_0_w2, q4_1_w2, q5_0_isum2, q5_0_w2, q5_1_w2, q_1_isum2, scale1, scale_hi, scale_index,
};
use super::legacy_n::{q4_1_q, q5_1_q};
use super::prefetch;
use crate::qdot::{ActGroup, BlockQ8_0x, BlockQ8_1x, DotTable, Isa};
use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};

/// Fill the grouped entries of `t` (AVX-512 only).
pub fn install(t: &mut DotTable, isa: Isa) {
    if let Isa::Avx512 = isa {
        t.g.q4_0 = Some(q4_0_g);
        t.g.q5_0 = Some(q5_0_g);
        t.g.q4_1 = Some(q4_1_g);
        t.g.q5_1 = Some(q5_1_g);
        t.g.q8_0 = Some(q8_0_g);
    }
}

// Per format, for the leftover blocks: one block's quants as 32 unsigned bytes (256-bit; the
// `_1` formats' are `legacy_n`'s), multiplied as the single-row kernels' 256-bit kernel does.

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_0_q1(b: *const u8) -> __m256i {
    nibbles(b.add(offset_of!(BlockQ4_0, qs)))
}

#[inline]
#[target_feature(enable = "avx2,avx512bw,avx512vl")]
unsafe fn q5_0_q1(b: *const u8) -> __m256i {
    _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_vnni(b.add(offset_of!(BlockQ5_0, qh))),
    )
}

/// One format's kernel (see the module doc): `$w2` unpacks two blocks and `$isum2` multiplies
/// them (512-bit), `$q1` / `$isum1` the same for one leftover block (256-bit), `$with_m` says
/// whether the format adds `m_w · s_a` per block.
macro_rules! kernel_g {
    ($(#[$doc:meta])* $name:ident, $rows:ident, $blk:ty, $act:ty, $w2:ident, $isum2:expr, $q1:ident, $isum1:expr, $with_m:tt) => {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $rows<const N: usize>(w: &[u8], a: &[$act], g: &[ActGroup], out: &mut [f32]) {
            const S: usize = size_of::<$blk>();
            const W_IDX: [i16; 32] = scale_index(S, $with_m);
            let nb = row_blocks(w, S, a.len(), out.len(), N);
            let per = nb.div_ceil(4);
            assert_eq!(g.len(), N * per, "activation groups do not match the blocks");
            let (wp, gp) = (w.as_ptr(), g.as_ptr());
            let w_idx = _mm512_loadu_si512(W_IDX.as_ptr() as *const _);
            let p01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
            let p23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
            let mut acc0 = [_mm512_setzero_ps(); N];
            let mut acc1 = [_mm512_setzero_ps(); N];
            #[allow(unused_mut)]
            let mut mins = [_mm256_setzero_ps(); N];
            let full = nb / 4;
            for gi in 0..full {
                let b = wp.add(4 * gi * S);
                prefetch(b, 4 * S);
                let wg = group4_weights!($w2, b, w_idx, S);
                for r in 0..N {
                    let y = &*gp.add(r * per + gi);
                    let yq = y.qs.as_ptr() as *const __m512i;
                    group4_row!(
                        $with_m,
                        $isum2,
                        wg,
                        _mm512_load_si512(yq),
                        _mm512_load_si512(yq.add(1)),
                        kernel_g!(@act_scales $with_m, y),
                        p01,
                        p23,
                        acc0[r],
                        acc1[r],
                        mins[r]
                    );
                }
            }
            // The leftover blocks, one at a time into one 256-bit accumulator per row, plus
            // the scalar sum of their offsets, as the 256-bit kernel adds them up (with its
            // scale helpers).
            let mut acct = [_mm256_setzero_ps(); N];
            #[allow(unused_mut)]
            let mut tail = [0f32; N];
            for j in 4 * full..nb {
                let b = wp.add(j * S);
                let q = $q1(b);
                let (gi, l) = (j / 4, j % 4);
                for r in 0..N {
                    let y = &*gp.add(r * per + gi);
                    let ya = _mm256_load_si256(y.qs.as_ptr().add(32 * l) as *const __m256i);
                    let isum = $isum1(q, ya);
                    acct[r] = _mm256_fmadd_ps(scale1(b, y.d[l]), _mm256_cvtepi32_ps(isum), acct[r]);
                    kernel_g!(@min1 $with_m, tail[r], b, y.s[l], $blk);
                }
            }
            for r in 0..N {
                let mut sum = group4_row!(@sum $with_m, acc0[r], acc1[r], mins[r]);
                if full < per {
                    let z = _mm256_setzero_ps();
                    let t = _mm256_add_ps(_mm256_add_ps(acct[r], z), _mm256_add_ps(z, z));
                    sum += hsum(t) + kernel_g!(@no_mins $with_m) + tail[r];
                }
                out[r] = sum;
            }
        }

        $(#[$doc])*
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn $name(w: &[u8], a: &[$act], g: &[ActGroup], out: &mut [f32]) {
            match out.len() {
                1 => $rows::<1>(w, a, g, out),
                2 => $rows::<2>(w, a, g, out),
                3 => $rows::<3>(w, a, g, out),
                4 => $rows::<4>(w, a, g, out),
                5 => $rows::<5>(w, a, g, out),
                6 => $rows::<6>(w, a, g, out),
                7 => $rows::<7>(w, a, g, out),
                8 => $rows::<8>(w, a, g, out),
                n => panic!("grouped kernel called with {n} rows"),
            }
        }
    };
    // [d_a, s_a] of the four blocks (`_1` formats), or [d_a, d_a].
    (@act_scales true, $y:ident) => {
        _mm256_load_ps($y.d.as_ptr())
    };
    (@act_scales false, $y:ident) => {
        _mm256_broadcast_ps(&*($y.d.as_ptr() as *const __m128))
    };
    (@min1 false, $tail:expr, $b:ident, $s:expr, $blk:ty) => {};
    (@min1 true, $tail:expr, $b:ident, $s:expr, $blk:ty) => {
        $tail += min1($b.add(offset_of!($blk, m)), $s)
    };
    // The 256-bit kernel's sum of its (here zero) group offsets: `+0.0`, or nothing.
    (@no_mins false) => {
        0f32
    };
    (@no_mins true) => {
        hsum128(_mm_setzero_ps())
    };
}

kernel_g!(
    /// Q4_0 × Q8_0 groups, as `q4_0_avx512` per row.
    q4_0_g,
    q4_0_rows,
    BlockQ4_0,
    BlockQ8_0x,
    q4_0_w2,
    q4_0_isum2,
    q4_0_q1,
    |q, y| dot_off_vnni(q, y, 8),
    false
);
kernel_g!(
    /// Q4_1 × Q8_1 groups, as `q4_1_avx512` per row.
    q4_1_g,
    q4_1_rows,
    BlockQ4_1,
    BlockQ8_1x,
    q4_1_w2,
    q_1_isum2,
    q4_1_q,
    |q, y| dot_vnni(q, y),
    true
);
kernel_g!(
    /// Q5_0 × Q8_0 groups, as `q5_0_avx512` per row.
    q5_0_g,
    q5_0_rows,
    BlockQ5_0,
    BlockQ8_0x,
    q5_0_w2,
    q5_0_isum2,
    q5_0_q1,
    |q, y| dot_off_vnni(q, y, 16),
    false
);
kernel_g!(
    /// Q5_1 × Q8_1 groups, as `q5_1_avx512` per row.
    q5_1_g,
    q5_1_rows,
    BlockQ5_1,
    BlockQ8_1x,
    q5_1_w2,
    q_1_isum2,
    q5_1_q,
    |q, y| dot_vnni(q, y),
    true
);

/// Two Q8_0 blocks' quants (at `b` and `b + S`): their magnitudes, and a mask of the negative
/// ones.
#[inline]
#[target_feature(enable = "avx2,avx512f,avx512bw")]
unsafe fn q8_0_w2(b: *const u8) -> (__m512i, __mmask64) {
    const S: usize = size_of::<BlockQ8_0>();
    let q = b.add(offset_of!(BlockQ8_0, qs));
    let w = _mm512_inserti64x4::<1>(
        _mm512_castsi256_si512(_mm256_loadu_si256(q as *const __m256i)),
        _mm256_loadu_si256(q.add(S) as *const __m256i),
    );
    (_mm512_abs_epi8(w), _mm512_movepi8_mask(w))
}

/// Σ w × a over each run of 4 bytes of two blocks: `|w|` times `a` negated where `w` is
/// negative, the same i32 sums as the single-row kernel's `vpsignb` (where `w` is zero the
/// product is zero either way).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn q8_0_isum2(w: (__m512i, __mmask64), y: __m512i) -> __m512i {
    let z = _mm512_setzero_si512();
    _mm512_dpbusd_epi32(z, w.0, _mm512_mask_sub_epi8(y, w.1, z, y))
}

/// The upper 8 lanes.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn high8(v: __m512) -> __m256 {
    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
#[allow(clippy::needless_range_loop)] // r indexes several arrays in step
unsafe fn q8_0_rows<const N: usize>(w: &[u8], a: &[BlockQ8_0x], g: &[ActGroup], out: &mut [f32]) {
    const S: usize = size_of::<BlockQ8_0>();
    const W_IDX: [i16; 32] = scale_index(S, false);
    let nb = row_blocks(w, S, a.len(), out.len(), N);
    let per = nb.div_ceil(4);
    assert_eq!(
        g.len(),
        N * per,
        "activation groups do not match the blocks"
    );
    let (wp, gp) = (w.as_ptr(), g.as_ptr());
    let w_idx = _mm512_loadu_si512(W_IDX.as_ptr() as *const _);
    let p01 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    let p23 = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    // Blocks 0 and 1 of each group in `acc0` (low and high eight lanes), 2 and 3 in `acc1`:
    // lane for lane the single-row kernel's four 256-bit accumulators.
    let mut acc0 = [_mm512_setzero_ps(); N];
    let mut acc1 = [_mm512_setzero_ps(); N];
    let mins = [_mm256_setzero_ps(); N];
    let full = nb / 4;
    for gi in 0..full {
        let b = wp.add(4 * gi * S);
        prefetch(b, 4 * S);
        let wg = group4_weights!(q8_0_w2, b, w_idx, S);
        for r in 0..N {
            let y = &*gp.add(r * per + gi);
            let yq = y.qs.as_ptr() as *const __m512i;
            group4_row!(
                false,
                q8_0_isum2,
                wg,
                _mm512_load_si512(yq),
                _mm512_load_si512(yq.add(1)),
                _mm256_broadcast_ps(&*(y.d.as_ptr() as *const __m128)),
                p01,
                p23,
                acc0[r],
                acc1[r],
                mins[r]
            );
        }
    }
    // The leftover blocks into block 0's accumulator, as the single-row kernel adds them.
    let mut acc_b0: [__m256; N] = std::array::from_fn(|r| _mm512_castps512_ps256(acc0[r]));
    for j in 4 * full..nb {
        let b = wp.add(j * S);
        let q = acts(b.add(offset_of!(BlockQ8_0, qs)) as *const i8);
        let aq = _mm256_abs_epi8(q);
        let (gi, l) = (j / 4, j % 4);
        for r in 0..N {
            let y = &*gp.add(r * per + gi);
            let ya = _mm256_load_si256(y.qs.as_ptr().add(32 * l) as *const __m256i);
            let isum = dot_vnni(aq, _mm256_sign_epi8(ya, q));
            acc_b0[r] = _mm256_fmadd_ps(scale1(b, y.d[l]), _mm256_cvtepi32_ps(isum), acc_b0[r]);
        }
    }
    for r in 0..N {
        let a01 = _mm256_add_ps(acc_b0[r], high8(acc0[r]));
        let a23 = _mm256_add_ps(_mm512_castps512_ps256(acc1[r]), high8(acc1[r]));
        // The single-row kernel's `+ 0` for its (absent) offsets and leftover sum.
        out[r] = hsum(_mm256_add_ps(a01, a23)) + 0f32 + 0f32;
    }
}

/// Q8_0 × Q8_0 groups, as `q8_0_vnni` (256-bit) per row: each 512-bit step is two of its
/// 256-bit blocks side by side.
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
unsafe fn q8_0_g(w: &[u8], a: &[BlockQ8_0x], g: &[ActGroup], out: &mut [f32]) {
    match out.len() {
        1 => q8_0_rows::<1>(w, a, g, out),
        2 => q8_0_rows::<2>(w, a, g, out),
        3 => q8_0_rows::<3>(w, a, g, out),
        4 => q8_0_rows::<4>(w, a, g, out),
        5 => q8_0_rows::<5>(w, a, g, out),
        6 => q8_0_rows::<6>(w, a, g, out),
        7 => q8_0_rows::<7>(w, a, g, out),
        8 => q8_0_rows::<8>(w, a, g, out),
        n => panic!("grouped kernel called with {n} rows"),
    }
}
