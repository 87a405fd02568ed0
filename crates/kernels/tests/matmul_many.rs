//! `matmul_many` against the f32 reference matmul, job by job: mixed weight types (integer and
//! float kernels), one and several tokens, jobs sharing their activations, uneven row counts.

use half::f16;
use mixture_kernels::matmul::{matmul_many, MatJob};
use mixture_kernels::ops::{matmul_reference, WeightRef};
use mixture_kernels::DType;

fn weight(t: DType, rows: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let bb = t.block_bytes();
    let mut w: Vec<u8> = (0..rows * k / t.block_size() * bb)
        .map(|_| next() as u8)
        .collect();
    match t {
        DType::F32 => {
            for c in w.chunks_exact_mut(4) {
                let v = ((next() % 2001) as f32 - 1000.0) / 1000.0;
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        DType::F16 => {
            for c in w.chunks_exact_mut(2) {
                let v = ((next() % 2001) as f32 - 1000.0) / 1000.0;
                c.copy_from_slice(&f16::from_f32(v).to_le_bytes());
            }
        }
        _ => {
            // Each format's f16 scale fields (random bytes there could be NaN or huge).
            let fields: &[usize] = match t {
                DType::Q2K => &[80, 82],
                DType::Q3K => &[108],
                DType::Q6K => &[208],
                DType::Q4_0 | DType::Q5_0 | DType::Q8_0 => &[0],
                _ => &[0, 2],
            };
            for b in w.chunks_exact_mut(bb) {
                for (j, &at) in fields.iter().enumerate() {
                    let v = if j == 0 { 0.01 } else { -0.02 };
                    b[at..at + 2].copy_from_slice(&f16::from_f32(v).to_le_bytes());
                }
            }
        }
    }
    w
}

#[test]
fn many_jobs_equal_the_reference_one_by_one() {
    let k = 256;
    let specs = [
        (DType::Q4_0, 37),
        (DType::Q8_0, 16),
        (DType::Q4_1, 5),
        (DType::Q4K, 40),
        (DType::F16, 19),
        (DType::F32, 3),
    ];
    // 1 and 3 tokens: per-row dots; from 9 (Q8_0) or 70 (every format here) the tiled
    // prefill kernel where the CPU has it (see `gemm_min_tokens`); 9 and 40 also take the
    // multi-row dots of the others.
    for t in [1usize, 3, 9, 40, 70] {
        let xa: Vec<f32> = (0..t * k)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) / 5.0)
            .collect();
        let xb: Vec<f32> = (0..t * k)
            .map(|i| ((i * 5 % 19) as f32 - 9.0) / 3.0)
            .collect();
        let ws: Vec<Vec<u8>> = specs
            .iter()
            .enumerate()
            .map(|(i, &(d, n))| weight(d, n, k, 1 + i as u64))
            .collect();
        let refs: Vec<WeightRef<'_>> = specs
            .iter()
            .zip(&ws)
            .map(|(&(d, n), w)| WeightRef::new(d, n, k, w).unwrap())
            .collect();
        let mut outs: Vec<Vec<f32>> = specs.iter().map(|&(_, n)| vec![0f32; n * t]).collect();
        let mut jobs: Vec<MatJob<'_>> = refs
            .iter()
            .zip(outs.iter_mut())
            .enumerate()
            .map(|(i, (w, out))| MatJob {
                w: *w,
                // Jobs 0, 2, 4 share `xa`: quantized once per format.
                x: if i % 2 == 0 { &xa } else { &xb },
                out,
            })
            .collect();
        matmul_many(&mut jobs).unwrap();
        for (i, (w, out)) in refs.iter().zip(&outs).enumerate() {
            let x = if i % 2 == 0 { &xa } else { &xb };
            let mut want = vec![0f32; w.rows * t];
            matmul_reference(x, t, w, &mut want).unwrap();
            for (a, b) in out.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-4 * b.abs().max(1.0),
                    "{:?} t={t}: {a} vs {b}",
                    w.dtype
                );
            }
            assert!(out.iter().any(|v| *v != 0.0), "{:?}: all zero", w.dtype);
        }
    }
}

/// Under `with_row_dots`, a token's outputs are the same bits in a job of any size as alone
/// (the batching scheduler's decode rows rely on it: a sequence's text must not depend on
/// what else runs with it). Every integer format and both float ones, several job sizes.
#[test]
fn row_dots_give_each_token_its_bits_alone() {
    each_token_gets_its_bits_alone("with_row_dots", |f| {
        mixture_kernels::matmul::with_row_dots(f)
    });
}

/// The same under `with_tiled` (the scheduler's batched prompts): the tiled kernels, where the
/// CPU has them, compute each token's column alone.
#[test]
fn tiled_gives_each_token_its_bits_alone() {
    each_token_gets_its_bits_alone("with_tiled", |f| mixture_kernels::matmul::with_tiled(f));
}

fn each_token_gets_its_bits_alone(
    mode: &str,
    family: impl Fn(
        &mut dyn FnMut() -> Result<(), mixture_kernels::KernelError>,
    ) -> Result<(), mixture_kernels::KernelError>,
) {
    let rows = 19;
    // 608 = 19 blocks of 32: groups of four plus leftovers in the 32-element kernels.
    // Every integer format, and the float ones the models store.
    for (i, (d, k)) in DType::ALL
        .into_iter()
        .filter(|d| d.is_quantized_for_dot() || matches!(d, DType::F16 | DType::F32))
        .flat_map(|d| {
            let ks: &[usize] = if d.block_size() == 256 {
                &[512]
            } else {
                &[512, 608]
            };
            ks.iter().map(move |&k| (d, k))
        })
        .enumerate()
    {
        let wb = weight(d, rows, k, 11 + i as u64);
        let w = WeightRef::new(d, rows, k, &wb).unwrap();
        for t in [2usize, 5, 8, 70] {
            let x: Vec<f32> = (0..t * k)
                .map(|j| ((j * 13 % 29) as f32 - 14.0) / 6.0)
                .collect();
            let mut all = vec![0f32; t * rows];
            family(&mut || {
                matmul_many(&mut [MatJob {
                    w,
                    x: &x,
                    out: &mut all,
                }])
            })
            .unwrap();
            for c in 0..t {
                let mut one = vec![0f32; rows];
                family(&mut || {
                    matmul_many(&mut [MatJob {
                        w,
                        x: &x[c * k..(c + 1) * k],
                        out: &mut one,
                    }])
                })
                .unwrap();
                assert!(one.iter().all(|v| v.is_finite()), "{d:?}: {one:?}");
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
                assert_eq!(
                    bits(&one),
                    bits(&all[c * rows..(c + 1) * rows]),
                    "{mode} {d:?} k={k}: token {c} of {t} differs from its run alone"
                );
            }
        }
    }
}
