//! The integer dot products: every scalar twin equals the exact value of its inputs (the f64
//! dot of the dequantized weight row and the dequantized activations), and every SIMD path
//! this CPU has equals its scalar twin, within a bound of f32 rounding on the block terms.

use half::f16;
use mixture_kernels::qdot::{self, DotTable, GroupedActs, Isa, QuantActs, RowDot};
use mixture_kernels::DType;

const FORMATS: [DType; 10] = [
    DType::Q4_0,
    DType::Q4_1,
    DType::Q5_0,
    DType::Q5_1,
    DType::Q8_0,
    DType::Q2K,
    DType::Q3K,
    DType::Q4K,
    DType::Q5K,
    DType::Q6K,
];

/// Byte offsets of each format's f16 scale fields (random bytes there could be NaN or huge).
fn f16_fields(t: DType) -> &'static [usize] {
    match t {
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => &[0, 2],
        DType::Q2K => &[80, 82],
        DType::Q3K => &[108],
        DType::Q6K => &[208],
        _ => unreachable!(),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// `rows` random rows of `k` elements of type `t`, with sane scales.
fn random_weight(t: DType, rows: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let bb = t.block_bytes();
    let nb = rows * k / t.block_size();
    let mut w: Vec<u8> = (0..nb * bb).map(|_| rng.next() as u8).collect();
    for b in w.chunks_exact_mut(bb) {
        for &o in f16_fields(t) {
            let v = f16::from_f32(rng.f32() * 0.05).to_le_bytes();
            b[o..o + 2].copy_from_slice(&v);
        }
    }
    w
}

/// Activations: mostly small, a few outliers, some all-zero blocks.
fn random_acts(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut x: Vec<f32> = (0..n)
        .map(|i| {
            let v = rng.f32();
            if i % 97 == 5 {
                v * 20.0
            } else {
                v
            }
        })
        .collect();
    if n >= 512 {
        x[256..288].iter_mut().for_each(|v| *v = 0.0);
    }
    x
}

/// The activations as the kernels see them, dequantized.
fn dequant_acts(a: &QuantActs) -> Vec<f64> {
    match a {
        QuantActs::Q8_0(b) => b
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d as f64 * q as f64))
            .collect(),
        QuantActs::Q8_1(b) => b
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d as f64 * q as f64))
            .collect(),
        QuantActs::Q8K(b) => b
            .iter()
            .flat_map(|b| b.qs.iter().map(move |&q| b.d as f64 * q as f64))
            .collect(),
    }
}

/// Exact value of the dot of a weight row with the quantized activations, and the sum of
/// absolute terms (the scale of rounding error). Q4_1 / Q5_1 use the activation block sum
/// `s` as stored, as the kernels do.
fn exact(t: DType, row: &[u8], k: usize, acts: &QuantActs, i: usize) -> (f64, f64) {
    let mut wf = vec![0f32; k];
    t.dequantize_row(row, &mut wf).unwrap();
    let xa = dequant_acts(acts);
    let xa = &xa[i * k..(i + 1) * k];
    match (t, acts) {
        (DType::Q4_1 | DType::Q5_1, QuantActs::Q8_1(blocks)) => {
            // w = d q + m: Σ (d q) x + m * s, with s the stored block sum.
            let mut v = 0f64;
            let mut mag = 0f64;
            let bb = t.block_bytes();
            for (j, y) in blocks[i * k / 32..(i + 1) * k / 32].iter().enumerate() {
                let b = &row[j * bb..];
                let m = f16::from_le_bytes([b[2], b[3]]).to_f64();
                for l in 0..32 {
                    let dq = wf[32 * j + l] as f64 - m;
                    v += dq * xa[32 * j + l];
                    mag += (dq * xa[32 * j + l]).abs();
                }
                v += m * y.s as f64;
                mag += (m * y.s as f64).abs();
            }
            (v, mag)
        }
        _ => {
            let v = wf.iter().zip(xa).map(|(&w, &x)| w as f64 * x).sum();
            let mag = wf.iter().zip(xa).map(|(&w, &x)| (w as f64 * x).abs()).sum();
            (v, mag)
        }
    }
}

