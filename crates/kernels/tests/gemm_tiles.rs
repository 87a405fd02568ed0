//! The tiled prefill kernels ([`mixture_kernels::gemm`]): the SIMD micro-kernels against their
//! scalar twins, and both against dequantized weights times activations rounded as the kernel
//! rounds them (Q8_0, or Q8_K for the K-quants) in f64, for every integer format, every tile
//! shape (1..=4 rows x 1..=4 tokens, and ragged edges), and a row length that is not a
//! multiple of the 64-element step.

use half::f16;
use mixture_kernels::actquant::round_trip;
use mixture_kernels::gemm::{self, Kernel, Out, Scratch, TiledActs};
use mixture_kernels::DType;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Byte offsets of each block's f16 scales.
fn f16_fields(t: DType) -> &'static [usize] {
    match t {
        DType::Q4K | DType::Q5K | DType::Q4_1 | DType::Q5_1 => &[0, 2],
        DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
        DType::Q2K => &[80, 82],
        DType::Q3K => &[108],
        DType::Q6K => &[208],
        _ => unreachable!("not an integer format"),
    }
}

fn random_weight(t: DType, rows: usize, k: usize, rng: &mut Rng) -> Vec<u8> {
    let mut w: Vec<u8> = (0..rows * t.row_bytes(k).unwrap())
        .map(|_| rng.next() as u8)
        .collect();
    for b in w.chunks_exact_mut(t.block_bytes()) {
        for &at in f16_fields(t) {
            let v = ((rng.next() % 2001) as f32 - 1000.0) / 50_000.0;
            b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
        }
    }
    w
}

fn formats() -> Vec<DType> {
    DType::ALL
        .into_iter()
        .filter(|&d| gemm::supported(d))
        .collect()
}

/// `out[c * n + r]` for every row and token, with `kernel`.
fn tiled(kernel: Kernel, t: DType, w: &[u8], n: usize, x: &[f32], k: usize) -> Vec<f32> {
    let a = TiledActs::quantize(t, x, k);
    let mut out = vec![f32::NAN; x.len() / k * n];
    let o = Out {
        ptr: out.as_mut_ptr(),
        ld: n,
    };
    let rb = t.row_bytes(k).unwrap();
    // SAFETY: `out` holds every (token, row) the tiles write; `a` was quantized for `t`.
    unsafe { gemm::run_rows(kernel, t, w, rb, n, k, &a, &mut Scratch::default(), o) };
    out
}

/// Dequantized weights times activations rounded as the kernel rounds them, in f64; also Σ|w||x| per entry (the
/// scale for tolerances).
fn reference(t: DType, w: &[u8], n: usize, x: &[f32], k: usize) -> (Vec<f64>, Vec<f64>) {
    let mut xq = x.to_vec();
    round_trip(gemm::act_format(t), &mut xq);
    let rb = t.row_bytes(k).unwrap();
    let tokens = x.len() / k;
    let (mut out, mut mag) = (vec![0f64; tokens * n], vec![0f64; tokens * n]);
    let mut row = vec![0f32; k];
    for r in 0..n {
        t.dequantize_row(&w[r * rb..(r + 1) * rb], &mut row)
            .unwrap();
        for c in 0..tokens {
            let xs = &xq[c * k..(c + 1) * k];
            out[c * n + r] = row.iter().zip(xs).map(|(&a, &b)| a as f64 * b as f64).sum();
            mag[c * n + r] = row
                .iter()
                .zip(xs)
                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                .sum();
        }
    }
    (out, mag)
}

#[test]
fn tiles_equal_dequantized_weights_times_rounded_activations() {
    let mut rng = Rng(0x2545f4914f6cdd1d);
    for t in formats() {
        // 96 = one and a half 64-element steps (padding), 512 and 768: whole steps.
        let ks: &[usize] = if t.block_size() == 256 {
            &[512, 768]
        } else {
            &[96, 512]
        };
        for &k in ks {
            for (n, tokens) in [(1, 1), (4, 4), (5, 7), (9, 3), (3, 10), (16, 20), (13, 33)] {
                let w = random_weight(t, n, k, &mut rng);
                let x: Vec<f32> = (0..tokens * k)
                    .map(|_| ((rng.next() % 4001) as f32 - 2000.0) / 700.0)
                    .collect();
                let (want, mag) = reference(t, &w, n, &x, k);
                let scalar = tiled(Kernel::Scalar, t, &w, n, &x, k);
                for i in 0..want.len() {
                    let tol = 1e-5 * mag[i] + 1e-6;
                    assert!(
                        (scalar[i] as f64 - want[i]).abs() <= tol,
                        "{t} k={k} n={n} t={tokens} [{i}]: scalar {} vs {}",
                        scalar[i],
                        want[i]
                    );
                }
                for kernel in Kernel::all_available().into_iter().skip(1) {
                    let simd = tiled(kernel, t, &w, n, &x, k);
                    for i in 0..want.len() {
                        let tol = 1e-5 * mag[i] + 1e-6;
                        assert!(
                            (simd[i] - scalar[i]).abs() as f64 <= tol,
                            "{t} k={k} n={n} t={tokens} [{i}]: {kernel:?} {} vs scalar {}",
                            simd[i],
                            scalar[i]
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn a_wrong_weight_or_activation_is_seen() {
    // The comparison above must be able to fail: perturb one weight byte and one activation.
    let mut rng = Rng(7);
    let (t, n, k, tokens) = (DType::Q8_0, 4, 512, 4);
    let w = random_weight(t, n, k, &mut rng);
    let x: Vec<f32> = (0..tokens * k)
        .map(|_| ((rng.next() % 4001) as f32 - 2000.0) / 700.0)
        .collect();
    let base = tiled(Kernel::Scalar, t, &w, n, &x, k);
    let mut w2 = w.clone();
    w2[5] = w2[5].wrapping_add(1);
    assert_ne!(base, tiled(Kernel::Scalar, t, &w2, n, &x, k));
    let mut x2 = x.clone();
    x2[300] += 3.0;
    assert_ne!(base, tiled(Kernel::Scalar, t, &w, n, &x2, k));
}

/// Every tile kernel computes each token's column alone: a token's results are the same bits
/// in a job of any size as alone (`matmul::with_tiled` relies on it for batched prompts; this
/// checks the AVX2 K-quant tile too, which `matmul_many`'s test reaches only on machines
/// without AVX-512).
#[test]
fn each_token_gets_the_same_bits_in_any_tile() {
    let mut rng = Rng(0x9e3779b97f4a7c15);
    for t in formats() {
        let k = if t.block_size() == 256 { 512 } else { 96 };
        let n = 6;
        let w = random_weight(t, n, k, &mut rng);
        for tokens in [2usize, 5, 9] {
            let x: Vec<f32> = (0..tokens * k)
                .map(|_| ((rng.next() % 4001) as f32 - 2000.0) / 700.0)
                .collect();
            for kernel in Kernel::all_available() {
                let all = tiled(kernel, t, &w, n, &x, k);
                for c in 0..tokens {
                    let one = tiled(kernel, t, &w, n, &x[c * k..(c + 1) * k], k);
                    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits(&one),
                        bits(&all[c * n..(c + 1) * n]),
                        "{t} {kernel:?}: token {c} of {tokens} differs from its tile alone"
                    );
                }
            }
        }
    }
}
