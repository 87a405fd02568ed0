//! The tiled prefill kernel for the K-quants (Q2_K .. Q6_K): their sub-block scales are small
//! integers under one f32 super-block scale, so a whole 256-element super-block is summed in
//! int32 before anything is rounded.
//!
//! Rows are rewritten as `w = d * sc * q + o`: unsigned quants `q` (0..64, one byte each),
//! an int16 scale `sc` per 16 elements, the super-block scale `d`, and an f32 offset `o` per
//! 16 elements (the mins of Q2_K / Q4_K / Q5_K, the zero points of Q3_K / Q6_K). Activations
//! are llama.cpp's Q8_K (an f32 scale `da` per 256 and int8 values), with `g = da * Σa` per 16.
//! Per 64 elements and (row, token) pair: `vpmaddubsw` (unsigned quants by signed activations,
//! pairs summed in int16: at most 2 * 63 * 127, no saturation) and `vpdpwssd` against the
//! sub-block scales, into int32 (at most 2^24 per super-block, so exact in f32); per
//! super-block one conversion and one multiply-add by `d * da`. The offsets add `Σ_16 o * g`.

use super::Out;
use crate::dtype::DType;
use crate::qdot::{quantize_q8k, BlockQ8Kx};
use crate::quants::kquants::{q3k_scales, scale_min_k4};
use crate::quants::read_f16;

/// Whether `dtype` rows go through this kernel.
pub fn supported(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K
    )
}

/// Activations as Q8_K: `t` rows of `k` int8 values, `da` per 256, `g = da * Σa` per 16.
pub struct KActs {
    pub t: usize,
    pub k: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub g: Vec<f32>,
}

impl KActs {
    /// Quantize `x` (`t` rows of `k` values, `k` a multiple of 256) as llama.cpp's
    /// `quantize_row_q8_K`; rows in parallel.
    pub fn quantize(x: &[f32], k: usize) -> KActs {
        let t = x.len() / k;
        let mut a = KActs {
            t,
            k,
            q: vec![0; t * k],
            d: vec![0.0; t * k / 256],
            g: vec![0.0; t * k / 16],
        };
        let mut rows: Vec<_> =
            a.q.chunks_mut(k)
                .zip(a.d.chunks_mut(k / 256))
                .zip(a.g.chunks_mut(k / 16))
                .zip(x.chunks_exact(k))
                .collect();
        crate::pool::for_each_mut(&mut rows, |_, (((q, d), g), row)| {
            let mut blocks = vec![BlockQ8Kx::default(); k / 256];
            quantize_q8k(row, &mut blocks);
            for (i, b) in blocks.iter().enumerate() {
                q[i * 256..][..256].copy_from_slice(&b.qs);
                d[i] = b.d;
                for (g, &s) in g[i * 16..][..16].iter_mut().zip(&b.bsums) {
                    *g = b.d * s as f32;
                }
            }
        });
        a
    }
}

/// Bytes ahead of the block being converted that [`KRows::fill`] prefetches.
const PREFETCH: usize = 1024;

/// Converted K-quant rows (a thread's scratch, reused across tasks).
#[derive(Default)]
pub struct KRows {
    pub n: usize,
    pub k: usize,
    pub q: Vec<u8>,
    pub sc: Vec<i16>,
    pub d: Vec<f32>,
    pub o: Vec<f32>,
}

impl KRows {
    /// Convert `n` stored rows of `k` elements (`data`, `row_bytes` each).
    pub fn fill(&mut self, dtype: DType, data: &[u8], row_bytes: usize, n: usize, k: usize) {
        self.n = n;
        self.k = k;
        self.q.resize(n * k, 0);
        self.sc.resize(n * k / 16, 0);
        self.d.resize(n * k / 256, 0.0);
        self.o.resize(n * k / 16, 0.0);
        let bytes = dtype.block_bytes();
        let data = &data[..n * row_bytes];
        for (i, b) in data.chunks_exact(bytes).enumerate() {
            // The rows stream from memory (a prompt reads each expert once): ask for the
            // block a little ahead.
            if let Some(ahead) = data.get(i * bytes + PREFETCH..) {
                super::prefetch(&ahead[..bytes.min(ahead.len())]);
            }
            let q = &mut self.q[i * 256..][..256];
            let sc = &mut self.sc[i * 16..][..16];
            let o = &mut self.o[i * 16..][..16];
            self.d[i] = match dtype {
                DType::Q2K => q2k(b, q, sc, o),
                DType::Q3K => q3k(b, q, sc, o),
                DType::Q4K => k4(b, &b[16..144], None, q, sc, o),
                DType::Q5K => k4(b, &b[48..176], Some(&b[16..48]), q, sc, o),
                DType::Q6K => q6k(b, q, sc, o),
                _ => 0.0,
            };
        }
    }
}

