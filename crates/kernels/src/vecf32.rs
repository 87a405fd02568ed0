//! f32 vector kernels for attention and the float paths: dot product and `y += a * x`, with
//! AVX-512 and AVX2+FMA versions picked once at run time and a scalar twin of each.

use std::sync::OnceLock;

type DotFn = unsafe fn(&[f32], &[f32]) -> f32;
type AxpyFn = unsafe fn(&mut [f32], f32, &[f32]);
type DotsFn = unsafe fn(&[f32], &[f32], usize, &mut [f32]);
type AxpysFn = unsafe fn(&mut [f32], &[f32], &[f32], usize);

struct Table {
    dot: DotFn,
    axpy: AxpyFn,
    dots: DotsFn,
    axpys: AxpysFn,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::qdot::x86::has_avx512() {
                return Table {
                    dot: x86::dot_avx512,
                    axpy: x86::axpy_avx512,
                    dots: x86::dots_avx512,
                    axpys: x86::axpys_avx512,
                };
            }
            if crate::qdot::x86::has_avx2() {
                return Table {
                    dot: x86::dot_avx2,
                    axpy: x86::axpy_avx2,
                    dots: x86::dots_avx2,
                    axpys: x86::axpys_avx2,
                };
            }
        }
        Table {
            dot: dot_scalar,
            axpy: axpy_scalar,
            dots: dots_scalar,
            axpys: axpys_scalar,
        }
    })
}

/// `Σ a[i] b[i]` over the shorter length.
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    // SAFETY: the table holds only kernels this CPU supports; lengths are equal.
    unsafe { (table().dot)(&a[..n], &b[..n]) }
}

/// `y[i] += alpha * x[i]` over the shorter length.
#[inline]
pub fn axpy(y: &mut [f32], alpha: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    // SAFETY: as in `dot`.
    unsafe { (table().axpy)(&mut y[..n], alpha, &x[..n]) }
}

/// `out[p] = q · rows[p * stride..][..q.len()]` for every `p < out.len()`: attention's
/// scores of one query against a run of keys, with one dispatch for all of them.
pub fn dot_strided(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    if let Some(last) = out.len().checked_sub(1) {
        assert!(
            last * stride + q.len() <= rows.len(),
            "dot_strided: rows too short"
        );
    }
    // SAFETY: the table holds only kernels this CPU supports; bounds checked above.
    unsafe { (table().dots)(q, rows, stride, out) }
}

/// `y += Σ_p w[p] · rows[p * stride..][..y.len()]`, `p` in order (the same as one [`axpy`]
/// per `p`): attention's weighted sum of values, with one dispatch for all of them.
pub fn axpy_strided(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
    if let Some(last) = w.len().checked_sub(1) {
        assert!(
            last * stride + y.len() <= rows.len(),
            "axpy_strided: rows too short"
        );
    }
    // SAFETY: as in `dot_strided`.
    unsafe { (table().axpys)(y, w, rows, stride) }
}

/// Scalar twin of [`dot_strided`].
pub fn dots_scalar(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    for (p, o) in out.iter_mut().enumerate() {
        *o = dot_scalar(q, &rows[p * stride..][..q.len()]);
    }
}

/// Scalar twin of [`axpy_strided`].
pub fn axpys_scalar(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
    let n = y.len();
    for (p, &a) in w.iter().enumerate() {
        axpy_scalar(y, a, &rows[p * stride..][..n]);
    }
}

