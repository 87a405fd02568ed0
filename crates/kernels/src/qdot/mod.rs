//! Integer dot products of block-quantized weights with int8-quantized activations — the
//! kernels decode and prefill spend their time in.
//!
//! Activations are quantized once per matmul ([`quantize_q8_0`], [`quantize_q8_1`],
//! [`quantize_q8k`]) into llama.cpp's `vec_dot_type` for the weight format: Q8_0 for
//! Q4_0/Q5_0/Q8_0, Q8_1 for Q4_1/Q5_1, Q8_K for the K-quants. Each weight format then has one
//! dot product per instruction set: a portable scalar twin ([`scalar`]) and AVX2 / AVX-512
//! paths ([`x86`]). A [`DotTable`] holds one function per format; [`table`] picks the best
//! table for this CPU once, at the first call. Within a block the integer sums are exact, so
//! the SIMD paths differ from their twins only in the order the per-block f32 terms are
//! added.
//!
//! Weight rows are ggml's block layout, bytes straight from the file (no alignment assumed).

pub mod scalar;
pub mod x86;

use crate::dtype::DType;
use crate::reuse::{keep, take_kept, Kept};
use half::f16;
use std::sync::OnceLock;
use std::thread::LocalKey;

/// 32 activations as Q8_0: `x ≈ d * q`, `d` an f16 value held as f32.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_0x {
    pub d: f32,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_0x>() == 36);

/// 32 activations as Q8_1: Q8_0 plus `s = f16(d_exact * Σq)`, which multiplies the weights'
/// per-block offset `m` of Q4_1 / Q5_1.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8_1x {
    pub d: f32,
    pub s: f32,
    pub qs: [i8; 32],
}
const _: () = assert!(std::mem::size_of::<BlockQ8_1x>() == 40);

/// 256 activations as Q8_K: f32 scale, int8 quants, and the sums of each group of 16 quants
/// (the K-quants' mins multiply them).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlockQ8Kx {
    pub d: f32,
    pub qs: [i8; 256],
    pub bsums: [i16; 16],
}
const _: () = assert!(std::mem::size_of::<BlockQ8Kx>() == 292);

impl Default for BlockQ8_0x {
    fn default() -> Self {
        BlockQ8_0x {
            d: 0.0,
            qs: [0; 32],
        }
    }
}
impl Default for BlockQ8_1x {
    fn default() -> Self {
        BlockQ8_1x {
            d: 0.0,
            s: 0.0,
            qs: [0; 32],
        }
    }
}
impl Default for BlockQ8Kx {
    fn default() -> Self {
        BlockQ8Kx {
            d: 0.0,
            qs: [0; 256],
            bsums: [0; 16],
        }
    }
}

/// Round to the nearest integer, ties to even (as `f32::round_ties_even`) for |v| < 2^22,
/// without a libm call: adding 1.5 * 2^23 leaves no fraction bits in the sum, so the FPU's
/// default rounding does the work (ggml's `nearest_int` trick).
#[inline(always)]
pub(crate) fn round_even(v: f32) -> f32 {
    const MAGIC: f32 = 12582912.0;
    (v + MAGIC) - MAGIC
}

/// Quantize `x` (a multiple of 32 long) to Q8_0 blocks, as llama.cpp's `quantize_row_q8_0`.
pub fn quantize_q8_0(x: &[f32], out: &mut [BlockQ8_0x]) {
    for (b, o) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        o.d = f16::from_f32(amax / 127.0).to_f32();
        for (q, v) in o.qs.iter_mut().zip(b) {
            *q = round_even(v * id) as i8;
        }
    }
}

/// Quantize `x` (a multiple of 32 long) to Q8_1 blocks, as llama.cpp's `quantize_row_q8_1`.
pub fn quantize_q8_1(x: &[f32], out: &mut [BlockQ8_1x]) {
    for (b, o) in x.chunks_exact(32).zip(out.iter_mut()) {
        let amax = b.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let mut sum = 0i32;
        for (q, v) in o.qs.iter_mut().zip(b) {
            *q = round_even(v * id) as i8;
            sum += *q as i32;
        }
        o.d = f16::from_f32(d).to_f32();
        o.s = f16::from_f32(d * sum as f32).to_f32();
    }
}

