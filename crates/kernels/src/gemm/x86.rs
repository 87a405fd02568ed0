//! The AVX-512 VNNI micro-kernels (the K-quants' one is [`tile_k`]): `R` weight rows x `C` tokens in `R * C` f32 accumulators.
//! Per 64 elements: one byte register per row and per token, `vpdpbusd` for each pair (16
//! int32 lanes, 4 per 16-element sub-block) starting from the row's `-128 * Σq` per lane (the
//! activations are stored as `a + 128`), converted to f32 and multiplied by the product of
//! the row's sub-block scales (each repeated over its 4 lanes) and the token's block scales
//! (each over 8 lanes).

use super::kq::{KActs, KRows};
use super::{Acts, Out, Rows};
use std::arch::x86_64::*;

/// Dispatch a tile of `nr` x `nc` (each 1..=4) to its monomorphised kernel.
///
/// # Safety
/// AVX-512 F/BW/VNNI present; `out` valid for the tile.
pub unsafe fn tile(w: &Rows, r0: usize, nr: usize, a: &Acts, c0: usize, nc: usize, out: Out) {
    macro_rules! go {
        ($($r:literal, $c:literal);*) => {
            match (nr, nc) {
                $(($r, $c) => kernel::<$r, $c>(w, r0, a, c0, out),)*
                _ => super::tile_scalar(w, r0, nr, a, c0, nc, out),
            }
        };
    }
    go!(4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1)
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)] // r and c index several arrays in step
unsafe fn kernel<const R: usize, const C: usize>(
    w: &Rows,
    r0: usize,
    a: &Acts,
    c0: usize,
    out: Out,
) {
    let kp = w.kp;
    // Lane i takes scale i / 4 (rows: 16-element sub-blocks) or i / 8 (tokens: 32-element blocks).
    let idx_w = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    let idx_a = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    let zero = _mm512_setzero_si512();
    let k128 = _mm512_set1_epi8(-128);
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let wq: [*const i8; R] = std::array::from_fn(|r| w.q.as_ptr().add((r0 + r) * kp));
    let ws: [*const f32; R] = std::array::from_fn(|r| w.s.as_ptr().add((r0 + r) * kp / 16));
    let aq: [*const u8; C] = std::array::from_fn(|c| a.q.as_ptr().add((c0 + c) * kp));
    let ad: [*const f32; C] = std::array::from_fn(|c| a.d.as_ptr().add((c0 + c) * kp / 32));
    for p in 0..kp / 64 {
        let mut wv = [zero; R];
        let mut neg = [zero; R];
        let mut sw = [_mm512_setzero_ps(); R];
        for r in 0..R {
            wv[r] = _mm512_loadu_si512(wq[r].add(64 * p) as *const _);
            neg[r] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, k128, wv[r]));
            let s4 = _mm512_castps128_ps512(_mm_loadu_ps(ws[r].add(4 * p)));
            sw[r] = _mm512_permutexvar_ps(idx_w, s4);
        }
        for c in 0..C {
            let av = _mm512_loadu_si512(aq[c].add(64 * p) as *const _);
            let d2 = _mm_castsi128_ps(_mm_loadl_epi64(ad[c].add(2 * p) as *const __m128i));
            let sa = _mm512_permutexvar_ps(idx_a, _mm512_castps128_ps512(d2));
            for r in 0..R {
                let dot = _mm512_dpbusd_epi32(neg[r], av, wv[r]);
                let sc = _mm512_mul_ps(sw[r], sa);
                acc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), sc, acc[r][c]);
            }
        }
    }
    // The offsets, into the same accumulators.
    let subs = kp / 16;
    let wo: [*const f32; R] = std::array::from_fn(|r| w.o.as_ptr().add((r0 + r) * subs));
    let ag: [*const f32; C] = std::array::from_fn(|c| a.g.as_ptr().add((c0 + c) * subs));
    offsets_into(&mut acc, subs, wo, ag);
    store(&acc, out);
}

/// Dispatch a K-quant tile of `nr` x `nc` (each 1..=4) to its monomorphised kernel.
///
/// # Safety
/// AVX-512 F/BW/VNNI present; `out` valid for the tile.
pub unsafe fn tile_k(w: &KRows, r0: usize, nr: usize, a: &KActs, c0: usize, nc: usize, out: Out) {
    macro_rules! go {
        ($($r:literal, $c:literal);*) => {
            match (nr, nc) {
                $(($r, $c) => kernel_k::<$r, $c>(w, r0, a, c0, out),)*
                _ => super::kq::tile_scalar(w, r0, nr, a, c0, nc, out),
            }
        };
    }
    go!(4, 4; 4, 3; 4, 2; 4, 1; 3, 4; 3, 3; 3, 2; 3, 1; 2, 4; 2, 3; 2, 2; 2, 1; 1, 4; 1, 3; 1, 2; 1, 1)
}

