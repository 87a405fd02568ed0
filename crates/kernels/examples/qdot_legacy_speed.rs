//! Single-thread speed of the 32-element block formats' dot products (Q4_0, Q4_1, Q5_0, Q5_1,
//! Q8_0) per instruction set, in GB/s of weight bytes read: a weight of `BIG_MIB` (64 MiB by
//! default), a second of `HUGE_MIB` (1 GiB by default; larger than this machine's L3, so it
//! comes from RAM) and one of 256 KiB that stays in L2. Instruction sets are timed in turns
//! and the best pass of each is kept, so load from other processes mostly drops out. The
//! `(read)` row is the reference: one plain pass summing the bytes as u64 words.
//!
//! `cargo run -p mixture-kernels --release --example qdot_legacy_speed [BIG_MIB [HUGE_MIB [ROUNDS]]]`
//! (`HUGE_MIB` 0 skips that column).

use mixture_kernels::qdot::{DotTable, Isa, QuantActs, RowDot};
use mixture_kernels::DType;
use std::hint::black_box;
use std::time::Instant;

/// Columns of every row.
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

/// Random blocks of `t` with small normal f16 scales, `bytes` rounded down to whole rows.
fn weight(t: DType, bytes: usize, rng: &mut Rng) -> Vec<u8> {
    let rb = t.row_bytes(K).unwrap();
    let n = bytes / rb * rb;
    let mut w: Vec<u8> = Vec::with_capacity(n + 8);
    while w.len() < n {
        w.extend_from_slice(&rng.next().to_le_bytes());
    }
    w.truncate(n);
    let fields: &[usize] = match t {
        DType::Q4_1 | DType::Q5_1 => &[0, 2],
        _ => &[0],
    };
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for b in w.chunks_exact_mut(t.block_bytes()) {
        for &o in fields {
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

/// Seconds for one pass summing `w` as u64 words.
fn read(w: &[u8]) -> f64 {
    let t0 = Instant::now();
    let s = black_box(w)
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
        .fold(0u64, u64::wrapping_add);
    black_box(s);
    t0.elapsed().as_secs_f64()
}

fn main() {
    let arg = |i: usize, d: usize| {
        std::env::args()
            .nth(i)
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let (big_mib, huge_mib, rounds) = (arg(1, 64), arg(2, 1024), arg(3, 8));
    let sizes: Vec<usize> = [big_mib << 20, huge_mib << 20, 256 << 10]
        .into_iter()
        .filter(|&s| s > 0)
        .collect();
    let isas = Isa::available();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let x: Vec<f32> = (0..K)
        .map(|_| (rng.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0)
        .collect();
    let gbs = |bytes: usize, s: f64| bytes as f64 / s / 1e9;
    let label = |s: usize| {
        if s >= 1 << 20 {
            format!("{} MiB", s >> 20)
        } else {
            format!("{} KiB", s >> 10)
        }
    };
    println!("single thread, GB/s of weight bytes read (k = {K}, best of {rounds} rounds)");
    print!("{:<8}{:>8}", "format", "isa");
    for &s in &sizes {
        print!("{:>12}", label(s));
    }
    println!();

    print!("{:<8}{:>8}", "(read)", "u64 sum");
    for &s in &sizes {
        let w = weight(DType::Q8_0, s, &mut rng);
        let reps = ((64 << 20) / w.len()).max(1);
        let mut best = f64::MAX;
        for _ in 0..rounds {
            best = best.min((0..reps).map(|_| read(&w)).sum::<f64>() / reps as f64);
        }
        print!("{:>12.2}", gbs(w.len(), best));
    }
    println!();

    for t in [
        DType::Q4_0,
        DType::Q4_1,
        DType::Q5_0,
        DType::Q5_1,
        DType::Q8_0,
    ] {
        let rb = t.row_bytes(K).unwrap();
        let acts = QuantActs::for_weight(t, &x, K).unwrap();
        let tables: Vec<DotTable> = isas
            .iter()
            .map(|&i| DotTable::for_isa(i).unwrap())
            .collect();
        let dots: Vec<RowDot> = tables
            .iter()
            .map(|tb| RowDot::new(tb, t, &acts, K).unwrap())
            .collect();
        let mut table = vec![Vec::new(); dots.len()];
        for &s in &sizes {
            let w = weight(t, s, &mut rng);
            // Short cached timings (about 2 ms each), so some fall between interruptions.
            let inner: Vec<usize> = dots
                .iter()
                .map(|f| ((0.002 / run(f, &w, rb, 1)) as usize).max(1))
                .collect();
            let mut best = vec![f64::MAX; dots.len()];
            for _ in 0..rounds {
                for ((f, &n), b) in dots.iter().zip(&inner).zip(&mut best) {
                    *b = b.min(run(f, &w, rb, n) / n as f64);
                }
            }
            for (col, b) in table.iter_mut().zip(best) {
                col.push(gbs(w.len(), b));
            }
        }
        for (isa, row) in isas.iter().zip(table) {
            print!(
                "{:<8}{:>8}",
                format!("{t:?}"),
                format!("{isa:?}").to_lowercase()
            );
            for v in row {
                print!("{v:>12.2}");
            }
            println!();
        }
    }
}
