//! The prefill micro-kernel on Intel AMX (tile registers and `tdpb*d`, Sapphire Rapids and
//! later): one task's 16 converted weight rows against the tokens 16 at a time.
//!
//! The rows come from the same conversions as the AVX-512 tiles ([`super::Rows`] for the
//! 32-element formats, [`super::kq::KRows`] for the K-quants): one byte per element, row after
//! row, which is exactly the layout of an AMX `A` tile (16 rows, a chunk of `CH` bytes each,
//! loaded with the row stride). The activations are rearranged once per matmul into
//! [`Panel`]s, the `B` layout (per 4 elements, the 16 tokens' 4 bytes side by side), with
//! their scales token-major per block. Per chunk of `CH` elements (one sub-block scale of the
//! weights: 32 for the 32-element formats, Q4_K and Q5_K, 16 for Q2_K, Q3_K and Q6_K) one
//! `tdpbssd` (signed weights, signed activations) or `tdpbusd` (the K-quants' unsigned quants)
//! gives the exact int32 sums of 16 rows x 16 tokens; AVX-512 converts each row of them to
//! f32 and adds it times `s_row * da_token` into the row's 16 token lanes (with Q8_K
//! activations, times `s_row` per chunk and `da_token` per 256). The offsets (mins
//! and zero points) add `o_row * g_token` per chunk, as in the other kernels. Q8_0 rows need
//! no conversion at all: each block's 32 quants are a chunk of the `A` tile where they lie
//! ([`run_q8_0`]). Q4_K and Q5_K rows are converted differently ([`Planes`]): their integer
//! sub-block scales multiplied into the quants, split into two byte planes, so that a whole
//! 256-element super-block sums in the tiles (64 elements per `tdpbusd`) and AVX-512 converts
//! once per super-block; token tiles go two at a time there ([`run_planes`]).
//!
//! What bounds it (a throwaway microbenchmark on the AMX Xeon VM of 2026-12-07): a
//! `tileloadd` costs ~2.75 cycles per tile row, ~44 for 16 rows of 64 bytes and the same for
//! 16 rows of 32, whatever the stride and even from L1, while a `tdpbusd` issues every ~14.6
//! cycles; so the loads, not the products, set the pace, and each loaded tile should serve as
//! many products as the eight tile registers allow (hence full 64-byte rows for the K-quant
//! planes and token tiles in pairs there). Pairing the 32-element formats' token tiles as well
//! (one weight tile load for two products) measured +12-25% on one thread at 48 tokens
//! (Q4_0, Q8_0) but nothing end to end, and was left out.
//!
//! A token's results depend on its own activations only (its lane of every sum, in the same
//! order whatever else shares the tile), so a token gets the same bits alone or batched.
//!
//! Linux hands AMX's tile state to a process only when asked (`arch_prctl`), which
//! [`available`] does once; `MIXTURE_NO_AMX=1` keeps the AVX-512 tiles (for comparisons).

use super::kq::{KActs, KRows};
use super::{Acts, Out, Rows};
use crate::dtype::DType;
use crate::quants::kquants::scale_min_k4;
use crate::quants::read_f16;
use std::arch::asm;
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// Tokens per tile (the `B` tile's columns) and weight rows per task (its `A` rows).
pub const TILE: usize = 16;

/// Whether this CPU and OS run the AMX kernel: AMX-TILE and AMX-INT8 in CPUID, AVX-512 for
/// the conversions, Linux's permission granted, and `MIXTURE_NO_AMX` unset.
pub fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if std::env::var_os("MIXTURE_NO_AMX").is_some_and(|v| !v.is_empty() && v != "0") {
            return false;
        }
        if !crate::qdot::x86::has_avx512() {
            return false;
        }
        // CPUID leaf 7 exists on every x86-64 CPU that has AVX-512.
        let leaf7 = __cpuid_count(7, 0);
        let tile = leaf7.edx & (1 << 24) != 0;
        let int8 = leaf7.edx & (1 << 25) != 0;
        tile && int8 && request_tile_state()
    })
}

