//! Weight rows of the 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) rewritten as
//! `w = s * q + o`: one signed byte `q` per element and an f32 scale `s` and offset `o` per
//! 16 elements (the K-quants have their own rewrite, [`super::kq`]). Each format's own integer
//! quants become `q` (Q4_0, Q5_0 and Q8_0 centred as their definitions say, so their `o` is 0
//! and no large offset cancels against the products), so `s * q + o` equals the format's
//! dequantized value: every product involved is exact in f32, see the tests.

use crate::dtype::DType;
use crate::quants::{read_f16, BlockFormat, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0};

/// Whether rows of `dtype` can be converted.
pub fn supported(dtype: DType) -> bool {
    matches!(
        dtype,
        DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0
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

/// Legacy fifth bits (worth 16) into nibbles `q` (0..16): bit `i` of the little-endian word is
/// element `i`'s. Eight at a time: each bit of a byte, replicated into every byte and masked to
/// its own position, becomes 0x80 or more in its byte after adding 0x7f (no byte carries), so
/// `>> 7` spreads it. `centred`: the result minus 16 (Q5_0's zero point): a clear fifth bit
/// makes the byte `nibble - 16`, i.e. `nibble | 0xf0`; a set one leaves the nibble.
#[inline(always)]
fn fifth_bits(qh: &[u8], centred: bool, q: &mut [i8]) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    for (&bits, q) in qh[..4].iter().zip(q.chunks_exact_mut(8)) {
        let each = (bits as u64 * 0x0101_0101_0101_0101) & 0x8040_2010_0804_0201;
        let spread = ((each + 0x7f7f_7f7f_7f7f_7f7f) >> 7) & ONES;
        let high = if centred {
            (spread ^ ONES) * 0xf0
        } else {
            spread << 4
        };
        let mut v = [0u8; 8];
        for (v, &x) in v.iter_mut().zip(q.iter()) {
            *v = x as u8;
        }
        let sum = (u64::from_le_bytes(v) | high).to_le_bytes();
        for (x, &s) in q.iter_mut().zip(&sum) {
            *x = s as i8;
        }
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
    nibbles(&b[6..22], 0, q);
    fifth_bits(&b[2..6], true, q);
    s.fill(read_f16(b));
    o.fill(0.0);
}

fn q5_1(b: &[u8], q: &mut [i8], s: &mut [f32], o: &mut [f32]) {
    nibbles(&b[8..24], 0, q);
    fifth_bits(&b[4..8], false, q);
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
            DType::Q4_1 | DType::Q5_1 => (dtype.block_bytes(), &[0, 2]),
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