/// Quantize `x` (a multiple of 256 long) to Q8_K blocks, as ggml's `quantize_row_q8_K`: the
/// largest magnitude maps to -127.
pub fn quantize_q8k(x: &[f32], out: &mut [BlockQ8Kx]) {
    #[cfg(target_arch = "x86_64")]
    if x86::has_avx512() {
        // SAFETY: the CPU has AVX-512 F/BW.
        return unsafe { quantize_q8k_avx512(x, out) };
    }
    quantize_q8k_scalar(x, out)
}

/// [`quantize_q8k`] on AVX-512, the same bits: the first element of largest magnitude sets
/// the scale, products rounded half to even by the same magic-number addition, sums of 16
/// exact.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_q8k_avx512(x: &[f32], out: &mut [BlockQ8Kx]) {
    use std::arch::x86_64::*;
    let abs_mask = _mm512_set1_epi32(0x7fff_ffff);
    for (b, o) in x.chunks_exact(256).zip(out.iter_mut()) {
        let v: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(b.as_ptr().add(16 * i)));
        let abs =
            |v: __m512| _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(v), abs_mask));
        let mut m = abs(v[0]);
        for vi in &v[1..] {
            m = _mm512_max_ps(m, abs(*vi));
        }
        let amax = _mm512_reduce_max_ps(m);
        if amax == 0.0 {
            *o = BlockQ8Kx::default();
            continue;
        }
        let target = _mm512_set1_ps(amax);
        let mut max = 0f32;
        for (i, vi) in v.iter().enumerate() {
            let hit = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(abs(*vi), target);
            if hit != 0 {
                max = b[16 * i + hit.trailing_zeros() as usize];
                break;
            }
        }
        let iscale = -127.0 / max;
        let (sv, magic, top) = (
            _mm512_set1_ps(iscale),
            _mm512_set1_ps(12582912.0),
            _mm512_set1_ps(127.0),
        );
        for (i, vi) in v.iter().enumerate() {
            let r = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(sv, *vi), magic), magic);
            let q = _mm512_cvtps_epi32(_mm512_min_ps(r, top));
            _mm_storeu_si128(
                o.qs.as_mut_ptr().add(16 * i) as *mut __m128i,
                _mm512_cvtepi32_epi8(q),
            );
            o.bsums[i] = _mm512_reduce_add_epi32(q) as i16;
        }
        o.d = 1.0 / iscale;
    }
}

/// The scalar twin of [`quantize_q8k`].
pub fn quantize_q8k_scalar(x: &[f32], out: &mut [BlockQ8Kx]) {
    for (b, o) in x.chunks_exact(256).zip(out.iter_mut()) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in b {
            if v.abs() > amax {
                amax = v.abs();
                max = v;
            }
        }
        if amax == 0.0 {
            *o = BlockQ8Kx::default();
            continue;
        }
        let iscale = -127.0 / max;
        for (q, v) in o.qs.iter_mut().zip(b) {
            *q = round_even(iscale * v).min(127.0) as i8;
        }
        for (s, g) in o.bsums.iter_mut().zip(o.qs.chunks_exact(16)) {
            *s = g.iter().map(|&q| q as i16).sum();
        }
        o.d = 1.0 / iscale;
    }
}

/// Dot product of one weight row (`w`: whole blocks of its format, as stored) with one row of
/// activations. Unsafe because SIMD entries require their CPU features; [`table`] only hands
/// out entries this CPU has.
pub type DotQ8_0 = unsafe fn(w: &[u8], a: &[BlockQ8_0x]) -> f32;
pub type DotQ8_1 = unsafe fn(w: &[u8], a: &[BlockQ8_1x]) -> f32;
pub type DotQ8K = unsafe fn(w: &[u8], a: &[BlockQ8Kx]) -> f32;

/// Dot products of one weight row with several activation rows at once (prefill): `a` holds
/// `out.len()` rows of `a.len() / out.len()` blocks each, back to back; `out[i] = w · row i`.
/// The weight row is unpacked once per block for all of them. `out.len()` is 1..=[`MAX_N`].
pub type DotQ8_0N = unsafe fn(w: &[u8], a: &[BlockQ8_0x], out: &mut [f32]);
pub type DotQ8_1N = unsafe fn(w: &[u8], a: &[BlockQ8_1x], out: &mut [f32]);
pub type DotQ8KN = unsafe fn(w: &[u8], a: &[BlockQ8Kx], out: &mut [f32]);

