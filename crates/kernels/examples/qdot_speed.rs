//! Single-thread speed of the integer dot products (K-quants and the 32-element formats), per
//! format and instruction set, in GB/s of weight bytes read: once with a weight much larger than L2 (64 MiB by default, streamed from
//! RAM or L3) and once with 256 KiB that stays in L2. Instruction sets are timed in turns and
//! the best pass of each is kept, so load from other processes mostly drops out. The `(read)`
//! rows are the reference: a plain pass summing the same number of bytes, without and with the
//! software prefetch the kernels issue.
//!
//! `cargo run -p mixture-kernels --release --example qdot_speed [BIG_MIB [ROUNDS]]`
//!
//! With `prefill [ROUNDS [T [K]]]` instead, it times prefill's and batched decode's access
//! pattern: every row of a [`PF_ROWS`] x K weight (K = [`PF_K`] unless given; a few MiB,
//! cache-resident as prefill tiles are) against T activation rows ([`PF_TOKENS`] unless
//! given), in millions of (token, row) dots per second: one single-row dot per token
//! (`per token`), `dot_rows` on the plain multi-row kernels four tokens at a time (`dot_rows`),
//! the tiled kernel including its row conversion (`tiled`, and `tiled/rows`), and where the
//! CPU has them the grouped kernels (`grp token`: one row at a time, which takes the
//! single-row kernel; `grp rows`: up to eight rows per call; 0.0 where there are none).

use mixture_kernels::qdot::{DotTable, GroupedActs, Isa, QuantActs, RowDot};
use mixture_kernels::{gemm, DType};
use std::hint::black_box;
use std::time::Instant;

/// Columns of every row (16 super-blocks).
const K: usize = 4096;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Byte offsets of the f16 scales in each format's block.
fn f16_fields(t: DType) -> &'static [usize] {
    match t {
        DType::Q4K | DType::Q5K | DType::Q4_1 | DType::Q5_1 => &[0, 2],
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q2K => &[80, 82],
        DType::Q3K => &[108],
        DType::Q6K => &[208],
        _ => unreachable!(),
    }
}

/// Random blocks with small normal f16 scales, `bytes` rounded down to whole rows.
fn weight(t: DType, bytes: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = t.row_bytes(K).unwrap();
    let n = bytes / rb * rb;
    let mut w: Vec<u8> = Vec::with_capacity(n);
    for _ in 0..n / 8 {
        w.extend_from_slice(&rng.next().to_le_bytes());
    }
    w.resize(n, 0);
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for b in w.chunks_exact_mut(t.block_bytes()) {
        for &o in f16_fields(t) {
            b[o..o + 2].copy_from_slice(&scale);
        }
    }
    w
}

/// Seconds for `passes` passes of one dot per row over `w`.
fn run(f: &RowDot, w: &[u8], rb: usize, passes: usize) -> f64 {
    let t0 = Instant::now();
    for _ in 0..passes {
        let mut s = 0f32;
        for row in w.chunks_exact(rb) {
            s += f.dot(black_box(row), 0);
        }
        black_box(s);
    }
    t0.elapsed().as_secs_f64()
}

/// Seconds for one pass summing `w` as u64 words (the bus speed one thread sees).
fn read(w: &[u8]) -> f64 {
    let t0 = Instant::now();
    let s = black_box(w)
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .fold(0u64, u64::wrapping_add);
    black_box(s);
    t0.elapsed().as_secs_f64()
}

/// As [`read`], with the software prefetch the kernels issue (every line, 4 KiB ahead).
fn read_prefetched(w: &[u8]) -> f64 {
    let t0 = Instant::now();
    let mut s = 0u64;
    for (i, part) in black_box(w).chunks(1024).enumerate() {
        #[cfg(target_arch = "x86_64")]
        for l in 0..16 {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = w.as_ptr().wrapping_add(1024 * i + 64 * l + 4096);
            // SAFETY: a prefetch never faults, whatever the address.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(p as *const i8) };
        }
        s = part
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .fold(s, u64::wrapping_add);
    }
    black_box(s);
    t0.elapsed().as_secs_f64()
}

