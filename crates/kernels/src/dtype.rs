//! The tensor element types mixture understands, with their ggml ids and block layouts.
//!
//! One runtime enum, one dispatch point: every per-format operation goes through
//! [`DType::dequantize_row`] (and later the fast kernels) instead of a `match` in model code.

use std::fmt;

/// Errors from the kernels: shape and format mismatches on the slices they are given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KernelError {
    #[error("{dtype}: a row of {n} elements is not a whole number of {block}-element blocks")]
    RaggedRow {
        dtype: DType,
        n: usize,
        block: usize,
    },
    #[error("{dtype}: expected {expected} bytes for {n} elements, got {got}")]
    ByteLength {
        dtype: DType,
        n: usize,
        expected: usize,
        got: usize,
    },
    #[error("tensor type {0} cannot be dequantized by mixture yet")]
    Unsupported(DType),
}

/// Element type of a stored tensor. The discriminant-free enum maps to ggml's numeric ids
/// through [`DType::from_ggml_id`] / [`DType::ggml_id`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F16,
    BF16,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    Q8K,
    /// FP8 E4M3 (DeepSeek-V3/R1 native checkpoints); one byte per element. Block scales are
    /// applied by the loader, not here.
    F8E4M3,
}

impl DType {
    /// All types, for listing and tests.
    pub const ALL: [DType; 15] = [
        DType::F32,
        DType::F16,
        DType::BF16,
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
        DType::Q8K,
        DType::F8E4M3,
    ];

    /// Map a ggml type id (as stored in GGUF tensor infos) to a type; `None` if unknown here.
    pub fn from_ggml_id(id: u32) -> Option<DType> {
        Some(match id {
            0 => DType::F32,
            1 => DType::F16,
            2 => DType::Q4_0,
            3 => DType::Q4_1,
            6 => DType::Q5_0,
            7 => DType::Q5_1,
            8 => DType::Q8_0,
            10 => DType::Q2K,
            11 => DType::Q3K,
            12 => DType::Q4K,
            13 => DType::Q5K,
            14 => DType::Q6K,
            15 => DType::Q8K,
            30 => DType::BF16,
            _ => return None,
        })
    }

    /// The ggml id of this type, if ggml has one.
    pub fn ggml_id(self) -> Option<u32> {
        Some(match self {
            DType::F32 => 0,
            DType::F16 => 1,
            DType::Q4_0 => 2,
            DType::Q4_1 => 3,
            DType::Q5_0 => 6,
            DType::Q5_1 => 7,
            DType::Q8_0 => 8,
            DType::Q2K => 10,
            DType::Q3K => 11,
            DType::Q4K => 12,
            DType::Q5K => 13,
            DType::Q6K => 14,
            DType::Q8K => 15,
            DType::BF16 => 30,
            DType::F8E4M3 => return None,
        })
    }

    /// Name of a ggml type id, including those mixture cannot read (for error messages).
    pub fn ggml_id_name(id: u32) -> &'static str {
        match id {
            4 => "Q4_2 (removed)",
            5 => "Q4_3 (removed)",
            9 => "Q8_1",
            16 => "IQ2_XXS",
            17 => "IQ2_XS",
            18 => "IQ3_XXS",
            19 => "IQ1_S",
            20 => "IQ4_NL",
            21 => "IQ3_S",
            22 => "IQ2_S",
            23 => "IQ4_XS",
            24 => "I8",
            25 => "I16",
            26 => "I32",
            27 => "I64",
            28 => "F64",
            29 => "IQ1_M",
            34 => "TQ1_0",
            35 => "TQ2_0",
            39 => "MXFP4",
            _ => match DType::from_ggml_id(id) {
                Some(t) => t.name(),
                None => "unknown",
            },
        }
    }

    /// Human name as ggml spells it.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::Q4_0 => "Q4_0",
            DType::Q4_1 => "Q4_1",
            DType::Q5_0 => "Q5_0",
            DType::Q5_1 => "Q5_1",
            DType::Q8_0 => "Q8_0",
            DType::Q2K => "Q2_K",
            DType::Q3K => "Q3_K",
            DType::Q4K => "Q4_K",
            DType::Q5K => "Q5_K",
            DType::Q6K => "Q6_K",
            DType::Q8K => "Q8_K",
            DType::F8E4M3 => "F8_E4M3",
        }
    }

    /// Elements per block (1 for plain float types).
    pub fn block_size(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 | DType::F8E4M3 => 1,
            DType::Q4_0 | DType::Q4_1 | DType::Q5_0 | DType::Q5_1 | DType::Q8_0 => 32,
            DType::Q2K | DType::Q3K | DType::Q4K | DType::Q5K | DType::Q6K | DType::Q8K => 256,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::F8E4M3 => 1,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q5_0 => 22,
            DType::Q5_1 => 24,
            DType::Q8_0 => 34,
            DType::Q2K => 84,
            DType::Q3K => 110,
            DType::Q4K => 144,
            DType::Q5K => 176,
            DType::Q6K => 210,
            DType::Q8K => 292,
        }
    }

    /// Bytes taken by `n` elements, or an error when `n` is not a whole number of blocks.
    pub fn row_bytes(self, n: usize) -> Result<usize, KernelError> {
        let block = self.block_size();
        if !n.is_multiple_of(block) {
            return Err(KernelError::RaggedRow {
                dtype: self,
                n,
                block,
            });
        }
        Ok(n / block * self.block_bytes())
    }

    /// Bytes taken by `n` elements with overflow checking (for untrusted shapes); `None` on
    /// overflow or a ragged count.
    pub fn checked_bytes(self, n: u64) -> Option<u64> {
        let block = self.block_size() as u64;
        if !n.is_multiple_of(block) {
            return None;
        }
        (n / block).checked_mul(self.block_bytes() as u64)
    }

    /// True for block-quantized types (not plain floats).
    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Dequantize one row of `dst.len()` elements from `src` into `dst`.
    pub fn dequantize_row(self, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
        let expected = self.row_bytes(dst.len())?;
        if src.len() != expected {
            return Err(KernelError::ByteLength {
                dtype: self,
                n: dst.len(),
                expected,
                got: src.len(),
            });
        }
        crate::quants::dequantize(self, src, dst)
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