/// Ask Linux for the AMX tile data state (`ARCH_REQ_XCOMP_PERM`, `XFEATURE_XTILEDATA`); the
/// permission holds for every thread of the process.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: arch_prctl with this request only changes the process's permitted xsave features.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// Activations rearranged for the `B` tiles: `tiles` groups of 16 tokens (the last one padded
/// with zero tokens), each `[kp / 4][16][4]` signed bytes, with the block scales `d`
/// (`[nd][16]` per tile: per 32 elements for the 32-element formats, per 256 for the
/// K-quants) and the sums `g = d * Σa` per chunk of the weights' format (`[kp / chunk][16]`,
/// see [`chunk_of`]).
pub struct Panel {
    pub t: usize,
    pub tiles: usize,
    pub kp: usize,
    /// Elements per entry of `d`: 32 or 256.
    pub d_block: usize,
    /// Elements per entry of `g`: the chunk, 16 or 32.
    pub chunk: usize,
    pub q: Vec<i8>,
    pub d: Vec<f32>,
    pub g: Vec<f32>,
}

impl Panel {
    /// From the 32-element formats' activations (stored as `a + 128`).
    pub fn from_acts(a: &Acts) -> Panel {
        Panel::build(a.t, a.kp, 32, 32, |c| {
            (
                &a.q[c * a.kp..][..a.kp],
                0x80u8,
                &a.d[c * a.kp / 32..][..a.kp / 32],
                &a.g[c * a.kp / 16..][..a.kp / 16],
            )
        })
    }

    /// From Q8_K activations, for `dtype` weights.
    pub fn from_kacts(dtype: DType, a: &KActs) -> Panel {
        Panel::build(a.t, a.k, 256, chunk_of(dtype), |c| {
            // SAFETY: i8 and u8 have the same size and alignment.
            let q =
                unsafe { std::slice::from_raw_parts(a.q.as_ptr().add(c * a.k) as *const u8, a.k) };
            (
                q,
                0u8,
                &a.d[c * a.k / 256..][..a.k / 256],
                &a.g[c * a.k / 16..][..a.k / 16],
            )
        })
    }

    /// `row(c)` gives token `c`'s bytes (XORed with the given mask to make them signed), its
    /// `d` and its `g` per 16 (summed per `chunk` here).
    fn build<'a>(
        t: usize,
        kp: usize,
        d_block: usize,
        chunk: usize,
        row: impl Fn(usize) -> (&'a [u8], u8, &'a [f32], &'a [f32]) + Sync,
    ) -> Panel {
        let tiles = t.div_ceil(TILE);
        let (nd, ng) = (kp / d_block, kp / chunk);
        let mut p = Panel {
            t,
            tiles,
            kp,
            d_block,
            chunk,
            q: vec![0; tiles * kp * TILE],
            d: vec![0.0; tiles * nd * TILE],
            g: vec![0.0; tiles * ng * TILE],
        };
        let mut parts: Vec<_> =
            p.q.chunks_mut(kp * TILE)
                .zip(p.d.chunks_mut(nd * TILE))
                .zip(p.g.chunks_mut(ng * TILE))
                .enumerate()
                .collect();
        crate::pool::for_each_mut(&mut parts, |_, (tile, ((q, d), g))| {
            for m in 0..TILE.min(t - *tile * TILE) {
                let (src, mask, ds, gs) = row(*tile * TILE + m);
                for (k4, w) in src.chunks_exact(4).enumerate() {
                    let at = (k4 * TILE + m) * 4;
                    for (dst, &b) in q[at..at + 4].iter_mut().zip(w) {
                        *dst = (b ^ mask) as i8;
                    }
                }
                for (j, &v) in ds.iter().enumerate() {
                    d[j * TILE + m] = v;
                }
                for (j, v) in gs.chunks_exact(chunk / 16).enumerate() {
                    g[j * TILE + m] = v.iter().sum();
                }
            }
        });
        p
    }
}

/// A task's weight rows, as the kernel reads them.
pub struct Weights<'a> {
    /// 16 rows of `kp` elements, one byte each, `stride` bytes apart, each chunk `step` bytes
    /// after the one before (rows past `n` are read but their results dropped).
    pub q: *const u8,
    pub kp: usize,
    pub stride: usize,
    pub step: usize,
    pub n: usize,
    /// Whether `q` holds unsigned bytes (the K-quants) rather than signed.
    pub unsigned: bool,
    /// Elements per scale: 32 or 16.
    pub chunk: usize,
    /// `[kp / chunk][16]`: each row's scale per chunk.
    pub s: &'a [f32],
    /// Row `r`'s offsets per 16 elements at `o[r * kp / 16..]` (equal within a chunk), when
    /// the format has any.
    pub o: Option<&'a [f32]>,
}