/// The most activation rows one multi-row kernel call takes.
pub const MAX_N: usize = 4;

/// The most activation rows one grouped kernel call takes.
pub const MAX_G: usize = 8;

/// Multi-row kernels, where an instruction set has them (else rows go one by one).
#[derive(Clone, Copy, Default)]
pub struct DotTableN {
    pub q4_0: Option<DotQ8_0N>,
    pub q5_0: Option<DotQ8_0N>,
    pub q8_0: Option<DotQ8_0N>,
    pub q4_1: Option<DotQ8_1N>,
    pub q5_1: Option<DotQ8_1N>,
    pub q2k: Option<DotQ8KN>,
    pub q3k: Option<DotQ8KN>,
    pub q4k: Option<DotQ8KN>,
    pub q5k: Option<DotQ8KN>,
    pub q6k: Option<DotQ8KN>,
}

/// One weight row against `out.len()` = 1..=[`MAX_G`] activation rows, each both as blocks
/// (`a`, rows back to back) and as groups of four blocks (`g`, `nb.div_ceil(4)` per row, the
/// last zero-padded): the same results, bit for bit, as the single-row kernel on each row.
pub type DotG0 = unsafe fn(w: &[u8], a: &[BlockQ8_0x], g: &[ActGroup], out: &mut [f32]);
pub type DotG1 = unsafe fn(w: &[u8], a: &[BlockQ8_1x], g: &[ActGroup], out: &mut [f32]);

/// Multi-row kernels on grouped activations ([`GroupedActs`]), where an instruction set has
/// them.
#[derive(Clone, Copy, Default)]
pub struct DotTableG {
    pub q4_0: Option<DotG0>,
    pub q5_0: Option<DotG0>,
    pub q4_1: Option<DotG1>,
    pub q5_1: Option<DotG1>,
    pub q8_0: Option<DotG0>,
}

impl DotTableG {
    /// Whether there is one for weights of type `w`.
    pub fn has(&self, w: DType) -> bool {
        match w {
            DType::Q4_0 => self.q4_0.is_some(),
            DType::Q5_0 => self.q5_0.is_some(),
            DType::Q4_1 => self.q4_1.is_some(),
            DType::Q5_1 => self.q5_1.is_some(),
            DType::Q8_0 => self.q8_0.is_some(),
            _ => false,
        }
    }
}

/// Four blocks of 32 activations laid out for the grouped kernels: the quants in order, the
/// blocks' scales `d`, and their sums `s` (Q8_1's; zero from Q8_0 blocks), in three cache
/// lines. Blocks past the end of a row are zero.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActGroup {
    pub qs: [i8; 128],
    pub d: [f32; 4],
    pub s: [f32; 4],
    pub pad: [f32; 8],
}
const _: () = assert!(std::mem::size_of::<ActGroup>() == 192);

impl Default for ActGroup {
    fn default() -> Self {
        ActGroup {
            qs: [0; 128],
            d: [0.0; 4],
            s: [0.0; 4],
            pad: [0.0; 8],
        }
    }
}

/// Activations of Q8_0 or Q8_1 blocks rearranged into [`ActGroup`]s, row by row.
pub struct GroupedActs {
    groups: Vec<ActGroup>,
    /// Blocks per row.
    nb: usize,
    /// Made from Q8_1 blocks (for Q4_1 / Q5_1 weights).
    q8_1: bool,
}

