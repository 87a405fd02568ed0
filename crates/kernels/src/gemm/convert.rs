//! Weight rows of every integer format rewritten as `w = s * q + o`: one signed byte `q` per
//! element and an f32 scale `s` and offset `o` per 16 elements (the finest sub-block any
//! format has). Each format's own integer quants become `q` (the zero-centred ones, Q4_0,
//! Q5_0, Q8_0, Q3_K, Q6_K, centred as their definitions say, so their `o` is 0 and no large
//! offset cancels against the products), so `s * q + o` equals the format's dequantized
//! value: every product involved is exact in f32 (at most 24 significant bits), see the tests.

use crate::dtype::DType;
use crate::quants::kquants::{q3k_scales, scale_min_k4};
use crate::quants::{read_f16, BlockFormat, Q2K, Q3K, Q4K, Q4_0, Q4_1, Q5K, Q5_0, Q5_1, Q6K, Q8_0};

/// Whether rows of `dtype` can be converted.
pub fn supported(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q4_0
            | DType::Q4_1
            | DType::Q5_0
            | DType::Q5_1
            | DType::Q8_0
            | DType::Q2K
            | DType::Q3K
            | DType::Q4K
            | DType::Q5K
            | DType::Q6K
    )
}

/// Convert one stored row (`src`, whole blocks) into `q` (one byte per element) and `s` / `o`
/// (one per 16 elements). The slices are exactly as long as the row's elements need.
/// Formats outside [`supported`] leave the outputs untouched (callers check first).
pub fn convert_row(dtype: DType, src: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    match dtype {
        DType::Q4_0 => blocks::<Q4_0>(src, q, s, o, q4_0),
        DType::Q4_1 => blocks::<Q4_1>(src, q, s, o, q4_1),
        DType::Q5_0 => blocks::<Q5_0>(src, q, s, o, q5_0),
        DType::Q5_1 => blocks::<Q5_1>(src, q, s, o, q5_1),
        DType::Q8_0 => blocks::<Q8_0>(src, q, s, o, q8_0),
        DType::Q2K => blocks::<Q2K>(src, q, s, o, q2k),
        DType::Q3K => blocks::<Q3K>(src, q, s, o, q3k),
        DType::Q4K => blocks::<Q4K>(src, q, s, o, q4k),
        DType::Q5K => blocks::<Q5K>(src, q, s, o, q5k),
        DType::Q6K => blocks::<Q6K>(src, q, s, o, q6k),
        _ => {}
    }
}

#[inline(always)]
fn blocks<F: BlockFormat>(
    src: &[u8],
    q: &mut [i8],
    s: &mut [f32],
    o: &mut [f32],
    f: impl Fn(&[u8], &mut [i8], &mut [f32], &mut [f32]),
) {
    let subs = F::BLOCK / 16;
    for (((b, q), s), o) in src
        .chunks_exact(F::BYTES)
        .zip(q.chunks_exact_mut(F::BLOCK))
        .zip(s.chunks_exact_mut(subs))
        .zip(o.chunks_exact_mut(subs))
    {
        f(b, q, s, o);
    }
}

/// Legacy nibbles minus `zero`: byte `j` holds element `j` (low) and `j + 16` (high).
#[inline(always)]
fn nibbles(qs: &[u8], zero: i8, q: &mut [i8]) {
    let (lo, hi) = q.split_at_mut(16);
    for ((&b, l), h) in qs[..16].iter().zip(lo).zip(hi) {
        *l = (b & 0x0f) as i8 - zero;
        *h = (b >> 4) as i8 - zero;
    }
}

/// Legacy fifth bits (worth 16): bit `i` of the little-endian word is element `i`'s.
#[inline(always)]
fn fifth_bits(qh: &[u8], q: &mut [i8]) {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    for (i, v) in q.iter_mut().enumerate() {
        *v += ((((h >> i) & 1) as u8) << 4) as i8;
    }
}

fn q4_0(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    nibbles(&b[2..18], 8, q);
    s.fill(read_f16(b));
    o.fill(0.0);
}

fn q4_1(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    nibbles(&b[4..20], 0, q);
    s.fill(read_f16(b));
    o.fill(read_f16(&b[2..]));
}

fn q5_0(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    nibbles(&b[6..22], 16, q);
    fifth_bits(&b[2..6], q);
    s.fill(read_f16(b));
    o.fill(0.0);
}

fn q5_1(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    nibbles(&b[8..24], 0, q);
    fifth_bits(&b[4..8], q);
    s.fill(read_f16(b));
    o.fill(read_f16(&b[2..]));
}

fn q8_0(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    for (v, &x) in q.iter_mut().zip(&b[2..34]) {
        *v = x as i8;
    }
    s.fill(read_f16(b));
    o.fill(0.0);
}

fn q2k(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    let (d, dmin) = (read_f16(&b[80..]), read_f16(&b[82..]));
    let (scales, qs) = (&b[..16], &b[16..80]);
    for (sb, (((y, &sc), s), o)) in q
        .chunks_exact_mut(16)
        .zip(scales)
        .zip(s.iter_mut())
        .zip(o.iter_mut())
        .enumerate()
    {
        let shift = 2 * ((sb / 2) % 4);
        let src = &qs[32 * (sb / 8) + 16 * (sb % 2)..][..16];
        for (v, &x) in y.iter_mut().zip(src) {
            *v = ((x >> shift) & 3) as i8;
        }
        *s = d * (sc & 0x0f) as f32;
        *o = -(dmin * (sc >> 4) as f32);
    }
}