/// The chunk of `dtype`: the elements under one weight scale (and offset).
pub fn chunk_of(dtype: DType) -> usize {
    match dtype {
        DType::Q2K | DType::Q3K | DType::Q6K => 16,
        _ => 32,
    }
}

/// A thread's buffers for the AMX path: the per-chunk scales of its rows.
#[derive(Default)]
pub struct Scratch {
    s: Vec<f32>,
    /// Q4_K / Q5_K rows with their scales multiplied in.
    pub planes: Planes,
}

impl Scratch {
    /// The scales table, `[chunks][16]`, zeroed.
    fn scales(&mut self, chunks: usize) -> &mut [f32] {
        self.s.clear();
        self.s.resize(chunks * TILE, 0.0);
        &mut self.s
    }
}

/// The 32-element formats: `w` as converted (`w.n` rows, padded to 16 with anything).
///
/// # Safety
/// [`available`]; `w.q` holds at least 16 rows of `w.kp`; `out` valid for `w.n` rows of
/// every token of `p`.
pub unsafe fn run_blocks(dtype: DType, w: &Rows, p: &Panel, scratch: &mut Scratch, out: Out) {
    debug_assert_eq!(p.chunk, 32);
    let kp = w.kp;
    let subs = kp / 16;
    let chunks = kp / 32;
    let s = scratch.scales(chunks);
    for r in 0..w.n {
        for j in 0..chunks {
            s[j * TILE + r] = w.s[r * subs + 2 * j];
        }
    }
    let mins = matches!(dtype, DType::Q4_1 | DType::Q5_1);
    let wt = Weights {
        q: w.q.as_ptr() as *const u8,
        kp,
        stride: kp,
        step: 32,
        n: w.n,
        unsigned: false,
        chunk: 32,
        s,
        o: mins.then_some(&w.o[..]),
    };
    run(&wt, p, out);
}

/// Q8_0 rows as stored, without converting them: 16 whole rows (`row_bytes` apart, `k` a
/// multiple of 64) whose blocks' 32 quants are each an `A` tile chunk in place, 34 bytes
/// apart; only the 16 rows' f16 scales are gathered.
///
/// # Safety
/// [`available`]; `data` holds 16 rows; `out` valid for them and every token of `p`.
pub unsafe fn run_q8_0(
    data: &[u8],
    row_bytes: usize,
    k: usize,
    p: &Panel,
    scratch: &mut Scratch,
    out: Out,
) {
    debug_assert!(k.is_multiple_of(64) && p.kp == k && data.len() >= TILE * row_bytes);
    let chunks = k / 32;
    let s = scratch.scales(chunks);
    for r in 0..TILE {
        let row = &data[r * row_bytes..][..row_bytes];
        for (j, b) in row.chunks_exact(34).enumerate() {
            s[j * TILE + r] = crate::quants::read_f16(b);
        }
    }
    let wt = Weights {
        q: data.as_ptr().add(2),
        kp: k,
        stride: row_bytes,
        step: 34,
        n: TILE,
        unsigned: false,
        chunk: 32,
        s,
        o: None,
    };
    run(&wt, p, out);
}

/// The K-quants: `w` as converted (`w.n` rows, padded to 16 with anything).
///
/// # Safety
/// As [`run_blocks`].
pub unsafe fn run_k(dtype: DType, w: &KRows, p: &Panel, scratch: &mut Scratch, out: Out) {
    let k = w.k;
    let ch = chunk_of(dtype);
    debug_assert_eq!(p.chunk, ch);
    let chunks = k / ch;
    let s = scratch.scales(chunks);
    let (per_sb, step) = (256 / ch, ch / 16);
    for r in 0..w.n {
        let (d, sc) = (
            &w.d[r * (k / 256)..][..k / 256],
            &w.sc[r * (k / 16)..][..k / 16],
        );
        for j in 0..chunks {
            s[j * TILE + r] = d[j / per_sb] * sc[j * step] as f32;
        }
    }
    let wt = Weights {
        q: w.q.as_ptr(),
        kp: k,
        stride: k,
        step: ch,
        n: w.n,
        unsigned: true,
        chunk: ch,
        s,
        o: Some(&w.o[..]),
    };
    run(&wt, p, out);
}

/// The tile configuration: tmm0/tmm1 the int32 sums (16 x 16), tmm2/tmm4 the weights (16
/// rows x `chunk` bytes), tmm3/tmm5 the activations (`chunk / 4` rows x 64 bytes); two of
/// each so one chunk's tiles fill while the previous one's sums are converted.
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
    pad: [u8; 16],
}

