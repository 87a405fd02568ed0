//! Multi-row dot products of the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) on
//! AVX2: one weight row against `N` = 1..=4 activation rows per call (batched decode, and
//! prefill on CPUs without the tiled AVX-512 kernel).
//!
//! Each weight block is unpacked once (nibbles, the fifth bits of Q5_*) and its f16 scales
//! converted once per group of four blocks; then only the multiplies and one FMA per block
//! are paid per activation row. The offset formats (Q4_0's 8, Q5_0's 16) and Q8_0 become
//! signed weights `w`, multiplied as `|w|` times the activations carrying the sign of `w`
//! (one `sign` per row instead of a second `maddubs`); Q4_1 / Q5_1 keep their unsigned quants
//! and add `m_w · s_a` per block. The integer sums are exact, so the results differ from the
//! single-row kernels in [`super::legacy`] only in the order f32 terms are added.
//!
//! `a` holds the rows back to back, `a.len() / out.len()` blocks each; `out[r]` gets the dot
//! with row `r`.

use super::kquants::row_blocks;
use super::legacy::{
    a_d4, a_ds4, acts, dot_avx2, high_bits_avx2, hsum, hsum128, min1, nibbles, q4_0_avx2,
    q4_1_avx2, q5_0_avx2, q5_1_avx2, q8_0_avx2, q8_0_vnni, scale1, w_d4, w_dm4,
};
use super::prefetch;
use crate::qdot::{BlockQ8_0x, BlockQ8_1x, DotTable, Isa};
use crate::quants::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use std::arch::x86_64::*;
use std::mem::{offset_of, size_of};

/// Fill the multi-row legacy-format entries of `t` for `isa`. AVX-512 takes only Q8_0 from
/// here (256-bit VNNI, as its single-row kernel); its other formats' multi-row kernels are the
/// grouped ones in [`super::grouped`].
pub fn install(t: &mut DotTable, isa: Isa) {
    match isa {
        Isa::Avx2 => {
            t.n.q4_0 = Some(q4_0_avx2_rows);
            t.n.q5_0 = Some(q5_0_avx2_rows);
            t.n.q8_0 = Some(q8_0_avx2_rows);
            t.n.q4_1 = Some(q4_1_avx2_rows);
            t.n.q5_1 = Some(q5_1_avx2_rows);
        }
        Isa::Avx512 => t.n.q8_0 = Some(q8_0_vnni_rows),
        Isa::Scalar => {}
    }
}

/// `|w|` (unsigned bytes) times activations carrying the sign of `w`, exact i32 lanes: |w|
/// reaches 128 for Q8_0, so the i16 products are `madd`ed directly (as the single-row Q8_0
/// kernel does; |w| · |a| pairs stay below 2^15).
#[inline]
#[target_feature(enable = "avx2")]
unsafe fn sdot_avx2(aw: __m256i, ys: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(aw, ys), _mm256_set1_epi16(1))
}

/// The same with VNNI: one `dpbusd`.
#[inline]
#[target_feature(enable = "avx2,avx512vl,avx512vnni")]
unsafe fn sdot_vnni(aw: __m256i, ys: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, ys)
}

// Per format: the block at `b` as bytes ready for `maddubs`. Signed formats give `w` (the
// caller takes `|w|` once and moves the sign onto each row's activations); the `_1` formats
// give their unsigned quants.

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q4_0_w(b: *const u8) -> __m256i {
    _mm256_sub_epi8(
        nibbles(b.add(offset_of!(BlockQ4_0, qs))),
        _mm256_set1_epi8(8),
    )
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q5_0_w(b: *const u8) -> __m256i {
    let q = _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_0, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_0, qh))),
    );
    _mm256_sub_epi8(q, _mm256_set1_epi8(16))
}