impl GroupedActs {
    /// Rearrange `acts` (rows of `k` elements) into groups; `None` for Q8_K activations.
    pub fn new(acts: &QuantActs, k: usize) -> Option<GroupedActs> {
        let nb = k / 32;
        let per = nb.div_ceil(4);
        fn fill<B>(
            blocks: &[B],
            nb: usize,
            per: usize,
            parts: impl Fn(&B) -> (&[i8; 32], f32, f32),
        ) -> Vec<ActGroup> {
            if nb == 0 {
                return Vec::new();
            }
            let rows = blocks.len() / nb;
            let mut out = vec![ActGroup::default(); rows * per];
            for (row, g) in blocks
                .chunks_exact(nb)
                .zip(out.chunks_exact_mut(per.max(1)))
            {
                for (j, b) in row.iter().enumerate() {
                    let (qs, d, s) = parts(b);
                    let (grp, l) = (&mut g[j / 4], j % 4);
                    grp.qs[32 * l..32 * l + 32].copy_from_slice(qs);
                    grp.d[l] = d;
                    grp.s[l] = s;
                }
            }
            out
        }
        let (groups, q8_1) = match acts {
            QuantActs::Q8_0(b) => (fill(b, nb, per, |b| (&b.qs, b.d, 0.0)), false),
            QuantActs::Q8_1(b) => (fill(b, nb, per, |b| (&b.qs, b.d, b.s)), true),
            QuantActs::Q8K(_) => return None,
        };
        Some(GroupedActs { groups, nb, q8_1 })
    }
}

/// One dot product per weight format, all for the same instruction set.
#[derive(Clone, Copy)]
pub struct DotTable {
    /// Kernels on grouped activations (decode and batched decode, where present).
    pub g: DotTableG,
    /// Multi-row versions (prefill).
    pub n: DotTableN,
    pub isa: Isa,
    pub q4_0: DotQ8_0,
    pub q5_0: DotQ8_0,
    pub q8_0: DotQ8_0,
    pub q4_1: DotQ8_1,
    pub q5_1: DotQ8_1,
    pub q2k: DotQ8K,
    pub q3k: DotQ8K,
    pub q4k: DotQ8K,
    pub q5k: DotQ8K,
    pub q6k: DotQ8K,
}

/// Instruction sets with kernels here, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL with VNNI.
    Avx512,
}

impl Isa {
    /// The instruction sets this CPU supports, weakest first (always starts with `Scalar`).
    pub fn available() -> Vec<Isa> {
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if x86::has_avx2() {
                v.push(Isa::Avx2);
            }
            if x86::has_avx512() {
                v.push(Isa::Avx512);
            }
        }
        v
    }
}

impl DotTable {
    /// The table for `isa`; `None` when this CPU lacks it.
    pub fn for_isa(isa: Isa) -> Option<DotTable> {
        if !Isa::available().contains(&isa) {
            return None;
        }
        let mut t = scalar::TABLE;
        #[cfg(target_arch = "x86_64")]
        x86::install(&mut t, isa);
        t.isa = isa;
        Some(t)
    }
}

/// The best table for this CPU, chosen once.
pub fn table() -> &'static DotTable {
    static T: OnceLock<DotTable> = OnceLock::new();
    T.get_or_init(|| {
        let best = *Isa::available().last().unwrap_or(&Isa::Scalar);
        DotTable::for_isa(best).unwrap_or(scalar::TABLE)
    })
}

/// The activation format a weight type's integer kernel takes; `None` for float weights.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActKind(u8);

impl ActKind {
    pub fn of(w: DType) -> Option<ActKind> {
        match w {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => Some(ActKind(0)),
            DType::Q4_1 | DType::Q5_1 => Some(ActKind(1)),
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K => Some(ActKind(2)),
            DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 | DType::Q8K => None,
        }
    }
}

/// Activations quantized for one weight format: `rows` rows, each `blocks` blocks.
pub enum QuantActs {
    Q8_0(Vec<BlockQ8_0x>),
    Q8_1(Vec<BlockQ8_1x>),
    Q8K(Vec<BlockQ8Kx>),
}