impl TileConfig {
    fn new(chunk: usize) -> TileConfig {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
            pad: [0; 16],
        };
        for (t, rows, colsb) in [
            (0, 16, 64),
            (1, 16, 64),
            (2, 16, chunk),
            (4, 16, chunk),
            (3, chunk / 4, 64),
            (5, chunk / 4, 64),
        ] {
            c.rows[t] = rows as u8;
            c.colsb[t] = colsb as u16;
        }
        c
    }
}

/// Chunk `j`'s product into sums tile `j % 2` (tmm0 or tmm1), not yet stored.
#[inline(always)]
unsafe fn product(w: &Weights<'_>, b: *const i8, j: usize) {
    let a = w.q.add(j * w.step);
    let bj = b.add(j * w.chunk * TILE);
    let (ka, kb) = (w.stride, 64usize);
    macro_rules! chunk {
        ($c:literal, $a:literal, $b:literal, $op:literal) => {
            asm!(
                concat!("tilezero tmm", $c),
                concat!("tileloadd tmm", $a, ", [{a} + {ka}*1]"),
                concat!("tileloadd tmm", $b, ", [{b} + {kb}*1]"),
                concat!($op, " tmm", $c, ", tmm", $a, ", tmm", $b),
                a = in(reg) a,
                ka = in(reg) ka,
                b = in(reg) bj,
                kb = in(reg) kb,
                options(nostack),
            )
        };
    }
    match (j % 2, w.unsigned) {
        (0, false) => chunk!("0", "2", "3", "tdpbssd"),
        (_, false) => chunk!("1", "4", "5", "tdpbssd"),
        (0, true) => chunk!("0", "2", "3", "tdpbusd"),
        (_, true) => chunk!("1", "4", "5", "tdpbusd"),
    }
}

/// Store chunk `j`'s sums tile into `sums` (16 x 16 int32).
#[inline(always)]
unsafe fn store(j: usize, sums: *mut i32) {
    if j.is_multiple_of(2) {
        asm!("tilestored [{s} + {kb}*1], tmm0", s = in(reg) sums, kb = in(reg) 64usize, options(nostack));
    } else {
        asm!("tilestored [{s} + {kb}*1], tmm1", s = in(reg) sums, kb = in(reg) 64usize, options(nostack));
    }
}

/// Chunk `j`'s sums in memory for the conversion: the product of chunk `j + 1` is started
/// first, so the tile unit works on it while chunk `j` is stored and converted (a load after
/// a tile store waits for the store, so storing right after each product would leave the
/// tile unit idle during every conversion).
#[inline(always)]
unsafe fn next_sums(
    w: &Weights<'_>,
    b: *const i8,
    j: usize,
    chunks: usize,
    sums: &mut Sums,
) -> *const i32 {
    if j + 1 < chunks {
        product(w, b, j + 1);
    }
    let s = sums.0[j % 2].as_mut_ptr();
    store(j, s);
    s
}

/// Every token tile of `p` against the 16 rows of `w`.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn run(w: &Weights<'_>, p: &Panel, out: Out) {
    let cfg = TileConfig::new(w.chunk);
    asm!("ldtilecfg [{c}]", c = in(reg) &cfg, options(nostack));
    let chunks = w.kp / w.chunk;
    let nd = w.kp / p.d_block;
    let mut sums = Sums([[0; TILE * TILE]; 2]);
    let mut res = [0f32; TILE * TILE];
    for tile in 0..p.tiles {
        let b = p.q.as_ptr().add(tile * w.kp * TILE);
        let d = p.d.as_ptr().add(tile * nd * TILE);
        let mut acc = [_mm512_setzero_ps(); TILE];
        product(w, b, 0);
        if p.d_block == 256 {
            // Q8_K activations: one `da` per 256, so each super-block's chunks add up under
            // the weights' scales alone, then take `da` once (the totals wait in `res`).
            res.fill(0.0);
            let per = 256 / w.chunk;
            for j in 0..chunks {
                let s = next_sums(w, b, j, chunks, &mut sums);
                let sw = w.s.as_ptr().add(j * TILE);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_cvtepi32_ps(_mm512_loadu_si512(s.add(r * TILE) as *const _));
                    *acc = _mm512_fmadd_ps(v, _mm512_set1_ps(*sw.add(r)), *acc);
                }
                if (j + 1) % per == 0 {
                    let da = _mm512_loadu_ps(d.add(j / per * TILE));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let t = res.as_mut_ptr().add(r * TILE);
                        _mm512_storeu_ps(t, _mm512_fmadd_ps(*acc, da, _mm512_loadu_ps(t)));
                        *acc = _mm512_setzero_ps();
                    }
                }
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_loadu_ps(res.as_ptr().add(r * TILE));
            }
        } else {
            for j in 0..chunks {
                let s = next_sums(w, b, j, chunks, &mut sums);
                let da = _mm512_loadu_ps(d.add(j * w.chunk / p.d_block * TILE));
                let sw = w.s.as_ptr().add(j * TILE);
                for (r, acc) in acc.iter_mut().enumerate() {
                    let v = _mm512_cvtepi32_ps(_mm512_loadu_si512(s.add(r * TILE) as *const _));
                    let sc = _mm512_mul_ps(_mm512_set1_ps(*sw.add(r)), da);
                    *acc = _mm512_fmadd_ps(v, sc, *acc);
                }
            }
        }
        finish(&mut acc, w.o, w.chunk, p, tile, w.n, &mut res, out);
    }
    asm!("tilerelease", options(nostack, nomem));
}