/// Scalar twin of [`dot`]: eight running sums, combined pairwise.
pub fn dot_scalar(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

/// Scalar twin of [`axpy`].
pub fn axpy_scalar(y: &mut [f32], alpha: f32, x: &[f32]) {
    for (o, v) in y.iter_mut().zip(x) {
        *o += alpha * v;
    }
}

/// A dot product kernel, safe to call.
pub type SafeDot = fn(&[f32], &[f32]) -> f32;

/// The dot products this CPU can run, by name, for tests against the twin.
pub fn available() -> Vec<(&'static str, SafeDot)> {
    let mut v: Vec<(&'static str, SafeDot)> = vec![("scalar", dot_scalar)];
    #[cfg(target_arch = "x86_64")]
    {
        if crate::qdot::x86::has_avx2() {
            // SAFETY: checked just above.
            v.push(("avx2", |a, b| unsafe { x86::dot_avx2(a, b) }));
        }
        if crate::qdot::x86::has_avx512() {
            // SAFETY: checked just above.
            v.push(("avx512", |a, b| unsafe { x86::dot_avx512(a, b) }));
        }
    }
    v
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// The strided kernels: the single ones in a loop, inlined (same features).
    macro_rules! strided {
        ($dots:ident, $axpys:ident, $dot:ident, $axpy:ident, $feat:literal) => {
            /// # Safety
            /// CPU features as named; `rows` holds `out.len()` runs of `q.len()` at `stride`.
            #[target_feature(enable = $feat)]
            pub unsafe fn $dots(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
                let n = q.len();
                for (p, o) in out.iter_mut().enumerate() {
                    *o = $dot(
                        q,
                        std::slice::from_raw_parts(rows.as_ptr().add(p * stride), n),
                    );
                }
            }

            /// # Safety
            /// CPU features as named; `rows` holds `w.len()` runs of `y.len()` at `stride`.
            #[target_feature(enable = $feat)]
            pub unsafe fn $axpys(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
                let n = y.len();
                for (p, &a) in w.iter().enumerate() {
                    $axpy(
                        y,
                        a,
                        std::slice::from_raw_parts(rows.as_ptr().add(p * stride), n),
                    );
                }
            }
        };
    }
    strided!(dots_avx2, axpys_avx2, dot_avx2, axpy_avx2, "avx2,fma");
    strided!(
        dots_avx512,
        axpys_avx512,
        dot_avx512,
        axpy_avx512,
        "avx512f"
    );

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let v = _mm256_add_ps(acc0, acc1);
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpy_avx2(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let va = _mm256_set1_ps(alpha);
        let mut i = 0;
        while i + 8 <= n {
            let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
            i += 8;
        }
        while i < n {
            y[i] += alpha * x[i];
            i += 1;
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        while i + 32 <= n {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            i += 32;
        }
        if i < n {
            // Masked tail: up to two partial registers.
            let r = (n - i).min(16);
            let m = (1u32 << r).wrapping_sub(1) as u16;
            let m = if r == 16 { u16::MAX } else { m };
            acc0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc0,
            );
            i += r;
            if i < n {
                let r = n - i;
                let m = ((1u32 << r) - 1) as u16;
                acc1 = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(m, pa.add(i)),
                    _mm512_maskz_loadu_ps(m, pb.add(i)),
                    acc1,
                );
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpy_avx512(y: &mut [f32], alpha: f32, x: &[f32]) {
        let n = y.len().min(x.len());
        let (py, px) = (y.as_mut_ptr(), x.as_ptr());
        let va = _mm512_set1_ps(alpha);
        let mut i = 0;
        while i + 16 <= n {
            let r = _mm512_fmadd_ps(va, _mm512_loadu_ps(px.add(i)), _mm512_loadu_ps(py.add(i)));
            _mm512_storeu_ps(py.add(i), r);
            i += 16;
        }
        if i < n {
            let m = ((1u32 << (n - i)) - 1) as u16;
            let r = _mm512_fmadd_ps(
                va,
                _mm512_maskz_loadu_ps(m, px.add(i)),
                _mm512_maskz_loadu_ps(m, py.add(i)),
            );
            _mm512_mask_storeu_ps(py.add(i), m, r);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simd_dots_equal_the_scalar_twin_at_every_length() {
        let a: Vec<f32> = (0..300)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 13.0)
            .collect();
        let b: Vec<f32> = (0..300)
            .map(|i| ((i * 53 % 89) as f32 - 44.0) / 7.0)
            .collect();
        for n in 0..300 {
            let want = dot_scalar(&a[..n], &b[..n]);
            let mag: f32 = a[..n].iter().zip(&b[..n]).map(|(x, y)| (x * y).abs()).sum();
            for (name, f) in available() {
                let got = f(&a[..n], &b[..n]);
                assert!(
                    (got - want).abs() <= 1e-5 * mag + 1e-6,
                    "{name} n={n}: {got} vs {want}"
                );
            }
            // Strided: three runs of n at a stride of n + 3, against the twins.
            if n > 0 && 3 * n + 6 <= 300 {
                let mut got = [0f32; 3];
                dot_strided(&a[..n], &b, n + 3, &mut got);
                let mut want = [0f32; 3];
                dots_scalar(&a[..n], &b, n + 3, &mut want);
                let mut y: Vec<f32> = a[..n].to_vec();
                let mut y2 = y.clone();
                axpy_strided(&mut y, &[0.5, -1.25, 2.0], &b, n + 3);
                axpys_scalar(&mut y2, &[0.5, -1.25, 2.0], &b, n + 3);
                for (p, q) in got.iter().zip(&want).chain(y.iter().zip(&y2)) {
                    assert!(
                        (p - q).abs() <= 1e-4 * q.abs().max(1.0),
                        "strided n={n}: {p} vs {q}"
                    );
                }
            }
            let mut y: Vec<f32> = b[..n].to_vec();
            let mut y2 = y.clone();
            axpy(&mut y, 0.75, &a[..n]);
            axpy_scalar(&mut y2, 0.75, &a[..n]);
            for (p, q) in y.iter().zip(&y2) {
                assert!((p - q).abs() <= 1e-5 * q.abs().max(1.0), "axpy n={n}");
            }
        }
    }
}