/// K-quants: per 64 elements `vpmaddubsw` then `vpdpwssd` against the int16 sub-block scales
/// (each over the 8 int16 lanes of its 16 elements) into int32 accumulators; per 256 one
/// conversion and multiply-add by `d * da`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[allow(clippy::needless_range_loop)] // r and c index several arrays in step
unsafe fn kernel_k<const R: usize, const C: usize>(
    w: &KRows,
    r0: usize,
    a: &KActs,
    c0: usize,
    out: Out,
) {
    let k = w.k;
    // Int16 lane i takes scale i / 8.
    let idx_sc = _mm512_set_epi16(
        3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0,
        0, 0,
    );
    let mut acc = [[_mm512_setzero_ps(); C]; R];
    let wq: [*const u8; R] = std::array::from_fn(|r| w.q.as_ptr().add((r0 + r) * k));
    let wsc: [*const i16; R] = std::array::from_fn(|r| w.sc.as_ptr().add((r0 + r) * k / 16));
    let aq: [*const i8; C] = std::array::from_fn(|c| a.q.as_ptr().add((c0 + c) * k));
    let mut facc = [[0f32; 16]; 16];
    let facc = facc.as_flattened_mut();
    for sb in 0..k / 256 {
        let mut isum = [[_mm512_setzero_si512(); C]; R];
        for p in 4 * sb..4 * sb + 4 {
            let mut wv = [_mm512_setzero_si512(); R];
            let mut sc = [_mm512_setzero_si512(); R];
            for r in 0..R {
                wv[r] = _mm512_loadu_si512(wq[r].add(64 * p) as *const _);
                let s4 = _mm_loadl_epi64(wsc[r].add(4 * p) as *const __m128i);
                sc[r] = _mm512_permutexvar_epi16(idx_sc, _mm512_castsi128_si512(s4));
            }
            for c in 0..C {
                let av = _mm512_loadu_si512(aq[c].add(64 * p) as *const _);
                for r in 0..R {
                    let pairs = _mm512_maddubs_epi16(wv[r], av);
                    isum[r][c] = dpwssd(isum[r][c], pairs, sc[r]);
                }
            }
        }
        // The f32 accumulators live in memory (once per super-block), so the int32 ones keep
        // the registers.
        for r in 0..R {
            let dw = *w.d.get_unchecked((r0 + r) * k / 256 + sb);
            for c in 0..C {
                let da = *a.d.get_unchecked((c0 + c) * k / 256 + sb);
                let s = _mm512_set1_ps(dw * da);
                let f = facc.as_mut_ptr().add(16 * (r * C + c));
                let v = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum[r][c]), s, _mm512_loadu_ps(f));
                _mm512_storeu_ps(f, v);
            }
        }
        std::hint::black_box(facc.as_mut_ptr());
    }
    for r in 0..R {
        for c in 0..C {
            acc[r][c] = _mm512_loadu_ps(facc.as_ptr().add(16 * (r * C + c)));
        }
    }
    let subs = k / 16;
    let wo: [*const f32; R] = std::array::from_fn(|r| w.o.as_ptr().add((r0 + r) * subs));
    let ag: [*const f32; C] = std::array::from_fn(|c| a.g.as_ptr().add((c0 + c) * subs));
    offsets_into(&mut acc, subs, wo, ag);
    store(&acc, out);
}

/// `vpdpwssd` as one instruction: LLVM rewrites the intrinsic into `vpmaddwd` + `vpaddd`
/// (two instructions) when it can, which costs the kernel a third of its speed.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dpwssd(mut acc: __m512i, a: __m512i, b: __m512i) -> __m512i {
    std::arch::asm!(
        "vpdpwssd {acc}, {a}, {b}",
        acc = inout(zmm_reg) acc,
        a = in(zmm_reg) a,
        b = in(zmm_reg) b,
        options(pure, nomem, nostack, preserves_flags),
    );
    acc
}

/// `acc[r][c] += Σ_j o_r[j] * g_c[j]` over `subs` entries, 16 at a time (the lanes of each
/// accumulator are summed at the end anyway).
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn offsets_into<const R: usize, const C: usize>(
    acc: &mut [[__m512; C]; R],
    subs: usize,
    wo: [*const f32; R],
    ag: [*const f32; C],
) {
    for j in (0..subs).step_by(16) {
        let m: __mmask16 = if subs - j >= 16 {
            0xffff
        } else {
            (1u16 << (subs - j)) - 1
        };
        let ov: [__m512; R] = std::array::from_fn(|r| _mm512_maskz_loadu_ps(m, wo[r].add(j)));
        for c in 0..C {
            let gv = _mm512_maskz_loadu_ps(m, ag[c].add(j));
            for r in 0..R {
                acc[r][c] = _mm512_fmadd_ps(ov[r], gv, acc[r][c]);
            }
        }
    }
}

/// Sum each accumulator's lanes into `out[c * ld + r]`.
#[inline(always)]
unsafe fn store<const R: usize, const C: usize>(acc: &[[__m512; C]; R], out: Out) {
    for (r, acc) in acc.iter().enumerate() {
        for (c, acc) in acc.iter().enumerate() {
            *out.ptr.add(c * out.ld + r) = _mm512_reduce_add_ps(*acc);
        }
    }
}