/// A token tile's last steps: the offsets `o_row * g_token` per chunk (when the format has
/// any; `o` as [`Weights::o`]), then the 16 rows' token lanes written out to tokens' rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn finish(
    acc: &mut [__m512; TILE],
    o: Option<&[f32]>,
    chunk: usize,
    p: &Panel,
    tile: usize,
    n: usize,
    res: &mut [f32; TILE * TILE],
    out: Out,
) {
    let (chunks, subs) = (p.kp / chunk, p.kp / 16);
    if let Some(o) = o {
        // Chunk by chunk, so the 16 rows' accumulators are independent chains.
        let g = p.g.as_ptr().add(tile * chunks * TILE);
        let step = chunk / 16;
        for j in 0..chunks {
            let gv = _mm512_loadu_ps(g.add(j * TILE));
            let o = o.as_ptr().add(j * step);
            for (r, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_fmadd_ps(_mm512_set1_ps(*o.add(r * subs)), gv, *acc);
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        _mm512_storeu_ps(res.as_mut_ptr().add(r * TILE), *acc);
    }
    let tokens = TILE.min(p.t - tile * TILE);
    for m in 0..tokens {
        let dst = out.ptr.add((tile * TILE + m) * out.ld);
        for r in 0..n {
            *dst.add(r) = res[r * TILE + m];
        }
    }
}

/// The two chunks' int32 sums, 64-byte aligned for the tile stores.
#[repr(C, align(64))]
struct Sums([[i32; TILE * TILE]; 2]);

/// Q4_K / Q5_K rows with each element's sub-block scale multiplied in, `u = sc * q` (at most
/// 63 * 31 = 1953), split into a low byte plane `u & 255` and a high one `u >> 8` (at most
/// 7). A super-block's exact integer sum `Σ sc_j Σ q a` (what the scalar twin computes) is
/// then `Σ lo a + 256 Σ hi a`: two int32 tiles accumulated over four 64-element `tdpbusd`
/// steps, converted to f32 once per super-block instead of once per 32 elements.
#[derive(Default)]
pub struct Planes {
    n: usize,
    k: usize,
    /// `[16][k]` each (rows past `n` hold whatever was there).
    lo: Vec<u8>,
    hi: Vec<u8>,
    /// `[k / 256][16]`: each row's `d` per super-block.
    d: Vec<f32>,
    /// `[16][k / 16]`: each row's offset `-dmin * m` per 16 elements, as [`KRows`].
    o: Vec<f32>,
}

/// Whether `dtype` rows go through [`Planes`] on AMX.
pub fn takes_planes(dtype: DType) -> bool {
    matches!(dtype, DType::Q4K | DType::Q5K)
}

impl Planes {
    /// Convert `n` (at most 16) stored Q4_K / Q5_K rows of `k` elements (`row_bytes` apart).
    ///
    /// # Safety
    /// [`available`] (for AVX-512 BW); `dtype` as [`takes_planes`]; `data` holds the `n` rows.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub unsafe fn fill(&mut self, dtype: DType, data: &[u8], row_bytes: usize, n: usize, k: usize) {
        debug_assert!(n <= TILE && k.is_multiple_of(256) && takes_planes(dtype));
        let (bytes, qs_at, qh_at) = match dtype {
            DType::Q5K => (176, 48, Some(16)),
            _ => (144, 16, None),
        };
        let nsb = k / 256;
        self.n = n;
        self.k = k;
        self.lo.resize(TILE * k, 0);
        self.hi.resize(TILE * k, 0);
        self.d.resize(nsb * TILE, 0.0);
        self.o.resize(TILE * k / 16, 0.0);
        let data = &data[..n * row_bytes];
        for r in 0..n {
            let row = &data[r * row_bytes..][..nsb * bytes];
            for (sb, b) in row.chunks_exact(bytes).enumerate() {
                if let Some(ahead) = data.get((r * row_bytes + sb * bytes) + PREFETCH..) {
                    super::prefetch(&ahead[..bytes.min(ahead.len())]);
                }
                let dmin = read_f16(&b[2..]);
                self.d[sb * TILE + r] = read_f16(b);
                let o = &mut self.o[(r * k + sb * 256) / 16..][..16];
                let mut sc = [0i16; 8];
                for (j, sc) in sc.iter_mut().enumerate() {
                    let (s, m) = scale_min_k4(j, &b[4..16]);
                    *sc = s as i16;
                    o[2 * j..][..2].fill(-(dmin * m as f32));
                }
                let at = r * k + sb * 256;
                k4_planes(
                    b[qs_at..][..128].as_ptr(),
                    qh_at.map(|h| b[h..][..32].as_ptr()),
                    &sc,
                    self.lo[at..][..256].as_mut_ptr(),
                    self.hi[at..][..256].as_mut_ptr(),
                );
            }
        }
    }
}

/// Bytes ahead of the block being converted that [`Planes::fill`] prefetches.
const PREFETCH: usize = 1024;

/// One Q4_K / Q5_K super-block's planes: chunk `c` of 32 nibble bytes holds sub-blocks `2c`
/// (low nibbles) and `2c + 1` (high), the Q5_K fifth bits are bits `2c`, `2c + 1` of `qh`.
/// The products go per 16-bit lane, even and odd bytes apart.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn k4_planes(qs: *const u8, qh: Option<*const u8>, sc: &[i16; 8], lo: *mut u8, hi: *mut u8) {
    let m4 = _mm512_set1_epi8(0x0f);
    let m10 = _mm512_set1_epi8(0x10);
    let m8 = _mm512_set1_epi16(0x00ff);
    const UPPER: __mmask32 = 0xffff_0000;
    // [qh | qh >> 1]: bit 2c of each byte is then the fifth bit of both sub-blocks' element.
    let hz = qh.map(|p| {
        let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(p as *const __m256i));
        _mm512_mask_srli_epi16::<1>(x, UPPER, x)
    });
    for c in 0..4 {
        let x = _mm512_broadcast_i64x4(_mm256_loadu_si256(qs.add(32 * c) as *const __m256i));
        let mut q = _mm512_and_si512(_mm512_mask_srli_epi16::<4>(x, UPPER, x), m4);
        if let Some(hz) = hz {
            let h = _mm512_srlv_epi16(hz, _mm512_set1_epi16(2 * c as i16));
            q = _mm512_or_si512(q, _mm512_and_si512(_mm512_slli_epi16::<4>(h), m10));
        }
        let s = _mm512_mask_blend_epi16(
            UPPER,
            _mm512_set1_epi16(sc[2 * c]),
            _mm512_set1_epi16(sc[2 * c + 1]),
        );
        let even = _mm512_mullo_epi16(_mm512_and_si512(q, m8), s);
        let odd = _mm512_mullo_epi16(_mm512_srli_epi16::<8>(q), s);
        let l = _mm512_or_si512(_mm512_and_si512(even, m8), _mm512_slli_epi16::<8>(odd));
        let h = _mm512_or_si512(_mm512_srli_epi16::<8>(even), _mm512_andnot_si512(m8, odd));
        _mm512_storeu_si512(lo.add(64 * c) as *mut __m512i, l);
        _mm512_storeu_si512(hi.add(64 * c) as *mut __m512i, h);
    }
}

