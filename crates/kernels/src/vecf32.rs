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

/// Panics unless `n` runs of `width` values, `stride` apart, fit in `rows`.
fn check_rows(n: usize, stride: usize, width: usize, rows: &[f32], what: &str) {
    if let Some(last) = n.checked_sub(1) {
        assert!(
            last * stride + width <= rows.len(),
            "{what}: rows too short"
        );
    }
}

/// `out[p] = q · rows[p * stride..][..q.len()]` for every `p < out.len()`: attention's
/// scores of one query against a run of keys, with one dispatch for all of them.
pub fn dot_strided(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
    check_rows(out.len(), stride, q.len(), rows, "dot_strided");
    // SAFETY: the table holds only kernels this CPU supports; bounds checked above.
    unsafe { (table().dots)(q, rows, stride, out) }
}

/// `y += Σ_p w[p] · rows[p * stride..][..y.len()]`, `p` in order (the same as one [`axpy`]
/// per `p`): attention's weighted sum of values, with one dispatch for all of them.
pub fn axpy_strided(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
    check_rows(w.len(), stride, y.len(), rows, "axpy_strided");
    // SAFETY: as in `dot_strided`.
    unsafe { (table().axpys)(y, w, rows, stride) }
}

/// [`dot_strided`] for two queries against the same keys, reading each key once:
/// `out0[p] = q0 · row p`, `out1[p] = q1 · row p`, each the bits [`dot_strided`] gives it.
pub fn dot_strided2(
    q0: &[f32],
    q1: &[f32],
    rows: &[f32],
    stride: usize,
    out0: &mut [f32],
    out1: &mut [f32],
) {
    assert!(
        q0.len() == q1.len() && out0.len() == out1.len(),
        "dot_strided2: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::qdot::x86::has_avx512() && q0.len() == 192 {
        check_rows(out0.len(), stride, 192, rows, "dot_strided2");
        // SAFETY: AVX-512 present; bounds checked above.
        return unsafe { x86::dots2_regs::<12>(q0, q1, rows, stride, out0, out1) };
    }
    dot_strided(q0, rows, stride, out0);
    dot_strided(q1, rows, stride, out1);
}

