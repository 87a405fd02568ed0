//! Prefill's matmul: many activation rows (tokens) against the same weight rows, as register
//! tiles of [`TILE_R`] weight rows x [`TILE_C`] tokens.
//!
//! The 32-element formats take the kernel described here; the K-quants their own, in [`kq`].
//!
//! Every such weight format is first rewritten, a few rows at a time into a thread's
//! scratch buffer, as `w = s * q + o` with one signed byte `q` per element and an f32 scale
//! and offset per 16 elements ([`convert`]); the conversion is exact and costs a fraction of
//! the multiplications it feeds when there are more than a handful of tokens. One
//! micro-kernel then serves every format: activations are quantized to int8 per 32 elements
//! (llama.cpp's Q8_0 rounding, scale `da`) with the sums of each 16 (`g = da * Σa`), so
//! `w · x ≈ Σ_16 s · da · (q · a) + Σ_16 o · g`: byte products summed exactly in int32, scaled
//! in f32 per 64 elements, plus a short f32 dot for the offsets (the mins of Q4_1, Q5_1,
//! Q2_K, Q4_K, Q5_K; zero elsewhere). `vpdpbusd` multiplies unsigned by signed bytes, so the
//! activations are stored shifted to `a + 128` and each row's `128 * Σq` is taken off in int32
//! before any rounding.
//!
//! Where the CPU has AMX (Intel Xeon, 4th generation on), [`amx`] multiplies the same converted
//! rows on the tile unit instead, 16 rows x 16 tokens per instruction, with the activations
//! rearranged once per matmul ([`Kernel::Amx`]; its arithmetic per token is its own, batch
//! independent like the others').
//!
//! [`x86`] holds the AVX-512 VNNI micro-kernels, and an AVX2 one for the K-quants
//! (`vpmaddubsw` then `vpmaddwd` against the sub-block scales; the 32-element formats keep
//! their multi-row dots on AVX2, where a tile would pay the same per-block conversion and
//! multiply as they do); [`tile_scalar`] and [`kq::tile_scalar`] are their twins.

#[cfg(target_arch = "x86_64")]
pub mod amx;
pub mod convert;
pub mod kq;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::dtype::DType;
use half::f16;

/// Weight rows per register tile.
pub const TILE_R: usize = 4;
/// Tokens per register tile.
pub const TILE_C: usize = 4;

/// Elements per step of the micro-kernel (one 512-bit register of bytes).
const STEP: usize = 64;

/// `k` rounded up to a whole number of steps; the padding holds zeros on both sides.
pub fn padded(k: usize) -> usize {
    k.div_ceil(STEP) * STEP
}

/// Whether this CPU runs the fast AVX-512 micro-kernels, for every [`supported`] format.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::qdot::x86::has_avx512()
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// Whether this CPU has a fast micro-kernel for `dtype` (else callers keep their per-row
/// dots): every [`supported`] format with AVX-512, the K-quants with AVX2.
pub fn fast_for(dtype: DType) -> bool {
    match Kernel::best() {
        Kernel::Amx | Kernel::Avx512 => supported(dtype),
        Kernel::Avx2 => kq::supported(dtype),
        Kernel::Scalar => false,
    }
}

/// Whether `dtype` weights go through this path (when [`available`]).
pub fn supported(dtype: DType) -> bool {
    convert::supported(dtype) || kq::supported(dtype)
}

/// How activations are rounded for `dtype` weights here: Q8_K for the K-quants, else Q8_0.
pub fn act_format(dtype: DType) -> crate::actquant::ActFormat {
    if kq::supported(dtype) {
        crate::actquant::ActFormat::Q8K
    } else {
        crate::actquant::ActFormat::Q8_0
    }
}

/// Activations quantized for the weights of one matmul: Q8_0-style or Q8_K, and where the
/// CPU has AMX also rearranged for its tiles.
pub struct TiledActs {
    acts: ActsOf,
    #[cfg(target_arch = "x86_64")]
    panel: Option<amx::Panel>,
}

enum ActsOf {
    Blocks(Acts),
    K(kq::KActs),
}

