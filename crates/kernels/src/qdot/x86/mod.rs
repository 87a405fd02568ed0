//! x86-64 kernels: AVX2 (with FMA and F16C) and AVX-512 (F, BW, VL, VNNI). Each file fills
//! the entries it implements into a [`DotTable`]; anything it leaves keeps the scalar twin.

/// The AVX-512 32-element kernels' step for a group of four blocks, shared by the kernels on
/// the plain block layout (`legacy`: one row, or several) and on grouped activations
/// (`grouped`), so that every one of them gives a row the same arithmetic, whatever the
/// activations' layout. `group4_weights!` unpacks blocks `b .. b + 4S` once (`$w2`: two
/// blocks' quants as unsigned bytes) and gathers and converts their f16 fields with one
/// `vpermt2w` (`$w_idx`, from `legacy::scale_index`); `group4_row!` takes one activation row
/// (`$y01`, `$y23`: two blocks' quants each; `$da`: their four `d`, then four `s` or `d`
/// again) into that row's accumulators.
#[cfg(target_arch = "x86_64")]
macro_rules! group4_weights {
    ($w2:ident, $b:expr, $w_idx:ident, $s:expr) => {{
        let b: *const u8 = $b;
        let dm = _mm512_permutex2var_epi16(
            _mm512_loadu_si512(b as *const _),
            $w_idx,
            _mm512_loadu_si512(b.add(scale_hi($s)) as *const _),
        );
        (
            $w2(b),
            $w2(b.add(2 * $s)),
            _mm256_cvtph_ps(_mm512_castsi512_si128(dm)),
        )
    }};
}

/// See [`group4_weights`]. `$acc0`, `$acc1`: the row's two accumulators (blocks 0-1, 2-3);
/// `$mins` its offset sums (the `_1` formats: `m_w s_a` in lanes 4..7).
#[cfg(target_arch = "x86_64")]
macro_rules! group4_row {
    ($with_m:tt, $isum2:expr, $w:expr, $y01:expr, $y23:expr, $da:expr, $p01:ident, $p23:ident,
        $acc0:expr, $acc1:expr, $mins:expr) => {{
        let (q01, q23, dw) = $w;
        let s01 = $isum2(q01, $y01);
        let s23 = $isum2(q23, $y23);
        let sc = _mm256_mul_ps(dw, $da);
        group4_row!(@mins $with_m, $mins, sc);
        let sc = _mm512_castps256_ps512(sc);
        let d01 = _mm512_permutexvar_ps($p01, sc);
        let d23 = _mm512_permutexvar_ps($p23, sc);
        $acc0 = _mm512_fmadd_ps(d01, _mm512_cvtepi32_ps(s01), $acc0);
        $acc1 = _mm512_fmadd_ps(d23, _mm512_cvtepi32_ps(s23), $acc1);
    }};
    (@mins false, $mins:expr, $sc:ident) => {{
        let _ = &$mins;
    }};
    (@mins true, $mins:expr, $sc:ident) => {
        $mins = _mm256_add_ps($mins, $sc)
    };
    // A row's sum over its groups.
    (@sum $with_m:tt, $acc0:expr, $acc1:expr, $mins:expr) => {{
        let sum = _mm512_reduce_add_ps(_mm512_add_ps($acc0, $acc1));
        group4_row!(@sum_mins $with_m, sum, $mins)
    }};
    (@sum_mins false, $sum:ident, $mins:expr) => {{
        let _ = &$mins;
        $sum
    }};
    // Lanes 4..7: m_w s_a.
    (@sum_mins true, $sum:ident, $mins:expr) => {
        $sum + hsum128(_mm256_extractf128_ps($mins, 1))
    };
}

#[cfg(target_arch = "x86_64")]
mod grouped;
#[cfg(target_arch = "x86_64")]
mod kquants;
#[cfg(target_arch = "x86_64")]
mod kquants_n;
#[cfg(target_arch = "x86_64")]
mod legacy;
#[cfg(target_arch = "x86_64")]
mod legacy_n;

/// Sum of a 256-bit register's 8 f32 lanes (AVX2), for the kernels outside `qdot` too.
#[cfg(target_arch = "x86_64")]
pub(crate) use legacy::hsum as hsum256;

use super::{DotTable, Isa};

/// Prefetch distances in bytes: into L2 far enough ahead to cover the memory latency at one
/// thread's bus speed (on a Sapphire Rapids VM: 1-2 KiB fell short, 4-12 KiB measured alike
/// within the noise), and into L1 a little ahead, from L2.
const PF: usize = 4096;
const PF_L1: usize = 512;

/// Prefetch the `bytes` bytes starting [`PF`] past `p` into L2 and those [`PF_L1`] past it
/// into L1, one request per cache line each. Never faults, so it may point past the row.
/// On an AMX Xeon VM, `matmul_stream` (2 threads, interleaved builds): the far requests into
/// L2 (`T1`) instead of L1 took Q4_K from ~75% to ~85% of the bandwidth probe, Q8_0 ~88% to
/// ~100%, Q6_K ~78% to ~93% (a request to L1 holds one of its few fill buffers until the
/// line arrives from memory; L2 keeps many more in flight); the near ones into L1 took Q4_K
/// from 19.7-21.6 to mostly 23-25 GB/s, Q6_K and Q8_0 a few percent (256 or 1024 bytes measured
/// alike).
#[inline(always)]
unsafe fn prefetch(p: *const u8, bytes: usize) {
    use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0, _MM_HINT_T1};
    let mut o = 0;
    while o < bytes {
        _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(PF + o) as *const i8);
        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PF_L1 + o) as *const i8);
        o += 64;
    }
}

pub fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma")
            && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

pub fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2()
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Fill `t` with the kernels for `isa` (the caller has checked the CPU supports it).
#[allow(unused_variables)]
pub fn install(t: &mut DotTable, isa: Isa) {
    #[cfg(target_arch = "x86_64")]
    {
        legacy::install(t, isa);
        legacy_n::install(t, isa);
        grouped::install(t, isa);
        kquants::install(t, isa);
    }
}