impl QuantActs {
    /// Quantize `x` (`rows` rows of `k`) for weights of type `w`; `None` for float weights.
    pub fn for_weight(w: DType, x: &[f32], k: usize) -> Option<QuantActs> {
        let rows = x.len() / k.max(1);
        fn run<B: Default + Clone + Send>(
            x: &[f32],
            k: usize,
            rows: usize,
            per: usize,
            f: fn(&[f32], &mut [B]),
            kept: &'static LocalKey<Kept<B>>,
        ) -> Vec<B> {
            let nb = k / per;
            let mut out = take_spare(kept, rows * nb);
            out.resize(rows * nb, B::default());
            if rows >= 8 {
                let mut pairs: Vec<_> = out.chunks_mut(nb).zip(x.chunks(k)).collect();
                crate::pool::for_each_mut(&mut pairs, |_, (o, x)| f(x, o));
            } else {
                out.chunks_mut(nb)
                    .zip(x.chunks(k))
                    .for_each(|(o, x)| f(x, o));
            }
            out
        }
        Some(match w {
            DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => {
                QuantActs::Q8_0(run(x, k, rows, 32, quantize_q8_0, &KEPT_Q8_0))
            }
            DType::Q4_1 | DType::Q5_1 => {
                QuantActs::Q8_1(run(x, k, rows, 32, quantize_q8_1, &KEPT_Q8_1))
            }
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K => {
                QuantActs::Q8K(run(x, k, rows, 256, quantize_q8k, &KEPT_Q8K))
            }
            DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 | DType::Q8K => return None,
        })
    }

    /// Keep these activations' buffer for the next [`QuantActs::for_weight`] on this thread.
    pub fn recycle(self) {
        match self {
            QuantActs::Q8_0(v) => put_spare(&KEPT_Q8_0, v),
            QuantActs::Q8_1(v) => put_spare(&KEPT_Q8_1, v),
            QuantActs::Q8K(v) => put_spare(&KEPT_Q8K, v),
        }
    }
}

/// Buffers kept per block type and thread: a decode step's matmuls quantize up to one input
/// per attention head at once (DeepSeek's absorbed attention: 16 to 128 heads).
const SPARES: usize = 128;

/// Bytes kept per block type and thread at most: decode's buffers are a few KiB each; a
/// prompt's larger activations are freed rather than kept (see [`crate::reuse::keep`]).
const SPARE_BYTES: usize = 4 << 20;

thread_local! {
    // Activation buffers kept per thread between matmuls (a decode step quantizes a few
    // dozen inputs; see `crate::reuse`).
    static KEPT_Q8_0: Kept<BlockQ8_0x> = const { std::cell::RefCell::new(Vec::new()) };
    static KEPT_Q8_1: Kept<BlockQ8_1x> = const { std::cell::RefCell::new(Vec::new()) };
    static KEPT_Q8K: Kept<BlockQ8Kx> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer for `len` blocks: the smallest kept one that holds them, or new.
fn take_spare<B>(key: &'static LocalKey<Kept<B>>, len: usize) -> Vec<B> {
    let mut v = take_kept(key, len).unwrap_or_else(|| Vec::with_capacity(len));
    v.clear();
    v
}

/// Keep `v`'s allocation for a later [`take_spare`].
fn put_spare<B>(key: &'static LocalKey<Kept<B>>, v: Vec<B>) {
    keep(key, v, SPARES, SPARE_BYTES / size_of::<B>())
}

/// A dot product of a weight row with activation row `i`, for one weight format.
#[derive(Clone, Copy)]
pub struct RowDot<'a> {
    kind: RowDotKind<'a>,
    nb: usize,
}