const PF_ROWS: usize = 2048;
const PF_K: usize = 2048;

/// The row length for `prefill`: its third argument, else [`PF_K`] (a multiple of 256).
fn pf_k() -> usize {
    std::env::args()
        .nth(4)
        .and_then(|s| s.parse().ok())
        .unwrap_or(PF_K)
}
const PF_TOKENS: usize = 64;

/// Seconds for (a) single-row dots per token or (b) `dot_rows`, over every row of `w`.
fn run_prefill(f: &RowDot, w: &[u8], rb: usize, tokens: usize, multi: bool) -> f64 {
    let mut out = vec![0f32; tokens];
    let t0 = Instant::now();
    for row in w.chunks_exact(rb) {
        let row = black_box(row);
        if multi {
            f.dot_rows(row, 0, &mut out);
        } else {
            for (i, o) in out.iter_mut().enumerate() {
                *o = f.dot(row, i);
            }
        }
        black_box(&mut out);
    }
    t0.elapsed().as_secs_f64()
}

fn prefill(rounds: usize, tokens: usize) {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let x: Vec<f32> = (0..tokens * pf_k())
        .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect();
    println!(
        "single thread, {PF_ROWS} x {} weight against {tokens} tokens, \
         M (token, row) dots/s, best of {rounds} rounds; tiled includes converting the rows",
        pf_k()
    );
    println!(
        "{:<8}{:>8}{:>12}{:>12}{:>12}{:>10}{:>12}{:>12}",
        "format", "isa", "per token", "dot_rows", "tiled", "tiled/rows", "grp token", "grp rows"
    );
    let table = mixture_kernels::qdot::table();
    let isa = format!("{:?}", table.isa).to_lowercase();
    for t in [
        DType::Q4K,
        DType::Q5K,
        DType::Q6K,
        DType::Q3K,
        DType::Q2K,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        if !pf_k().is_multiple_of(t.block_size()) {
            continue; // the K-quants need rows of 256
        }
        let rb = t.row_bytes(pf_k()).unwrap();
        let w = weight(t, PF_ROWS * rb, &mut rng);
        let acts = QuantActs::for_weight(t, &x, pf_k()).unwrap();
        let f = RowDot::new(table, t, &acts, pf_k()).unwrap();
        let ga = GroupedActs::new(&acts, pf_k());
        let g = ga
            .as_ref()
            .filter(|_| table.g.has(t))
            .map(|ga| f.with_groups(table, t, ga));
        let (mut ta, mut tb, mut tc) = (f64::MAX, f64::MAX, f64::MAX);
        let (mut td, mut te) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            ta = ta.min(run_prefill(&f, &w, rb, tokens, false));
            tb = tb.min(run_prefill(&f, &w, rb, tokens, true));
            tc = tc.min(run_tiled(t, &w, rb, &x));
            if let Some(g) = &g {
                td = td.min(run_prefill(g, &w, rb, tokens, false));
                te = te.min(run_prefill(g, &w, rb, tokens, true));
            }
        }
        let rate = |s: f64| (PF_ROWS * tokens) as f64 / s / 1e6;
        println!(
            "{:<8}{isa:>8}{:>12.1}{:>12.1}{:>12.1}{:>9.2}x{:>12.1}{:>12.1}",
            format!("{t:?}"),
            rate(ta),
            rate(tb),
            rate(tc),
            tb / tc,
            rate(td),
            rate(te),
        );
    }
}