/// Dispatch a K-quant tile of `nr` x `nc` (each 1..=4) to the AVX2 kernel, two weight rows at
/// a time (AVX2's sixteen registers hold a 2 x 4 tile of int32 accumulators).
///
/// # Safety
/// AVX2 present; `out` valid for the tile.
pub unsafe fn tile_k_avx2(
    w: &KRows,
    r0: usize,
    nr: usize,
    a: &KActs,
    c0: usize,
    nc: usize,
    out: Out,
) {
    let mut r = 0;
    while r < nr {
        let o = Out {
            ptr: out.ptr.add(r),
            ld: out.ld,
        };
        let (rows, at) = ((nr - r).min(2), r0 + r);
        match (rows, nc) {
            (2, 4) => kernel_k_avx2::<2, 4>(w, at, a, c0, o),
            (2, 3) => kernel_k_avx2::<2, 3>(w, at, a, c0, o),
            (2, 2) => kernel_k_avx2::<2, 2>(w, at, a, c0, o),
            (2, 1) => kernel_k_avx2::<2, 1>(w, at, a, c0, o),
            (1, 4) => kernel_k_avx2::<1, 4>(w, at, a, c0, o),
            (1, 3) => kernel_k_avx2::<1, 3>(w, at, a, c0, o),
            (1, 2) => kernel_k_avx2::<1, 2>(w, at, a, c0, o),
            (1, 1) => kernel_k_avx2::<1, 1>(w, at, a, c0, o),
            _ => super::kq::tile_scalar(w, at, rows, a, c0, nc, o),
        }
        r += rows;
    }
}

/// K-quants on AVX2: per 32 elements `vpmaddubsw` (unsigned quants by signed activations)
/// then `vpmaddwd` against the two int16 sub-block scales (each over the 8 int16 lanes of its
/// 16 elements), added into int32 accumulators; per 256 one conversion and multiply-add by
/// `d * da` into f32 accumulators kept in memory; the offsets at the end. The same sums as
/// [`kernel_k`] and the scalar twin, exact in int32 per super-block.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::needless_range_loop)] // r and c index several arrays in step
unsafe fn kernel_k_avx2<const R: usize, const C: usize>(
    w: &KRows,
    r0: usize,
    a: &KActs,
    c0: usize,
    out: Out,
) {
    let k = w.k;
    // Int16 lanes 0..7 (the low 128 bits) take the first scale's bytes, 8..15 the second's.
    let idx_sc = _mm256_setr_epi8(
        0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
        2, 3,
    );
    let wq: [*const u8; R] = std::array::from_fn(|r| w.q.as_ptr().add((r0 + r) * k));
    let wsc: [*const i16; R] = std::array::from_fn(|r| w.sc.as_ptr().add((r0 + r) * k / 16));
    let aq: [*const i8; C] = std::array::from_fn(|c| a.q.as_ptr().add((c0 + c) * k));
    let mut facc = [[_mm256_setzero_ps(); C]; R];
    for sb in 0..k / 256 {
        let mut isum = [[_mm256_setzero_si256(); C]; R];
        for p in 8 * sb..8 * sb + 8 {
            let mut wv = [_mm256_setzero_si256(); R];
            let mut sc = [_mm256_setzero_si256(); R];
            for r in 0..R {
                wv[r] = _mm256_loadu_si256(wq[r].add(32 * p) as *const __m256i);
                let s2 = std::ptr::read_unaligned(wsc[r].add(2 * p) as *const i32);
                sc[r] = _mm256_shuffle_epi8(_mm256_set1_epi32(s2), idx_sc);
            }
            for c in 0..C {
                let av = _mm256_loadu_si256(aq[c].add(32 * p) as *const __m256i);
                for r in 0..R {
                    let pairs = _mm256_maddubs_epi16(wv[r], av);
                    isum[r][c] = _mm256_add_epi32(isum[r][c], _mm256_madd_epi16(pairs, sc[r]));
                }
            }
        }
        for r in 0..R {
            let dw = *w.d.get_unchecked((r0 + r) * k / 256 + sb);
            for c in 0..C {
                let da = *a.d.get_unchecked((c0 + c) * k / 256 + sb);
                let s = _mm256_set1_ps(dw * da);
                facc[r][c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum[r][c]), s, facc[r][c]);
            }
        }
    }
    // The offsets: Σ_16 o * g, 8 entries at a time (k / 16 is a multiple of 16).
    let subs = k / 16;
    let wo: [*const f32; R] = std::array::from_fn(|r| w.o.as_ptr().add((r0 + r) * subs));
    let ag: [*const f32; C] = std::array::from_fn(|c| a.g.as_ptr().add((c0 + c) * subs));
    for j in (0..subs).step_by(8) {
        let ov: [__m256; R] = std::array::from_fn(|r| _mm256_loadu_ps(wo[r].add(j)));
        for c in 0..C {
            let gv = _mm256_loadu_ps(ag[c].add(j));
            for r in 0..R {
                facc[r][c] = _mm256_fmadd_ps(ov[r], gv, facc[r][c]);
            }
        }
    }
    for r in 0..R {
        for c in 0..C {
            *out.ptr.add(c * out.ld + r) = crate::qdot::x86::hsum256(facc[r][c]);
        }
    }
}