/// Each converter fills one super-block's `q`, `sc`, `o` and returns `d`.
fn q2k(b: &[u8], q: &mut [u8], sc: &mut [i16], o: &mut [f32]) -> f32 {
    let (d, dmin) = (read_f16(&b[80..]), read_f16(&b[82..]));
    let (scales, qs) = (&b[..16], &b[16..80]);
    for (s, ((y, &packed), (sc, o))) in q
        .chunks_exact_mut(16)
        .zip(scales)
        .zip(sc.iter_mut().zip(o.iter_mut()))
        .enumerate()
    {
        let shift = 2 * ((s / 2) % 4);
        for (v, &x) in y.iter_mut().zip(&qs[32 * (s / 8) + 16 * (s % 2)..][..16]) {
            *v = (x >> shift) & 3;
        }
        *sc = (packed & 0x0f) as i16;
        *o = -(dmin * (packed >> 4) as f32);
    }
    d
}

fn q3k(b: &[u8], q: &mut [u8], sc: &mut [i16], o: &mut [f32]) -> f32 {
    let (hmask, qs) = (&b[..32], &b[32..96]);
    let scales = q3k_scales(&b[96..108]);
    let d = read_f16(&b[108..]);
    for (s, ((y, &scale), (sc, o))) in q
        .chunks_exact_mut(16)
        .zip(&scales)
        .zip(sc.iter_mut().zip(o.iter_mut()))
        .enumerate()
    {
        let j = (s / 2) % 4;
        let hbit = 4 * (s / 8) + j;
        let src = &qs[32 * (s / 8) + 16 * (s % 2)..][..16];
        let hm = &hmask[16 * (s % 2)..][..16];
        // Value `low - 4 * !hbit` = `(low + 4 * hbit) - 4`.
        for ((v, &x), &h) in y.iter_mut().zip(src).zip(hm) {
            *v = ((x >> (2 * j)) & 3) | (((h >> hbit) & 1) << 2);
        }
        *sc = scale as i16;
        *o = -4.0 * (d * scale as f32);
    }
    d
}

/// Q4_K / Q5_K: chunk `c` of 32 bytes holds sub-blocks `2c` (low nibbles) and `2c + 1`.
fn k4(b: &[u8], qs: &[u8], qh: Option<&[u8]>, q: &mut [u8], sc: &mut [i16], o: &mut [f32]) -> f32 {
    let (d, dmin) = (read_f16(b), read_f16(&b[2..]));
    let scales = &b[4..16];
    nibbles(&qs[..128], &mut q[..256]);
    for (c, y) in q.chunks_exact_mut(64).enumerate() {
        let (lo, hi) = y.split_at_mut(32);
        if let Some(qh) = qh {
            for (i, &bits) in qh.iter().enumerate() {
                lo[i] |= ((bits >> (2 * c)) & 1) << 4;
                hi[i] |= ((bits >> (2 * c + 1)) & 1) << 4;
            }
        }
        for half in 0..2 {
            let (s, m) = scale_min_k4(2 * c + half, scales);
            sc[4 * c + 2 * half..][..2].fill(s as i16);
            o[4 * c + 2 * half..][..2].fill(-(dmin * m as f32));
        }
    }
    d
}