/// Seconds for every row against every token on the tiled kernel, 16 rows at a time.
fn run_tiled(t: DType, w: &[u8], rb: usize, x: &[f32]) -> f64 {
    let a = gemm::TiledActs::quantize(t, x, pf_k());
    let mut scratch = gemm::Scratch::default();
    let mut out = vec![0f32; x.len() / pf_k() * PF_ROWS];
    let start = Instant::now();
    for r0 in (0..PF_ROWS).step_by(16) {
        let o = gemm::Out {
            ptr: out[r0..].as_mut_ptr(),
            ld: PF_ROWS,
        };
        let rows = &w[r0 * rb..(r0 + 16) * rb];
        // SAFETY: `out` holds every (token, row) written; `a` was quantized for `t`.
        unsafe {
            gemm::run_rows(
                gemm::Kernel::best(),
                t,
                rows,
                rb,
                16,
                pf_k(),
                &a,
                &mut scratch,
                o,
            )
        };
    }
    let s = start.elapsed().as_secs_f64();
    black_box(&out);
    s
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("prefill") {
        let rounds = std::env::args().nth(2).and_then(|s| s.parse().ok());
        let tokens = std::env::args().nth(3).and_then(|s| s.parse().ok());
        prefill(rounds.unwrap_or(5), tokens.unwrap_or(PF_TOKENS));
        return;
    }
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (big_mib, rounds) = (arg(1, 64), arg(2, 10));
    let isas = Isa::available();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let x: Vec<f32> = (0..K)
        .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect();
    let gbs = |bytes: usize, s: f64| bytes as f64 / s / 1e9;
    println!("single thread, GB/s of weight bytes read (k = {K}, best of {rounds} rounds)");
    println!(
        "{:<8}{:>8}{:>12}{:>12}",
        "format",
        "isa",
        format!("{big_mib} MiB"),
        "256 KiB"
    );
    // The bus reference: plain passes over the same amount of bytes.
    let big = weight(DType::Q4K, big_mib << 20, &mut rng);
    let small = weight(DType::Q4K, 256 << 10, &mut rng);
    for (name, f) in [
        ("u64 sum", read as fn(&[u8]) -> f64),
        ("+ pref.", read_prefetched),
    ] {
        let (mut tb, mut ts) = (f64::MAX, f64::MAX);
        for _ in 0..rounds {
            tb = tb.min(f(&big));
            ts = ts.min((0..100).map(|_| f(&small)).sum::<f64>() / 100.0);
        }
        let (b, s) = (gbs(big.len(), tb), gbs(small.len(), ts));
        println!("{:<8}{name:>8}{b:>12.2}{s:>12.2}", "(read)");
    }
    drop((big, small));
    for t in [
        DType::Q4K,
        DType::Q6K,
        DType::Q5K,
        DType::Q3K,
        DType::Q2K,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        let rb = t.row_bytes(K).unwrap();
        let big = weight(t, big_mib << 20, &mut rng);
        let small = weight(t, 256 << 10, &mut rng);
        let acts = QuantActs::for_weight(t, &x, K).unwrap();
        let tables: Vec<DotTable> = isas
            .iter()
            .map(|&i| DotTable::for_isa(i).unwrap())
            .collect();
        let dots: Vec<RowDot> = tables
            .iter()
            .map(|tb| RowDot::new(tb, t, &acts, K).unwrap())
            .collect();
        // Cached: many short timings (about 2 ms each), so some fall between interruptions.
        let inner: Vec<usize> = dots
            .iter()
            .map(|f| ((0.002 / run(f, &small, rb, 3) * 3.0) as usize).max(1))
            .collect();
        let mut best = vec![(f64::MAX, f64::MAX); dots.len()];
        for _ in 0..rounds {
            for ((f, &n), b) in dots.iter().zip(&inner).zip(&mut best) {
                b.0 = b.0.min(run(f, &big, rb, 1));
                for _ in 0..10 {
                    b.1 = b.1.min(run(f, &small, rb, n) / n as f64);
                }
            }
        }
        for (isa, (tb, ts)) in isas.iter().zip(best) {
            let (b, s) = (gbs(big.len(), tb), gbs(small.len(), ts));
            let name = format!("{isa:?}").to_lowercase();
            println!("{:<8}{name:>8}{b:>12.2}{s:>12.2}", format!("{t:?}"));
        }
    }
}