/// Super-block `sb`'s products into sums pair `sb % 2` (tmm0 + tmm1, or tmm6 + tmm7): the
/// low and high planes' four 64-element steps against the same activation tiles.
#[inline(always)]
unsafe fn planes_product(w: &Planes, b: *const i8, sb: usize) {
    let lo = w.lo.as_ptr().add(sb * 256);
    let hi = w.hi.as_ptr().add(sb * 256);
    let b = b.add(sb * 256 * TILE);
    let (ka, kb) = (w.k, 64usize);
    // One 64-element step: activation tile into tmm`$b`, then each plane against it.
    macro_rules! step {
        ($l:literal, $h:literal, $b:literal, $o:literal, $ob:literal) => {
            asm!(
                concat!("tileloadd tmm", $b, ", [{b} + {kb}*1 + ", $ob, "]"),
                concat!("tileloadd tmm2, [{lo} + {ka}*1 + ", $o, "]"),
                concat!("tdpbusd tmm", $l, ", tmm2, tmm", $b),
                concat!("tileloadd tmm4, [{hi} + {ka}*1 + ", $o, "]"),
                concat!("tdpbusd tmm", $h, ", tmm4, tmm", $b),
                lo = in(reg) lo,
                hi = in(reg) hi,
                ka = in(reg) ka,
                b = in(reg) b,
                kb = in(reg) kb,
                options(nostack),
            )
        };
    }
    macro_rules! sb {
        ($l:literal, $h:literal) => {{
            asm!(
                concat!("tilezero tmm", $l),
                concat!("tilezero tmm", $h),
                options(nostack, nomem)
            );
            step!($l, $h, "3", "0", "0");
            step!($l, $h, "5", "64", "1024");
            step!($l, $h, "3", "128", "2048");
            step!($l, $h, "5", "192", "3072");
        }};
    }
    if sb.is_multiple_of(2) {
        sb!("0", "1");
    } else {
        sb!("6", "7");
    }
}