/// Q4_K's 128 bytes of nibbles into 256: per 32 bytes, the low nibbles then the high (32 bytes
/// at a time with AVX2, which measured faster in a V2-Lite prompt than the loop LLVM makes).
fn nibbles(qs: &[u8], q: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if crate::qdot::x86::has_avx2() {
        // SAFETY: AVX2 present; the slices are 128 and 256 bytes.
        return unsafe { nibbles_avx2(qs, q) };
    }
    for (y, x) in q.chunks_exact_mut(64).zip(qs.chunks_exact(32)) {
        let (lo, hi) = y.split_at_mut(32);
        for ((&v, l), h) in x.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
            *l = v & 0x0f;
            *h = v >> 4;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn nibbles_avx2(qs: &[u8], q: &mut [u8]) {
    use std::arch::x86_64::*;
    let m = _mm256_set1_epi8(0x0f);
    for c in 0..4 {
        let x = _mm256_loadu_si256(qs.as_ptr().add(32 * c) as *const __m256i);
        let dst = q.as_mut_ptr().add(64 * c);
        _mm256_storeu_si256(dst as *mut __m256i, _mm256_and_si256(x, m));
        let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(x), m);
        _mm256_storeu_si256(dst.add(32) as *mut __m256i, hi);
    }
}

fn q6k(b: &[u8], q: &mut [u8], sc: &mut [i16], o: &mut [f32]) -> f32 {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = read_f16(&b[208..]);
    for (h, y) in q.chunks_exact_mut(128).enumerate() {
        let (ql, qh) = (&ql[64 * h..][..64], &qh[32 * h..][..32]);
        for (j, yj) in y.chunks_exact_mut(32).enumerate() {
            let lows = &ql[32 * (j % 2)..][..32];
            let nib = 4 * (j / 2);
            for ((v, &lb), &hb) in yj.iter_mut().zip(lows).zip(qh) {
                *v = ((lb >> nib) & 0x0f) | (((hb >> (2 * j)) & 3) << 4);
            }
        }
    }
    // Value `q - 32`: the zero point moves into the offset.
    for ((sc, o), &s) in sc.iter_mut().zip(o.iter_mut()).zip(scales) {
        *sc = s as i8 as i16;
        *o = -32.0 * (d * (s as i8) as f32);
    }
    d
}

/// Every row of `w` against every token of `a` (see [`super::run`]).
///
/// # Safety
/// As [`super::run`].
pub unsafe fn run(kernel: super::Kernel, w: &KRows, a: &KActs, out: Out) {
    super::for_each_tile(w.n, a.t, out, |r0, nr, c0, nc, o| match kernel {
        super::Kernel::Scalar => tile_scalar(w, r0, nr, a, c0, nc, o),
        #[cfg(target_arch = "x86_64")]
        super::Kernel::Avx512 | super::Kernel::Amx => super::x86::tile_k(w, r0, nr, a, c0, nc, o),
        #[cfg(target_arch = "x86_64")]
        super::Kernel::Avx2 => super::x86::tile_k_avx2(w, r0, nr, a, c0, nc, o),
        #[cfg(not(target_arch = "x86_64"))]
        super::Kernel::Avx512 | super::Kernel::Avx2 | super::Kernel::Amx => {
            tile_scalar(w, r0, nr, a, c0, nc, o)
        }
    });
}

/// The scalar twin: per super-block the exact integer sum, then `d * da`, plus the offsets.
///
/// # Safety
/// As [`super::run`].
pub unsafe fn tile_scalar(
    w: &KRows,
    r0: usize,
    nr: usize,
    a: &KActs,
    c0: usize,
    nc: usize,
    out: Out,
) {
    let k = w.k;
    for r in r0..r0 + nr {
        for c in c0..c0 + nc {
            let mut acc = 0f32;
            for sb in 0..k / 256 {
                let mut isum = 0i32;
                for j in 0..16 {
                    let at = sb * 256 + j * 16;
                    let wq = &w.q[r * k + at..][..16];
                    let aq = &a.q[c * k + at..][..16];
                    let dot: i32 = wq.iter().zip(aq).map(|(&q, &x)| q as i32 * x as i32).sum();
                    isum += dot * w.sc[(r * k + at) / 16] as i32;
                }
                acc += isum as f32 * (w.d[r * k / 256 + sb] * a.d[c * k / 256 + sb]);
            }
            let n = k / 16;
            let offs: f32 = w.o[r * n..][..n]
                .iter()
                .zip(&a.g[c * n..][..n])
                .map(|(o, g)| o * g)
                .sum();
            *out.ptr.add((c - c0) * out.ld + (r - r0)) = acc + offs;
        }
    }
}