impl TiledActs {
    /// Quantize `x` (rows of `k`) for `dtype` weights ([`supported`] ones).
    pub fn quantize(dtype: DType, x: &[f32], k: usize) -> TiledActs {
        let acts = if kq::supported(dtype) {
            ActsOf::K(kq::KActs::quantize(x, k))
        } else {
            ActsOf::Blocks(Acts::quantize(x, k))
        };
        #[cfg(target_arch = "x86_64")]
        let panel = amx::available().then(|| match &acts {
            ActsOf::K(a) => amx::Panel::from_kacts(dtype, a),
            ActsOf::Blocks(a) => amx::Panel::from_acts(a),
        });
        TiledActs {
            acts,
            #[cfg(target_arch = "x86_64")]
            panel,
        }
    }

    /// Whether these activations are the ones `dtype` weights take.
    pub fn fits(&self, dtype: DType) -> bool {
        #[cfg(target_arch = "x86_64")]
        if let Some(p) = &self.panel {
            if p.chunk != amx::chunk_of(dtype) {
                return false;
            }
        }
        matches!(self.acts, ActsOf::K(_)) == kq::supported(dtype)
    }
}

/// A thread's conversion buffers.
#[derive(Default)]
pub struct Scratch {
    rows: Rows,
    krows: kq::KRows,
    #[cfg(target_arch = "x86_64")]
    amx: amx::Scratch,
}

/// Convert `n` stored rows (`data`, `row_bytes` each, `k` elements) into `scratch` and multiply
/// them with every token of `acts`: `out.ptr[c * out.ld + r]`.
///
/// # Safety
/// `out` valid for those writes; `kernel` supported by this CPU; `acts` quantized for `dtype`
/// ([`TiledActs::fits`]) from rows of `k`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn run_rows(
    kernel: Kernel,
    dtype: DType,
    data: &[u8],
    row_bytes: usize,
    n: usize,
    k: usize,
    acts: &TiledActs,
    scratch: &mut Scratch,
    out: Out,
) {
    #[cfg(target_arch = "x86_64")]
    if let (Kernel::Amx, Some(p)) = (kernel, &acts.panel) {
        if n <= amx::TILE {
            // The kernel reads 16 rows (quants and offsets) whatever `n`: rows past it hold
            // whatever was there, and their results are dropped.
            match &acts.acts {
                ActsOf::Blocks(_)
                    if dtype == DType::Q8_0 && n == amx::TILE && k.is_multiple_of(64) =>
                {
                    // Q8_0's quants are already the tile's bytes: no conversion.
                    amx::run_q8_0(data, row_bytes, k, p, &mut scratch.amx, out);
                }
                ActsOf::K(_) if amx::takes_planes(dtype) => {
                    let planes = &mut scratch.amx.planes;
                    planes.fill(dtype, data, row_bytes, n, k);
                    amx::run_planes(planes, p, out);
                }
                ActsOf::K(_) => {
                    scratch.krows.fill(dtype, data, row_bytes, n, k);
                    let r = &mut scratch.krows;
                    r.q.resize(r.q.len().max(amx::TILE * k), 0);
                    r.o.resize(r.o.len().max(amx::TILE * k / 16), 0.0);
                    amx::run_k(dtype, &scratch.krows, p, &mut scratch.amx, out);
                }
                ActsOf::Blocks(_) => {
                    scratch.rows.fill(dtype, data, row_bytes, n, k);
                    let r = &mut scratch.rows;
                    r.q.resize(r.q.len().max(amx::TILE * r.kp), 0);
                    r.o.resize(r.o.len().max(amx::TILE * r.kp / 16), 0.0);
                    amx::run_blocks(dtype, &scratch.rows, p, &mut scratch.amx, out);
                }
            }
            return;
        }
    }
    // Without AMX's activations (or for more than 16 rows), `Kernel::Amx` runs the AVX-512
    // tiles: `run` and `kq::run` take it so.
    match &acts.acts {
        ActsOf::K(a) => {
            scratch.krows.fill(dtype, data, row_bytes, n, k);
            kq::run(kernel, &scratch.krows, a, out);
        }
        ActsOf::Blocks(a) => {
            scratch.rows.fill(dtype, data, row_bytes, n, k);
            run(kernel, &scratch.rows, a, out);
        }
    }
}

/// Activations quantized for the micro-kernel: `t` rows of `kp` ([`padded`]) int8 values
/// stored as `a + 128`, a scale per 32 and `g = scale * Σa` per 16.
pub struct Acts {
    pub t: usize,
    pub kp: usize,
    pub q: Vec<u8>,
    pub d: Vec<f32>,
    pub g: Vec<f32>,
}