/// Super-block `sb` of two token tiles (`b` and the next) against both planes: tmm0..3 the
/// sums (tile 0 low, high; tile 1 low, high), tmm4 / tmm5 the planes' step, tmm6 / tmm7 the
/// two token tiles' step; each loaded tile serves two products. Stored into `sums`.
#[inline(always)]
unsafe fn pair_product(w: &Planes, b: *const i8, sb: usize, sums: &mut [Sums; 2]) {
    let lo = w.lo.as_ptr().add(sb * 256);
    let hi = w.hi.as_ptr().add(sb * 256);
    let b0 = b.add(sb * 256 * TILE);
    let b1 = b0.add(w.k * TILE);
    let (ka, kb) = (w.k, 64usize);
    macro_rules! step {
        ($o:literal, $ob:literal) => {
            asm!(
                concat!("tileloadd tmm4, [{lo} + {ka}*1 + ", $o, "]"),
                concat!("tileloadd tmm6, [{b0} + {kb}*1 + ", $ob, "]"),
                "tdpbusd tmm0, tmm4, tmm6",
                concat!("tileloadd tmm5, [{hi} + {ka}*1 + ", $o, "]"),
                "tdpbusd tmm1, tmm5, tmm6",
                concat!("tileloadd tmm7, [{b1} + {kb}*1 + ", $ob, "]"),
                "tdpbusd tmm2, tmm4, tmm7",
                "tdpbusd tmm3, tmm5, tmm7",
                lo = in(reg) lo,
                hi = in(reg) hi,
                ka = in(reg) ka,
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                kb = in(reg) kb,
                options(nostack),
            )
        };
    }
    asm!(
        "tilezero tmm0",
        "tilezero tmm1",
        "tilezero tmm2",
        "tilezero tmm3",
        options(nostack, nomem)
    );
    step!("0", "0");
    step!("64", "1024");
    step!("128", "2048");
    step!("192", "3072");
    let kb = 64usize;
    asm!(
        "tilestored [{l0} + {kb}*1], tmm0",
        "tilestored [{h0} + {kb}*1], tmm1",
        "tilestored [{l1} + {kb}*1], tmm2",
        "tilestored [{h1} + {kb}*1], tmm3",
        l0 = in(reg) sums[0].0[0].as_mut_ptr(),
        h0 = in(reg) sums[0].0[1].as_mut_ptr(),
        l1 = in(reg) sums[1].0[0].as_mut_ptr(),
        h1 = in(reg) sums[1].0[1].as_mut_ptr(),
        kb = in(reg) kb,
        options(nostack),
    );
}