fn q3k(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    let (hmask, qs) = (&b[..32], &b[32..96]);
    let scales = q3k_scales(&b[96..108]);
    let d = read_f16(&b[108..]);
    for (sb, (((y, &sc), s), o)) in q
        .chunks_exact_mut(16)
        .zip(&scales)
        .zip(s.iter_mut())
        .zip(o.iter_mut())
        .enumerate()
    {
        let j = (sb / 2) % 4;
        let hbit = 4 * (sb / 8) + j;
        let src = &qs[32 * (sb / 8) + 16 * (sb % 2)..][..16];
        let hm = &hmask[16 * (sb % 2)..][..16];
        for ((v, &x), &h) in y.iter_mut().zip(src).zip(hm) {
            // The high bit set means no -4.
            *v = ((x >> (2 * j)) & 3) as i8 - if (h >> hbit) & 1 != 0 { 0 } else { 4 };
        }
        *s = d * sc as f32;
        *o = 0.0;
    }
}

/// Q4_K / Q5_K: chunk `c` of 32 bytes holds sub-blocks `2c` (low nibbles) and `2c + 1`.
#[inline(always)]
fn k4(b: &[u8], qs: &[u8], qh: Option<&[u8]>, q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    let (d, dmin) = (read_f16(b), read_f16(&b[2..]));
    let scales = &b[4..16];
    for (c, (y, x)) in q.chunks_exact_mut(64).zip(qs.chunks_exact(32)).enumerate() {
        let (lo, hi) = y.split_at_mut(32);
        for ((&v, l), h) in x.iter().zip(lo.iter_mut()).zip(hi.iter_mut()) {
            *l = (v & 0x0f) as i8;
            *h = (v >> 4) as i8;
        }
        if let Some(qh) = qh {
            for (i, &bits) in qh.iter().enumerate() {
                lo[i] |= (((bits >> (2 * c)) & 1) << 4) as i8;
                hi[i] |= (((bits >> (2 * c + 1)) & 1) << 4) as i8;
            }
        }
        for half in 0..2 {
            let (sc, m) = scale_min_k4(2 * c + half, scales);
            let (dl, ml) = (d * sc as f32, dmin * m as f32);
            s[4 * c + 2 * half..][..2].fill(dl);
            o[4 * c + 2 * half..][..2].fill(-ml);
        }
    }
}

fn q4k(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    k4(b, &b[16..144], None, q, s, o);
}

fn q5k(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    k4(b, &b[48..176], Some(&b[16..48]), q, s, o);
}

fn q6k(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = read_f16(&b[208..]);
    for (h, y) in q.chunks_exact_mut(128).enumerate() {
        let (ql, qh) = (&ql[64 * h..][..64], &qh[32 * h..][..32]);
        for (j, yj) in y.chunks_exact_mut(32).enumerate() {
            let lows = &ql[32 * (j % 2)..][..32];
            let nib = 4 * (j / 2);
            for ((v, &lb), &hb) in yj.iter_mut().zip(lows).zip(qh) {
                *v = (((lb >> nib) & 0x0f) | (((hb >> (2 * j)) & 3) << 4)) as i8 - 32;
            }
        }
    }
    for ((s, o), &sc) in s.iter_mut().zip(o.iter_mut()).zip(scales) {
        *s = d * (sc as i8) as f32;
        *o = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn byte(&mut self) -> u8 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 24) as u8
        }
    }

    /// Random blocks with sane f16 scales (random bytes elsewhere exercise every bit).
    fn random_row(dtype: DType, k: usize, rng: &mut Rng) -> Vec<u8> {
        let mut row: Vec<u8> = (0..dtype.row_bytes(k).unwrap())
            .map(|_| rng.byte())
            .collect();
        let (bytes, f16_at): (usize, &[usize]) = match dtype {
            DType::Q4_0 | DType::Q8_0 => (dtype.block_bytes(), &[0]),
            DType::Q5_0 => (22, &[0]),
            DType::Q4_1 | DType::Q5_1 | DType::Q4K | DType::Q5K => (dtype.block_bytes(), &[0, 2]),
            DType::Q2K => (84, &[80, 82]),
            DType::Q3K => (110, &[108]),
            DType::Q6K => (210, &[208]),
            _ => unreachable!(),
        };
        for b in row.chunks_exact_mut(bytes) {
            for &at in f16_at {
                let v = half::f16::from_f32((rng.byte() as f32 - 128.0) / 4096.0);
                b[at..at + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        row
    }

    #[test]
    fn converted_rows_equal_the_dequantized_rows() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        for dtype in DType::ALL.into_iter().filter(|&d| supported(d)) {
            let k = 512;
            for _ in 0..8 {
                let row = random_row(dtype, k, &mut rng);
                let mut want = vec![0f32; k];
                dtype.dequantize_row(&row, &mut want).unwrap();
                let (mut q, mut s, mut o) = (vec![0i8; k], vec![0f32; k / 16], vec![0f32; k / 16]);
                convert_row(dtype, &row, &mut q, &mut s, &mut o);
                for i in 0..k {
                    let got = s[i / 16] * q[i] as f32 + o[i / 16];
                    assert_eq!(
                        got,
                        want[i],
                        "{dtype} element {i}: q {} s {} o {}",
                        q[i],
                        s[i / 16],
                        o[i / 16]
                    );
                }
            }
        }
    }
}