impl Acts {
    /// Quantize `x` (`t` rows of `k` values; `k` a multiple of 32) as llama.cpp's
    /// `quantize_row_q8_0` does (f16-rounded scale, round half to even).
    pub fn quantize(x: &[f32], k: usize) -> Acts {
        let t = x.len() / k;
        let kp = padded(k);
        let mut a = Acts {
            t,
            kp,
            q: vec![128; t * kp],
            d: vec![0.0; t * kp / 32],
            g: vec![0.0; t * kp / 16],
        };
        // Token rows in parallel: each writes its own slices of q, d and g.
        let mut rows: Vec<_> =
            a.q.chunks_mut(kp)
                .zip(a.d.chunks_mut(kp / 32))
                .zip(a.g.chunks_mut(kp / 16))
                .zip(x.chunks_exact(k))
                .collect();
        crate::pool::for_each_mut(&mut rows, |_, (((q, d), g), row)| {
            quantize_row(row, q, d, g)
        });
        a
    }
}

/// One token row: `k` values into `q[..k]`, `d[..k / 32]`, `g[..k / 16]`.
fn quantize_row(row: &[f32], q: &mut [u8], d: &mut [f32], g: &mut [f32]) {
    for (((v, q), d), g) in row
        .chunks_exact(32)
        .zip(q.chunks_exact_mut(32))
        .zip(d.iter_mut())
        .zip(g.chunks_exact_mut(2))
    {
        let amax = v.iter().fold(0f32, |m, x| m.max(x.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        *d = f16::from_f32(amax / 127.0).to_f32();
        let mut sums = [0i32; 2];
        for (i, (q, &x)) in q.iter_mut().zip(v).enumerate() {
            let a = crate::qdot::round_even(x * id) as i8;
            *q = (a as u8) ^ 0x80;
            sums[i / 16] += a as i32;
        }
        g[0] = *d * sums[0] as f32;
        g[1] = *d * sums[1] as f32;
    }
}

/// Converted weight rows (a thread's scratch, reused across tasks).
#[derive(Default)]
pub struct Rows {
    pub n: usize,
    pub kp: usize,
    pub q: Vec<i8>,
    pub s: Vec<f32>,
    pub o: Vec<f32>,
}

impl Rows {
    /// Convert `n` stored rows of `k` elements (`data`, `row_bytes` each) into this buffer.
    pub fn fill(&mut self, dtype: DType, data: &[u8], row_bytes: usize, n: usize, k: usize) {
        let kp = padded(k);
        self.n = n;
        self.kp = kp;
        // Every element up to `k` is written below; only the padding must be zeroed.
        let subs = kp / 16;
        for (v, len) in [(&mut self.s, n * subs), (&mut self.o, n * subs)] {
            v.resize(len, 0.0);
        }
        self.q.resize(n * kp, 0);
        for r in 0..n {
            let src = &data[r * row_bytes..(r + 1) * row_bytes];
            // The rows stream from memory (a prompt reads each expert once): ask for the
            // next row while this one converts.
            if let Some(next) = data.get((r + 1) * row_bytes..(r + 2) * row_bytes) {
                prefetch(next);
            }
            convert::convert_row(
                dtype,
                src,
                &mut self.q[r * kp..][..k],
                &mut self.s[r * subs..][..k / 16],
                &mut self.o[r * subs..][..k / 16],
            );
            self.q[r * kp + k..(r + 1) * kp].fill(0);
            self.s[r * subs + k / 16..(r + 1) * subs].fill(0.0);
            self.o[r * subs + k / 16..(r + 1) * subs].fill(0.0);
        }
    }
}

/// Ask for every cache line of `bytes` ahead of use (a hint; nothing on other CPUs). The
/// converters call it on the weight rows they will read next, which stream from memory.
#[inline]
pub(crate) fn prefetch(bytes: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    for at in (0..bytes.len()).step_by(64) {
        // SAFETY: prefetching a valid address has no effect on memory.
        unsafe {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            _mm_prefetch::<_MM_HINT_T0>(bytes.as_ptr().add(at) as *const i8);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = bytes;
}

/// Where a tile's results go: `out[c * ld + r]` for token `c`, weight row `r` (relative to
/// the tile's origin).
#[derive(Clone, Copy)]
pub struct Out {
    pub ptr: *mut f32,
    pub ld: usize,
}

/// Which micro-kernel runs the tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    /// The K-quants only (the 32-element formats' tiles take the scalar twin).
    Avx2,
    Avx512,
    /// AMX tiles for the products, AVX-512 for the rest ([`amx`]).
    Amx,
}

impl Kernel {
    /// The fastest kernel this CPU has.
    pub fn best() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if amx::available() {
                return Kernel::Amx;
            }
            if available() {
                return Kernel::Avx512;
            }
            if crate::qdot::x86::has_avx2() {
                return Kernel::Avx2;
            }
        }
        Kernel::Scalar
    }

    /// The kernels this CPU runs, the scalar twin first.
    pub fn all_available() -> Vec<Kernel> {
        match Kernel::best() {
            Kernel::Scalar => vec![Kernel::Scalar],
            Kernel::Avx2 => vec![Kernel::Scalar, Kernel::Avx2],
            Kernel::Avx512 => vec![Kernel::Scalar, Kernel::Avx2, Kernel::Avx512],
            Kernel::Amx => vec![Kernel::Scalar, Kernel::Avx2, Kernel::Avx512, Kernel::Amx],
        }
    }
}

/// Every weight row of `w` against every token of `a`: `out.ptr[c * out.ld + r]` for row `r`,
/// token `c`.
///
/// # Safety
/// `out` must be valid for writes at every such index, and `kernel` supported by this CPU.
pub unsafe fn run(kernel: Kernel, w: &Rows, a: &Acts, out: Out) {
    debug_assert_eq!(w.kp, a.kp);
    for_each_tile(w.n, a.t, out, |r0, nr, c0, nc, o| match kernel {
        Kernel::Scalar | Kernel::Avx2 => tile_scalar(w, r0, nr, a, c0, nc, o),
        #[cfg(target_arch = "x86_64")]
        Kernel::Avx512 | Kernel::Amx => x86::tile(w, r0, nr, a, c0, nc, o),
        #[cfg(not(target_arch = "x86_64"))]
        Kernel::Avx512 | Kernel::Amx => tile_scalar(w, r0, nr, a, c0, nc, o),
    });
}

/// Cut `n` rows x `t` tokens into tiles of at most [`TILE_R`] x [`TILE_C`]; `f(r0, nr, c0,
/// nc, out)` gets each tile's origin, size and output.
///
/// # Safety
/// `out` valid for writes at `c * out.ld + r` for every row and token.
unsafe fn for_each_tile(
    n: usize,
    t: usize,
    out: Out,
    mut f: impl FnMut(usize, usize, usize, usize, Out),
) {
    for r0 in (0..n).step_by(TILE_R) {
        let nr = (n - r0).min(TILE_R);
        for c0 in (0..t).step_by(TILE_C) {
            let nc = (t - c0).min(TILE_C);
            let o = Out {
                ptr: out.ptr.add(c0 * out.ld + r0),
                ld: out.ld,
            };
            f(r0, nr, c0, nc, o);
        }
    }
}

/// The offsets' share of row `r` · token `c`: `Σ_16 o · g`.
fn offsets(w: &Rows, r: usize, a: &Acts, c: usize) -> f32 {
    let n = w.kp / 16;
    let (o, g) = (&w.o[r * n..][..n], &a.g[c * n..][..n]);
    o.iter().zip(g).map(|(o, g)| o * g).sum()
}

/// The scalar twin of the micro-kernel: the same sums, per 16 elements, in plain Rust.
///
/// # Safety
/// As [`run`].
pub unsafe fn tile_scalar(
    w: &Rows,
    r0: usize,
    nr: usize,
    a: &Acts,
    c0: usize,
    nc: usize,
    out: Out,
) {
    let kp = w.kp;
    for r in r0..r0 + nr {
        let (wq, ws) = (&w.q[r * kp..][..kp], &w.s[r * kp / 16..][..kp / 16]);
        for c in c0..c0 + nc {
            let (aq, ad) = (&a.q[c * kp..][..kp], &a.d[c * kp / 32..][..kp / 32]);
            let mut acc = 0f32;
            for (j, (wq, aq)) in wq.chunks_exact(16).zip(aq.chunks_exact(16)).enumerate() {
                let dot: i32 = wq
                    .iter()
                    .zip(aq)
                    .map(|(&w, &x)| w as i32 * (x as i32 - 128))
                    .sum();
                acc += dot as f32 * (ws[j] * ad[j / 2]);
            }
            *out.ptr.add((c - c0) * out.ld + (r - r0)) = acc + offsets(w, r, a, c);
        }
    }
}