/// [`axpy_strided`] for two outputs over the same rows, reading each row once:
/// `y0 += Σ_p w0[p] · row p`, `y1 += Σ_p w1[p] · row p`, each the bits [`axpy_strided`]
/// gives it.
pub fn axpy_strided2(
    y0: &mut [f32],
    y1: &mut [f32],
    w0: &[f32],
    w1: &[f32],
    rows: &[f32],
    stride: usize,
) {
    assert!(
        y0.len() == y1.len() && w0.len() == w1.len(),
        "axpy_strided2: shapes"
    );
    #[cfg(target_arch = "x86_64")]
    if crate::qdot::x86::has_avx512() && y0.len() == 128 {
        check_rows(w0.len(), stride, 128, rows, "axpy_strided2");
        // SAFETY: AVX-512 present; bounds checked above.
        return unsafe { x86::axpys2_regs::<8>(y0, y1, w0, w1, rows, stride) };
    }
    axpy_strided(y0, w0, rows, stride);
    axpy_strided(y1, w1, rows, stride);
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
    strided!(
        dots_avx2_loop,
        axpys_avx2_loop,
        dot_avx2,
        axpy_avx2,
        "avx2,fma"
    );

    /// [`dots_avx2_loop`], for rows of 32 or 64 with the query held in registers: per key the
    /// same FMAs in the same order as [`dot_avx2`] (chunk `j` of 8 into accumulator `j % 2`)
    /// and the same final sum, so the same bits.
    ///
    /// # Safety
    /// As [`dots_avx2_loop`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dots_avx2(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
        match q.len() {
            32 => dots_regs_avx2::<4>(q, rows, stride, out),
            64 => dots_regs_avx2::<8>(q, rows, stride, out),
            _ => dots_avx2_loop(q, rows, stride, out),
        }
    }

    /// [`axpys_avx2_loop`], for rows of 32 or 64 with `y` held in registers.
    ///
    /// # Safety
    /// As [`axpys_avx2_loop`].
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn axpys_avx2(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
        match y.len() {
            32 => axpys_regs_avx2::<4>(y, w, rows, stride),
            64 => axpys_regs_avx2::<8>(y, w, rows, stride),
            _ => axpys_avx2_loop(y, w, rows, stride),
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dots_regs_avx2<const R: usize>(
        q: &[f32],
        rows: &[f32],
        stride: usize,
        out: &mut [f32],
    ) {
        debug_assert_eq!(q.len(), 8 * R);
        let mut qv = [_mm256_setzero_ps(); R];
        for (j, v) in qv.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(q.as_ptr().add(8 * j));
        }
        let base = rows.as_ptr();
        for (p, o) in out.iter_mut().enumerate() {
            let k = base.add(p * stride);
            let mut acc = [_mm256_setzero_ps(); 2];
            for (j, v) in qv.iter().enumerate() {
                acc[j % 2] = _mm256_fmadd_ps(*v, _mm256_loadu_ps(k.add(8 * j)), acc[j % 2]);
            }
            *o = hsum_avx2(_mm256_add_ps(acc[0], acc[1]));
        }
    }

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn axpys_regs_avx2<const R: usize>(
        y: &mut [f32],
        w: &[f32],
        rows: &[f32],
        stride: usize,
    ) {
        debug_assert_eq!(y.len(), 8 * R);
        let mut yv = [_mm256_setzero_ps(); R];
        for (j, v) in yv.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(y.as_ptr().add(8 * j));
        }
        let base = rows.as_ptr();
        for (p, &a) in w.iter().enumerate() {
            let va = _mm256_set1_ps(a);
            let x = base.add(p * stride);
            for (j, v) in yv.iter_mut().enumerate() {
                *v = _mm256_fmadd_ps(va, _mm256_loadu_ps(x.add(8 * j)), *v);
            }
        }
        for (j, v) in yv.iter().enumerate() {
            _mm256_storeu_ps(y.as_mut_ptr().add(8 * j), *v);
        }
    }

    /// The sum of `v`'s lanes, in [`dot_avx2`]'s order.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn hsum_avx2(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
    strided!(
        dots_avx512_loop,
        axpys_avx512_loop,
        dot_avx512,
        axpy_avx512,
        "avx512f"
    );

    /// [`dots_avx512_loop`], for rows of 32, 64, 96, 128 or 192 (attention heads; 192 is
    /// DeepSeek's expanded MLA key, 128 + 64 rope) with the query
    /// held in registers: per key the same FMAs in the same order as [`dot_avx512`] (chunk
    /// `j` of 16 into accumulator `j % 2`), so the same bits, without reloading the query.
    ///
    /// # Safety
    /// As [`dots_avx512_loop`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots_avx512(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
        match q.len() {
            32 => dots_regs::<2>(q, rows, stride, out),
            64 => dots_regs::<4>(q, rows, stride, out),
            96 => dots_regs::<6>(q, rows, stride, out),
            128 => dots_regs::<8>(q, rows, stride, out),
            192 => dots_regs::<12>(q, rows, stride, out),
            _ => dots_avx512_loop(q, rows, stride, out),
        }
    }

    /// [`axpys_avx512_loop`], for rows of 32, 64, 96 or 128 with `y` held in registers
    /// across all rows: per element the same FMAs in the same order as [`axpy_avx512`].
    ///
    /// # Safety
    /// As [`axpys_avx512_loop`].
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpys_avx512(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
        match y.len() {
            32 => axpys_regs::<2>(y, w, rows, stride),
            64 => axpys_regs::<4>(y, w, rows, stride),
            96 => axpys_regs::<6>(y, w, rows, stride),
            128 => axpys_regs::<8>(y, w, rows, stride),
            _ => axpys_avx512_loop(y, w, rows, stride),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dots_regs<const R: usize>(q: &[f32], rows: &[f32], stride: usize, out: &mut [f32]) {
        debug_assert_eq!(q.len(), 16 * R);
        let mut qv = [_mm512_setzero_ps(); R];
        for (j, v) in qv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(q.as_ptr().add(16 * j));
        }
        let base = rows.as_ptr();
        for (p, o) in out.iter_mut().enumerate() {
            let k = base.add(p * stride);
            let mut acc = [_mm512_setzero_ps(); 2];
            for (j, v) in qv.iter().enumerate() {
                acc[j % 2] = _mm512_fmadd_ps(*v, _mm512_loadu_ps(k.add(16 * j)), acc[j % 2]);
            }
            *o = _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
        }
    }

    /// [`dots_regs`] for two queries: per key and query the same FMAs in the same order.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn dots2_regs<const R: usize>(
        q0: &[f32],
        q1: &[f32],
        rows: &[f32],
        stride: usize,
        out0: &mut [f32],
        out1: &mut [f32],
    ) {
        debug_assert!(q0.len() == 16 * R && q1.len() == 16 * R);
        let qa: [__m512; R] = std::array::from_fn(|j| _mm512_loadu_ps(q0.as_ptr().add(16 * j)));
        let qb: [__m512; R] = std::array::from_fn(|j| _mm512_loadu_ps(q1.as_ptr().add(16 * j)));
        let base = rows.as_ptr();
        for (p, (o0, o1)) in out0.iter_mut().zip(out1.iter_mut()).enumerate() {
            let k = base.add(p * stride);
            let mut a = [_mm512_setzero_ps(); 2];
            let mut b = [_mm512_setzero_ps(); 2];
            for j in 0..R {
                let kv = _mm512_loadu_ps(k.add(16 * j));
                a[j % 2] = _mm512_fmadd_ps(qa[j], kv, a[j % 2]);
                b[j % 2] = _mm512_fmadd_ps(qb[j], kv, b[j % 2]);
            }
            *o0 = _mm512_reduce_add_ps(_mm512_add_ps(a[0], a[1]));
            *o1 = _mm512_reduce_add_ps(_mm512_add_ps(b[0], b[1]));
        }
    }

    /// [`axpys_regs`] for two outputs: per element and output the same FMAs in the same order.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn axpys2_regs<const R: usize>(
        y0: &mut [f32],
        y1: &mut [f32],
        w0: &[f32],
        w1: &[f32],
        rows: &[f32],
        stride: usize,
    ) {
        debug_assert!(y0.len() == 16 * R && y1.len() == 16 * R);
        let mut ya: [__m512; R] = std::array::from_fn(|j| _mm512_loadu_ps(y0.as_ptr().add(16 * j)));
        let mut yb: [__m512; R] = std::array::from_fn(|j| _mm512_loadu_ps(y1.as_ptr().add(16 * j)));
        let base = rows.as_ptr();
        for (p, (&a, &b)) in w0.iter().zip(w1).enumerate() {
            let (va, vb) = (_mm512_set1_ps(a), _mm512_set1_ps(b));
            let x = base.add(p * stride);
            for j in 0..R {
                let xv = _mm512_loadu_ps(x.add(16 * j));
                ya[j] = _mm512_fmadd_ps(va, xv, ya[j]);
                yb[j] = _mm512_fmadd_ps(vb, xv, yb[j]);
            }
        }
        for j in 0..R {
            _mm512_storeu_ps(y0.as_mut_ptr().add(16 * j), ya[j]);
            _mm512_storeu_ps(y1.as_mut_ptr().add(16 * j), yb[j]);
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn axpys_regs<const R: usize>(y: &mut [f32], w: &[f32], rows: &[f32], stride: usize) {
        debug_assert_eq!(y.len(), 16 * R);
        let mut yv = [_mm512_setzero_ps(); R];
        for (j, v) in yv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(y.as_ptr().add(16 * j));
        }
        let base = rows.as_ptr();
        for (p, &a) in w.iter().enumerate() {
            let va = _mm512_set1_ps(a);
            let x = base.add(p * stride);
            for (j, v) in yv.iter_mut().enumerate() {
                *v = _mm512_fmadd_ps(va, _mm512_loadu_ps(x.add(16 * j)), *v);
            }
        }
        for (j, v) in yv.iter().enumerate() {
            _mm512_storeu_ps(y.as_mut_ptr().add(16 * j), *v);
        }
    }

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
        let mut sum = hsum_avx2(_mm256_add_ps(acc0, acc1));
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

    /// The paired kernels give each query / output exactly the bits of the single ones.
    #[test]
    fn paired_strided_kernels_equal_two_single_calls() {
        let rows: Vec<f32> = (0..41 * 200)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for n in [64, 128, 192] {
            let stride = n + 3;
            let q0: Vec<f32> = (0..n)
                .map(|i| ((i * 31 % 67) as f32 - 33.0) / 11.0)
                .collect();
            let q1: Vec<f32> = (0..n)
                .map(|i| ((i * 17 % 71) as f32 - 35.0) / 13.0)
                .collect();
            let (mut a0, mut a1) = (vec![0f32; 40], vec![0f32; 40]);
            dot_strided2(&q0, &q1, &rows, stride, &mut a0, &mut a1);
            let (mut b0, mut b1) = (vec![0f32; 40], vec![0f32; 40]);
            dot_strided(&q0, &rows, stride, &mut b0);
            dot_strided(&q1, &rows, stride, &mut b1);
            assert_eq!((bits(&a0), bits(&a1)), (bits(&b0), bits(&b1)), "dots n={n}");
            assert_ne!(bits(&a0), bits(&a1), "n={n}: the two queries differ");
            let w0: Vec<f32> = (0..40)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 5.0)
                .collect();
            let w1: Vec<f32> = (0..40)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) / 3.0)
                .collect();
            let (mut y0, mut y1) = (q0.clone(), q1.clone());
            axpy_strided2(&mut y0, &mut y1, &w0, &w1, &rows, stride);
            let (mut z0, mut z1) = (q0.clone(), q1.clone());
            axpy_strided(&mut z0, &w0, &rows, stride);
            axpy_strided(&mut z1, &w1, &rows, stride);
            assert_eq!(
                (bits(&y0), bits(&y1)),
                (bits(&z0), bits(&z1)),
                "axpys n={n}"
            );
            assert_ne!(y0, q0, "n={n}: nothing added");
        }
    }

    /// The AVX-512 strided kernels that hold a head in registers give the same bits as the
    /// loop over the single-vector kernels they replace (attention's scores and value sums
    /// must not change with the head size's code path).
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn register_held_heads_equal_the_loop_bit_for_bit() {
        if !crate::qdot::x86::has_avx512() {
            return;
        }
        let rows: Vec<f32> = (0..40 * 200)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        for n in [32, 48, 64, 96, 128, 192] {
            let q: Vec<f32> = (0..n)
                .map(|i| ((i * 31 % 67) as f32 - 33.0) / 11.0)
                .collect();
            let w: Vec<f32> = (0..37)
                .map(|i| ((i * 13 % 29) as f32 - 14.0) / 5.0)
                .collect();
            let stride = n + 5;
            let (mut a, mut b) = (vec![0f32; 37], vec![0f32; 37]);
            let (mut ya, mut yb) = (q.clone(), q.clone());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let (mut a2, mut b2) = (vec![0f32; 37], vec![0f32; 37]);
            let (mut ya2, mut yb2) = (q.clone(), q.clone());
            // SAFETY: AVX-512 (and so AVX2 + FMA) checked above; 37 runs of n at stride n + 5
            // fit in `rows`.
            unsafe {
                x86::dots_avx512(&q, &rows, stride, &mut a);
                x86::dots_avx512_loop(&q, &rows, stride, &mut b);
                x86::axpys_avx512(&mut ya, &w, &rows, stride);
                x86::axpys_avx512_loop(&mut yb, &w, &rows, stride);
                x86::dots_avx2(&q, &rows, stride, &mut a2);
                x86::dots_avx2_loop(&q, &rows, stride, &mut b2);
                x86::axpys_avx2(&mut ya2, &w, &rows, stride);
                x86::axpys_avx2_loop(&mut yb2, &w, &rows, stride);
            }
            assert_eq!(bits(&a), bits(&b), "dots n={n}");
            assert_eq!(bits(&ya), bits(&yb), "axpys n={n}");
            assert_eq!(bits(&a2), bits(&b2), "avx2 dots n={n}");
            assert_eq!(bits(&ya2), bits(&yb2), "avx2 axpys n={n}");
            assert!(
                a.iter().any(|v| *v != 0.0) && ya != q,
                "n={n}: nothing computed"
            );
        }
    }
}