#[derive(Clone, Copy)]
enum RowDotKind<'a> {
    /// Single-row kernel, multi-row kernel, activation blocks, and where present a multi-row
    /// kernel on grouped activations with the groups.
    Q8_0(
        DotQ8_0,
        Option<DotQ8_0N>,
        &'a [BlockQ8_0x],
        Option<(DotG0, &'a [ActGroup])>,
    ),
    Q8_1(
        DotQ8_1,
        Option<DotQ8_1N>,
        &'a [BlockQ8_1x],
        Option<(DotG1, &'a [ActGroup])>,
    ),
    Q8K(DotQ8K, Option<DotQ8KN>, &'a [BlockQ8Kx]),
}

impl<'a> RowDot<'a> {
    /// Pair weight type `w` with its quantized activations (`k` columns); `None` when the
    /// activations were quantized for another format.
    pub fn new(t: &DotTable, w: DType, acts: &'a QuantActs, k: usize) -> Option<RowDot<'a>> {
        let kind = match (w, acts) {
            (DType::Q4_0, QuantActs::Q8_0(a)) => RowDotKind::Q8_0(t.q4_0, t.n.q4_0, a, None),
            (DType::Q5_0, QuantActs::Q8_0(a)) => RowDotKind::Q8_0(t.q5_0, t.n.q5_0, a, None),
            (DType::Q8_0, QuantActs::Q8_0(a)) => RowDotKind::Q8_0(t.q8_0, t.n.q8_0, a, None),
            (DType::Q4_1, QuantActs::Q8_1(a)) => RowDotKind::Q8_1(t.q4_1, t.n.q4_1, a, None),
            (DType::Q5_1, QuantActs::Q8_1(a)) => RowDotKind::Q8_1(t.q5_1, t.n.q5_1, a, None),
            (DType::Q2K, QuantActs::Q8K(a)) => RowDotKind::Q8K(t.q2k, t.n.q2k, a),
            (DType::Q3K, QuantActs::Q8K(a)) => RowDotKind::Q8K(t.q3k, t.n.q3k, a),
            (DType::Q4K, QuantActs::Q8K(a)) => RowDotKind::Q8K(t.q4k, t.n.q4k, a),
            (DType::Q5K, QuantActs::Q8K(a)) => RowDotKind::Q8K(t.q5k, t.n.q5k, a),
            (DType::Q6K, QuantActs::Q8K(a)) => RowDotKind::Q8K(t.q6k, t.n.q6k, a),
            _ => return None,
        };
        let nb = k / w.block_size();
        Some(RowDot { kind, nb })
    }

    /// Let calls of several rows take `t`'s grouped kernel for `w` on `g` (the same
    /// activations, grouped), where `t` has one and `g` was made from these activations' kind;
    /// single rows keep the single-row kernel, which gives the same bits.
    pub fn with_groups(mut self, t: &DotTable, w: DType, g: &'a GroupedActs) -> RowDot<'a> {
        if g.nb != self.nb {
            return self;
        }
        match (&mut self.kind, w, g.q8_1) {
            (RowDotKind::Q8_0(_, _, _, slot), DType::Q4_0, false) => {
                *slot = t.g.q4_0.map(|f| (f, &g.groups[..]))
            }
            (RowDotKind::Q8_0(_, _, _, slot), DType::Q5_0, false) => {
                *slot = t.g.q5_0.map(|f| (f, &g.groups[..]))
            }
            (RowDotKind::Q8_0(_, _, _, slot), DType::Q8_0, false) => {
                *slot = t.g.q8_0.map(|f| (f, &g.groups[..]))
            }
            (RowDotKind::Q8_1(_, _, _, slot), DType::Q4_1, true) => {
                *slot = t.g.q4_1.map(|f| (f, &g.groups[..]))
            }
            (RowDotKind::Q8_1(_, _, _, slot), DType::Q5_1, true) => {
                *slot = t.g.q5_1.map(|f| (f, &g.groups[..]))
            }
            _ => {}
        }
        self
    }

    /// `w_row · acts[i]`. `w_row` must be one whole row of the weight type given to [`new`].
    #[inline]
    pub fn dot(&self, w_row: &[u8], i: usize) -> f32 {
        let nb = self.nb;
        // SAFETY: the function pointers come from a `DotTable` built for this CPU, and every
        // kernel reads exactly `nb` blocks of `w_row` and of the activation row, which the
        // slicing below bounds-checks.
        unsafe {
            match self.kind {
                RowDotKind::Q8_0(f, _, a, _) => f(w_row, &a[i * nb..(i + 1) * nb]),
                RowDotKind::Q8_1(f, _, a, _) => f(w_row, &a[i * nb..(i + 1) * nb]),
                RowDotKind::Q8K(f, _, a) => f(w_row, &a[i * nb..(i + 1) * nb]),
            }
        }
    }

    /// `out[j]` = weight row `j` of `w` (`row_bytes` each) · activation row 0: one token
    /// against consecutive weight rows, as decode runs a task, with the kernel chosen once
    /// instead of per row. Each row gets the bits [`Self::dot_rows`] gives it for one token.
    pub fn dot_weight_rows(&self, w: &[u8], row_bytes: usize, out: &mut [f32]) {
        let nb = self.nb;
        assert_eq!(w.len(), out.len() * row_bytes, "one output per weight row");
        let rows = w.chunks_exact(row_bytes).zip(out.iter_mut());
        // SAFETY: as in `dot_rows`: kernels for this CPU, reading one row of `nb` blocks of
        // each (the weight rows are whole rows, the activations bounds-checked here).
        unsafe {
            match self.kind {
                RowDotKind::Q8_0(_, Some(f), a, _) => {
                    let a = &a[..nb];
                    rows.for_each(|(r, o)| f(r, a, std::slice::from_mut(o)))
                }
                RowDotKind::Q8_1(_, Some(f), a, _) => {
                    let a = &a[..nb];
                    rows.for_each(|(r, o)| f(r, a, std::slice::from_mut(o)))
                }
                RowDotKind::Q8K(_, Some(f), a) => {
                    let a = &a[..nb];
                    rows.for_each(|(r, o)| f(r, a, std::slice::from_mut(o)))
                }
                _ => rows.for_each(|(r, o)| *o = self.dot(r, 0)),
            }
        }
    }

    /// `out[j] = w_row · acts[first + j]` for every `j`, [`MAX_N`] rows per kernel call where
    /// the instruction set has a multi-row kernel for this format.
    pub fn dot_rows(&self, w_row: &[u8], first: usize, out: &mut [f32]) {
        let nb = self.nb;
        let step = match self.kind {
            RowDotKind::Q8_0(_, _, _, Some(_)) | RowDotKind::Q8_1(_, _, _, Some(_)) => MAX_G,
            _ => MAX_N,
        };
        for (c, o) in out.chunks_mut(step).enumerate() {
            let i0 = first + c * step;
            let rows = i0 * nb..(i0 + o.len()) * nb;
            // SAFETY: as in `dot`; the multi-row kernels read `o.len()` rows of `nb` blocks,
            // which the slicing bounds-checks.
            unsafe {
                let per = nb.div_ceil(4);
                let groups = i0 * per..(i0 + o.len()) * per;
                match self.kind {
                    RowDotKind::Q8_0(_, _, a, Some((f, g))) if o.len() > 1 => {
                        f(w_row, &a[rows], &g[groups], o)
                    }
                    RowDotKind::Q8_1(_, _, a, Some((f, g))) if o.len() > 1 => {
                        f(w_row, &a[rows], &g[groups], o)
                    }
                    RowDotKind::Q8_0(_, Some(f), a, _) => f(w_row, &a[rows], o),
                    RowDotKind::Q8_1(_, Some(f), a, _) => f(w_row, &a[rows], o),
                    RowDotKind::Q8K(_, Some(f), a) => f(w_row, &a[rows], o),
                    _ => {
                        for (j, v) in o.iter_mut().enumerate() {
                            *v = self.dot(w_row, i0 + j);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_even;

    /// The SIMD Q8_K quantizer gives the scalar one's bits, ties for the largest magnitude
    /// and all-zero blocks included.
    #[test]
    fn q8k_quantizers_agree() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
        };
        let mut x: Vec<f32> = (0..256 * 40).map(|_| next()).collect();
        x[256..512].fill(0.0); // block 1: zeros
        x[600] = 9.0; // block 2: +9 first, then -9
        x[700] = -9.0;
        x[1100] = -9.5; // block 4: -9.5 first, then +9.5
        x[1200] = 9.5;
        for (i, v) in x[2048..2304].iter_mut().enumerate() {
            *v = (i as f32 - 128.0) * 0.5 + 0.25; // exact halves after scaling
        }
        let mut a = vec![super::BlockQ8Kx::default(); 40];
        let mut b = a.clone();
        super::quantize_q8k(&x, &mut a);
        super::quantize_q8k_scalar(&x, &mut b);
        assert_eq!(a, b);
        assert!(a[3].qs.iter().any(|&q| q != 0) && a[1].d == 0.0);
    }

    #[test]
    fn round_even_matches_round_ties_even() {
        for i in -300_000..300_000 {
            let v = i as f32 / 1024.0;
            assert_eq!(round_even(v), v.round_ties_even(), "{v}");
        }
        for v in [0.5f32, 1.5, 2.5, -0.5, -1.5, 126.5, -127.5, 127.49998] {
            assert_eq!(round_even(v), v.round_ties_even(), "{v}");
        }
    }
}