fn check_format(t: DType, table: &DotTable, rng: &mut Rng) {
    check_format_k(t, table, rng, 1024);
    // Rows whose block count is not a multiple of the kernels' groups of four blocks
    // (SmolLM2's 576 = 18 blocks of 32).
    if t.block_size() == 32 {
        check_format_k(t, table, rng, 32 * 19);
    }
}

fn check_format_k(t: DType, table: &DotTable, rng: &mut Rng, k: usize) {
    let rows = 6;
    let tokens = 6; // one multi-row call of 4, one of 2
    let w = random_weight(t, rows, k, rng);
    let x = random_acts(tokens * k, rng);
    let acts = QuantActs::for_weight(t, &x, k).expect("quantized format");
    let scalar = RowDot::new(&qdot::scalar::TABLE, t, &acts, k).unwrap();
    let grouped_acts = GroupedActs::new(&acts, k);
    // Several rows at a time take the grouped kernels where the instruction set has them.
    let fast = RowDot::new(table, t, &acts, k).unwrap();
    let fast = match &grouped_acts {
        Some(g) if table.g.has(t) => fast.with_groups(table, t, g),
        _ => fast,
    };
    let rb = t.row_bytes(k).unwrap();
    for r in 0..rows {
        let row = &w[r * rb..(r + 1) * rb];
        let mut multi = vec![0f32; tokens];
        fast.dot_rows(row, 0, &mut multi);
        if grouped_acts.is_some() {
            // One row at a time and four at a time: the same bits.
            for (i, &m) in multi.iter().enumerate() {
                assert_eq!(
                    fast.dot(row, i).to_bits(),
                    m.to_bits(),
                    "{t:?} grouped row {r} token {i}"
                );
            }
        }
        for (i, &m) in multi.iter().enumerate() {
            let (want, mag) = exact(t, row, k, &acts, i);
            let s = scalar.dot(row, i);
            assert!(
                (s as f64 - want).abs() <= 1e-5 * mag + 1e-30,
                "{t:?} scalar row {r} token {i}: {s} vs exact {want} (scale {mag})"
            );
            let f = fast.dot(row, i);
            assert!(
                (f - s).abs() as f64 <= 1e-5 * mag + 1e-30,
                "{t:?} {:?} row {r} token {i}: {f} vs scalar {s} (scale {mag})",
                table.isa
            );
            assert!(
                (m - s).abs() as f64 <= 1e-5 * mag + 1e-30,
                "{t:?} {:?} multi-row: row {r} token {i}: {m} vs scalar {s} (scale {mag})",
                table.isa
            );
        }
    }
}

#[test]
fn scalar_twins_compute_the_exact_dot() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for t in FORMATS {
        check_format(t, &qdot::scalar::TABLE, &mut rng);
    }
}

#[test]
fn every_simd_path_equals_its_scalar_twin() {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    let isas = Isa::available();
    eprintln!("instruction sets on this CPU: {isas:?}");
    for isa in isas {
        let table = DotTable::for_isa(isa).unwrap();
        for t in FORMATS {
            for _ in 0..3 {
                check_format(t, &table, &mut rng);
            }
        }
    }
}

#[test]
fn q8k_activations_keep_block_sums() {
    let mut rng = Rng(7);
    let x = random_acts(512, &mut rng);
    let QuantActs::Q8K(b) = QuantActs::for_weight(DType::Q4K, &x, 512).unwrap() else {
        panic!("Q4_K pairs with Q8_K");
    };
    for blk in &b {
        for (g, s) in blk.qs.chunks(16).zip(blk.bsums) {
            assert_eq!(g.iter().map(|&q| q as i16).sum::<i16>(), s);
        }
    }
    // The largest magnitude of a non-zero block maps to -127.
    assert!(b[0].qs.contains(&-127));
}