#[inline]
#[target_feature(enable = "avx2")]
unsafe fn q8_0_w(b: *const u8) -> __m256i {
    _mm256_loadu_si256(b.add(offset_of!(BlockQ8_0, qs)) as *const __m256i)
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn q4_1_q(b: *const u8) -> __m256i {
    nibbles(b.add(offset_of!(BlockQ4_1, qs)))
}

#[inline]
#[target_feature(enable = "avx2")]
pub(super) unsafe fn q5_1_q(b: *const u8) -> __m256i {
    _mm256_or_si256(
        nibbles(b.add(offset_of!(BlockQ5_1, qs))),
        high_bits_avx2(b.add(offset_of!(BlockQ5_1, qh))),
    )
}

/// One format's multi-row kernel: `$unpack` gives a block's bytes, `$with_m` says whether the
/// format is a `_1` one (unsigned quants, offsets `m` on Q8_1 activations) or a signed one.
/// Blocks go in groups of four sharing their scale work, as in the single-row kernels: the
/// four f16 `d` (and `m`) of the weights are converted once, multiplied with each row's four
/// activation scales, and each block picks its product with a permute. The last `nb % 4`
/// blocks take their scales one at a time.
macro_rules! kernel_rows {
    ($(#[$doc:meta])* $name:ident, $single:ident, $blk:ty, $act:ty, $unpack:ident, $with_m:tt) => {
        kernel_rows!($(#[$doc])* $name, "avx2,fma,f16c", $single, $blk, $act, $unpack, $with_m, sdot_avx2);
    };
    ($(#[$doc:meta])* $name:ident, $feat:literal, $single:ident, $blk:ty, $act:ty, $unpack:ident, $with_m:tt, $sdot:ident) => {
        $(#[$doc])*
        #[target_feature(enable = $feat)]
        unsafe fn $name(w: &[u8], a: &[$act], out: &mut [f32]) {
            #[target_feature(enable = $feat)]
            unsafe fn rows<const N: usize>(w: &[u8], a: &[$act], out: &mut [f32]) {
                const S: usize = size_of::<$blk>();
                let nb = row_blocks(w, S, a.len(), out.len(), N);
                let (wp, ap) = (w.as_ptr(), a.as_ptr());
                // Per row, one accumulator per block of a group, as the single-row kernels.
                let mut acc = [[_mm256_setzero_ps(); 4]; N];
                #[allow(unused_mut)]
                let mut mins = [_mm256_setzero_ps(); N];
                let mut i = 0;
                while i + 4 <= nb {
                    let b = wp.add(i * S);
                    prefetch(b, 4 * S);
                    let sc: [__m256; N] = kernel_rows!(@scales $with_m, b, ap, i, nb, S, mins, N);
                    for k in 0..4 {
                        let q = $unpack(b.add(k * S));
                        let lane = kernel_rows!(@lane $with_m, k);
                        kernel_rows!(@rows $with_m, $sdot, q, ap, i + k, nb, sc, lane, acc, k, N);
                    }
                    i += 4;
                }
                #[allow(unused_mut)]
                let mut tail = [0f32; N];
                while i < nb {
                    let b = wp.add(i * S);
                    let q = $unpack(b);
                    for r in 0..N {
                        let y = &*ap.add(r * nb + i);
                        let isum = kernel_rows!(@isum $with_m, $sdot, q, acts(y.qs.as_ptr()));
                        acc[r][0] =
                            _mm256_fmadd_ps(scale1(b, y.d), _mm256_cvtepi32_ps(isum), acc[r][0]);
                        kernel_rows!(@min1 $with_m, tail[r], b, y, $blk);
                    }
                    i += 1;
                }
                for r in 0..N {
                    let [a0, a1, a2, a3] = acc[r];
                    let a = _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3));
                    out[r] = hsum(a) + kernel_rows!(@mins $with_m, mins[r]) + tail[r];
                }
            }
            match out.len() {
                // The single-row kernel: the same sums in the same order (four accumulators
                // per row, one per block of a group), so a row gets the same bits either way.
                1 => out[0] = $single(w, a),
                2 => rows::<2>(w, a, out),
                3 => rows::<3>(w, a, out),
                4 => rows::<4>(w, a, out),
                n => panic!("multi-row kernel called with {n} rows"),
            }
        }
    };
    // Per row, [d_w d_a] of blocks i..i+4 in lanes 0..3 (the weights' scales converted once).
    (@scales false, $b:ident, $ap:ident, $i:expr, $nb:ident, $s:ident, $mins:ident, $n:ident) => {{
        let dw = w_d4($b, $s);
        let mut sc = [_mm256_setzero_ps(); $n];
        for (r, sc) in sc.iter_mut().enumerate() {
            *sc = _mm256_castps128_ps256(_mm_mul_ps(dw, a_d4($ap.add(r * $nb + $i))));
        }
        sc
    }};
    // Per row, [d_w d_a, m_w s_a] of blocks i..i+4 in lane pairs; the odd lanes add up in
    // that row's `mins`.
    (@scales true, $b:ident, $ap:ident, $i:expr, $nb:ident, $s:ident, $mins:ident, $n:ident) => {{
        let dm = w_dm4($b, $s);
        let mut sc = [_mm256_setzero_ps(); $n];
        for (r, sc) in sc.iter_mut().enumerate() {
            let p = _mm256_mul_ps(dm, a_ds4($ap.add(r * $nb + $i)));
            $mins[r] = _mm256_add_ps($mins[r], p);
            *sc = p;
        }
        sc
    }};
    (@lane false, $k:ident) => {
        _mm256_set1_epi32($k as i32)
    };
    (@lane true, $k:ident) => {
        _mm256_set1_epi32(2 * $k as i32)
    };
    // Block `j` of every row into its accumulator.
    (@rows false, $sdot:ident, $q:ident, $ap:ident, $j:expr, $nb:ident, $sc:ident, $lane:ident, $acc:ident, $k:ident, $n:ident) => {{
        let aw = _mm256_abs_epi8($q);
        for r in 0..$n {
            let y = acts((*$ap.add(r * $nb + $j)).qs.as_ptr());
            let isum = $sdot(aw, _mm256_sign_epi8(y, $q));
            let s = _mm256_permutevar8x32_ps($sc[r], $lane);
            $acc[r][$k] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), $acc[r][$k]);
        }
    }};
    (@rows true, $sdot:ident, $q:ident, $ap:ident, $j:expr, $nb:ident, $sc:ident, $lane:ident, $acc:ident, $k:ident, $n:ident) => {{
        for r in 0..$n {
            let y = acts((*$ap.add(r * $nb + $j)).qs.as_ptr());
            let isum = dot_avx2($q, y);
            let s = _mm256_permutevar8x32_ps($sc[r], $lane);
            $acc[r][$k] = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(isum), $acc[r][$k]);
        }
    }};
    (@isum false, $sdot:ident, $q:ident, $y:expr) => {
        $sdot(_mm256_abs_epi8($q), _mm256_sign_epi8($y, $q))
    };
    (@isum true, $sdot:ident, $q:ident, $y:expr) => {
        dot_avx2($q, $y)
    };
    (@min1 false, $tail:expr, $b:ident, $y:ident, $blk:ty) => {};
    (@min1 true, $tail:expr, $b:ident, $y:ident, $blk:ty) => {
        $tail += min1($b.add(offset_of!($blk, m)), $y.s)
    };
    (@mins false, $mins:expr) => {{
        let _ = $mins;
        0f32
    }};
    (@mins true, $mins:expr) => {{
        // Odd lanes: m_w s_a.
        let m = _mm256_permutevar8x32_ps($mins, _mm256_setr_epi32(1, 3, 5, 7, 0, 0, 0, 0));
        hsum128(_mm256_castps256_ps128(m))
    }};
}

kernel_rows!(
    /// Q4_0 × Q8_0, `N` rows: `w = q − 8` signed.
    q4_0_avx2_rows,
    q4_0_avx2,
    BlockQ4_0,
    BlockQ8_0x,
    q4_0_w,
    false
);
kernel_rows!(
    /// Q5_0 × Q8_0, `N` rows: `w = q − 16` signed, the fifth bit from `qh`.
    q5_0_avx2_rows,
    q5_0_avx2,
    BlockQ5_0,
    BlockQ8_0x,
    q5_0_w,
    false
);
kernel_rows!(
    /// Q8_0 × Q8_0, `N` rows.
    q8_0_avx2_rows,
    q8_0_avx2,
    BlockQ8_0,
    BlockQ8_0x,
    q8_0_w,
    false
);
kernel_rows!(
    /// Q8_0 × Q8_0, `N` rows, with 256-bit VNNI: the AVX-512 entry (its single-row kernel is
    /// 256-bit too).
    q8_0_vnni_rows,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    q8_0_vnni,
    BlockQ8_0,
    BlockQ8_0x,
    q8_0_w,
    false,
    sdot_vnni
);
kernel_rows!(
    /// Q4_1 × Q8_1, `N` rows: unsigned nibbles plus `m_w · s_a`.
    q4_1_avx2_rows,
    q4_1_avx2,
    BlockQ4_1,
    BlockQ8_1x,
    q4_1_q,
    true
);
kernel_rows!(
    /// Q5_1 × Q8_1, `N` rows: unsigned 5-bit quants plus `m_w · s_a`.
    q5_1_avx2_rows,
    q5_1_avx2,
    BlockQ5_1,
    BlockQ8_1x,
    q5_1_q,
    true
);

#[cfg(test)]
mod tests {
    use crate::qdot::{
        quantize_q8_0, quantize_q8_1, BlockQ8_0x, BlockQ8_1x, DotTable, GroupedActs, Isa,
        QuantActs, MAX_G, MAX_N,
    };
    use crate::DType;

    /// Every multi-row entry of every instruction set's table, on blocks and on grouped
    /// activations, gives each row the same bits as that table's single-row kernel, for
    /// 1..=MAX_N rows (MAX_G grouped) and 0..=13 blocks (whole groups of four and every count of leftovers):
    /// batched decode relies on it.
    #[test]
    fn multi_row_kernels_give_each_row_the_single_row_bits() {
        let mut s = 0x9e3779b97f4a7c15u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let mut checked = 0;
        for isa in Isa::available() {
            let t = DotTable::for_isa(isa).expect("available");
            let f0 = [
                (DType::Q4_0, t.q4_0, t.n.q4_0),
                (DType::Q5_0, t.q5_0, t.n.q5_0),
                (DType::Q8_0, t.q8_0, t.n.q8_0),
            ];
            let f1 = [
                (DType::Q4_1, t.q4_1, t.n.q4_1),
                (DType::Q5_1, t.q5_1, t.n.q5_1),
            ];
            for nb in 0..=13usize {
                for n in 1..=MAX_G.max(MAX_N) {
                    let x: Vec<f32> = (0..n * nb * 32)
                        .map(|i| {
                            let v = (next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
                            if i % 37 == 5 {
                                v * 20.0
                            } else {
                                v
                            }
                        })
                        .collect();
                    let mut a0 = vec![BlockQ8_0x::default(); n * nb];
                    let mut a1 = vec![BlockQ8_1x::default(); n * nb];
                    quantize_q8_0(&x, &mut a0);
                    quantize_q8_1(&x, &mut a1);
                    let mut weights = |dt: DType| {
                        let bb = dt.block_bytes();
                        let mut w: Vec<u8> = (0..nb * bb).map(|_| next() as u8).collect();
                        for b in w.chunks_exact_mut(bb) {
                            let fields: &[usize] = if matches!(dt, DType::Q4_1 | DType::Q5_1) {
                                &[0, 2]
                            } else {
                                &[0]
                            };
                            for &o in fields {
                                let v = ((next() >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1;
                                b[o..o + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
                            }
                        }
                        w
                    };
                    let g0 = GroupedActs::new(&QuantActs::Q8_0(a0.clone()), nb * 32).unwrap();
                    let g1 = GroupedActs::new(&QuantActs::Q8_1(a1.clone()), nb * 32).unwrap();
                    for (dt, grouped) in [
                        (DType::Q4_0, t.g.q4_0.is_some()),
                        (DType::Q5_0, t.g.q5_0.is_some()),
                        (DType::Q4_1, t.g.q4_1.is_some()),
                        (DType::Q5_1, t.g.q5_1.is_some()),
                        (DType::Q8_0, t.g.q8_0.is_some()),
                    ] {
                        if !grouped {
                            continue;
                        }
                        let w = weights(dt);
                        let mut out = vec![f32::NAN; n];
                        let (acts, g) = if matches!(dt, DType::Q4_1 | DType::Q5_1) {
                            (QuantActs::Q8_1(a1.clone()), &g1)
                        } else {
                            (QuantActs::Q8_0(a0.clone()), &g0)
                        };
                        let rd = crate::qdot::RowDot::new(&t, dt, &acts, nb * 32)
                            .expect("row dot")
                            .with_groups(&t, dt, g);
                        rd.dot_rows(&w, 0, &mut out);
                        for (r, &got) in out.iter().enumerate() {
                            let want = rd.dot(&w, r);
                            assert_eq!(
                                got.to_bits(),
                                want.to_bits(),
                                "grouped {dt:?} {isa:?} {nb} blocks, row {r} of {n}: {got} vs {want}"
                            );
                            checked += 1;
                        }
                    }
                    if n > MAX_N {
                        continue;
                    }
                    for (dt, one, many) in f0 {
                        let w = weights(dt);
                        checked += same_bits(dt, isa, &w, &a0, nb, n, one, many);
                    }
                    for (dt, one, many) in f1 {
                        let w = weights(dt);
                        checked += same_bits(dt, isa, &w, &a1, nb, n, one, many);
                    }
                }
            }
        }
        if super::super::has_avx2() {
            assert!(checked > 0, "no multi-row kernel was checked");
        }
    }

    type MultiRow<B> = unsafe fn(&[u8], &[B], &mut [f32]);

    /// Runs `many` (if the table has it) on `n` rows of `a` (`nb` blocks each) and checks each
    /// row's bits against `one`; returns the rows checked.
    #[allow(clippy::too_many_arguments)]
    fn same_bits<B>(
        dt: DType,
        isa: Isa,
        w: &[u8],
        a: &[B],
        nb: usize,
        n: usize,
        one: unsafe fn(&[u8], &[B]) -> f32,
        many: Option<MultiRow<B>>,
    ) -> usize {
        let Some(many) = many else { return 0 };
        let mut out = vec![f32::NAN; n];
        // SAFETY: the table is for an instruction set this CPU has.
        unsafe { many(w, a, &mut out) };
        for (r, got) in out.iter().enumerate() {
            // SAFETY: as above.
            let want = unsafe { one(w, &a[r * nb..(r + 1) * nb]) };
            assert_eq!(
                got.to_bits(),
                want.to_bits(),
                "{dt:?} {isa:?} {nb} blocks, row {r} of {n}: {got} vs {want}"
            );
        }
        n
    }
}