/// Store super-block `sb`'s sums pair into `sums` (low plane's, then high plane's).
#[inline(always)]
unsafe fn planes_store(sb: usize, sums: &mut Sums) {
    let (l, h) = (sums.0[0].as_mut_ptr(), sums.0[1].as_mut_ptr());
    let kb = 64usize;
    if sb.is_multiple_of(2) {
        asm!("tilestored [{l} + {kb}*1], tmm0", "tilestored [{h} + {kb}*1], tmm1",
            l = in(reg) l, h = in(reg) h, kb = in(reg) kb, options(nostack));
    } else {
        asm!("tilestored [{l} + {kb}*1], tmm6", "tilestored [{h} + {kb}*1], tmm7",
            l = in(reg) l, h = in(reg) h, kb = in(reg) kb, options(nostack));
    }
}

/// One super-block's stored sums (`sums`: the low plane's, then the high plane's) into the
/// rows' token lanes: `acc[r] += f32(lo + 256 hi) * d_w[r] * da`.
#[inline(always)]
unsafe fn add_planes(acc: &mut [__m512; TILE], sums: &Sums, dw: *const f32, da: __m512) {
    let (l, h) = (sums.0[0].as_ptr(), sums.0[1].as_ptr());
    for (r, acc) in acc.iter_mut().enumerate() {
        let lo = _mm512_loadu_si512(l.add(r * TILE) as *const _);
        let hi = _mm512_loadu_si512(h.add(r * TILE) as *const _);
        let v = _mm512_cvtepi32_ps(_mm512_add_epi32(lo, _mm512_slli_epi32::<8>(hi)));
        *acc = _mm512_fmadd_ps(v, _mm512_mul_ps(_mm512_set1_ps(*dw.add(r)), da), *acc);
    }
}

/// Every token tile of `p` against the 16 rows of `w`; per super-block and row
/// `acc += f32(Σ lo a + 256 Σ hi a) * d_row * da_token`, then the offsets as in [`run`].
///
/// # Safety
/// [`available`]; `w` filled; `p` built from Q8_K activations of `w.k` elements for Q4_K
/// or Q5_K;
/// `out` valid for `w.n` rows of every token of `p`.
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn run_planes(w: &Planes, p: &Panel, out: Out) {
    debug_assert!(p.kp == w.k && p.d_block == 256 && p.chunk == 32);
    let mut cfg = TileConfig::new(64);
    for t in [6, 7] {
        cfg.rows[t] = TILE as u8;
        cfg.colsb[t] = 64;
    }
    asm!("ldtilecfg [{c}]", c = in(reg) &cfg, options(nostack));
    let nsb = w.k / 256;
    let mut sums = Sums([[0; TILE * TILE]; 2]);
    let mut res = [0f32; TILE * TILE];
    // Token tiles two at a time (each loaded tile used twice, four independent sums), the
    // last odd one alone with the next super-block's products started before the stores.
    let pairs = p.tiles / 2;
    let mut sums2 = [Sums([[0; TILE * TILE]; 2]), Sums([[0; TILE * TILE]; 2])];
    for pair in 0..pairs {
        let tile = 2 * pair;
        let b = p.q.as_ptr().add(tile * w.k * TILE);
        let d = p.d.as_ptr().add(tile * nsb * TILE);
        let mut acc = [[_mm512_setzero_ps(); TILE]; 2];
        for sb in 0..nsb {
            pair_product(w, b, sb, &mut sums2);
            let dw = w.d.as_ptr().add(sb * TILE);
            for (t, acc) in acc.iter_mut().enumerate() {
                let da = _mm512_loadu_ps(d.add((t * nsb + sb) * TILE));
                add_planes(acc, &sums2[t], dw, da);
            }
        }
        for (t, acc) in acc.iter_mut().enumerate() {
            finish(acc, Some(&w.o), 32, p, tile + t, w.n, &mut res, out);
        }
    }
    for tile in 2 * pairs..p.tiles {
        let b = p.q.as_ptr().add(tile * w.k * TILE);
        let d = p.d.as_ptr().add(tile * nsb * TILE);
        let mut acc = [_mm512_setzero_ps(); TILE];
        planes_product(w, b, 0);
        for sb in 0..nsb {
            if sb + 1 < nsb {
                planes_product(w, b, sb + 1);
            }
            planes_store(sb, &mut sums);
            let da = _mm512_loadu_ps(d.add(sb * TILE));
            add_planes(&mut acc, &sums, w.d.as_ptr().add(sb * TILE), da);
        }
        finish(&mut acc, Some(&w.o), 32, p, tile, w.n, &mut res, out);
    }
    asm!("tilerelease", options(nostack, nomem));
}
