//! Typed views over weight bytes and the weight store keyed by canonical names.

use crate::error::{ModelError, Result};
use memmap2::Mmap;
use mixture_kernels::{DType, WeightRef};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Where a tensor's bytes live: inside a memory-mapped file, or owned (converted at load,
/// e.g. FP8 with block scales, or a transposed MLA matrix).
#[derive(Clone)]
pub enum Storage {
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
    Owned(Arc<Vec<u8>>),
}

impl Storage {
    pub fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped { map, offset, len } => &map[*offset..*offset + *len],
            Storage::Owned(v) => v,
        }
    }

    /// A sub-range of these bytes, sharing the same backing.
    pub fn slice(&self, start: usize, len: usize) -> Storage {
        match self {
            Storage::Mapped { map, offset, .. } => Storage::Mapped {
                map: map.clone(),
                offset: offset + start,
                len,
            },
            Storage::Owned(v) => Storage::Owned(Arc::new(v[start..start + len].to_vec())),
        }
    }
}

/// A stored tensor. `shape` is in row-major order, outermost first (PyTorch order; the
/// reverse of GGUF's `ne`). The innermost dimension is contiguous and holds whole blocks.
#[derive(Clone)]
pub struct Tensor {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub data: Storage,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({} {:?})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// Build an owned f32 tensor.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Tensor {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Tensor {
            dtype: DType::F32,
            shape,
            data: Storage::Owned(Arc::new(bytes)),
        }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn bytes(&self) -> &[u8] {
        self.data.bytes()
    }

    /// View as a 2-D weight `[rows, cols]` where cols is the innermost dimension.
    pub fn as_weight(&self) -> Result<WeightRef<'_>> {
        let cols = *self.shape.last().unwrap_or(&1);
        let rows = self.numel().checked_div(cols).unwrap_or(0);
        Ok(WeightRef::new(self.dtype, rows, cols, self.bytes())?)
    }

    /// Dequantize the whole tensor to f32 (row-major).
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        Ok(self.as_weight()?.to_f32()?)
    }

    /// The `i`-th slice along the outermost dimension (e.g. one expert of a 3-D tensor),
    /// sharing the same bytes.
    pub fn index0(&self, i: usize) -> Result<Tensor> {
        let (&n, rest) = self
            .shape
            .split_first()
            .ok_or_else(|| ModelError::Invalid("index0 on a scalar tensor".into()))?;
        if i >= n {
            return Err(ModelError::Invalid(format!(
                "index {i} out of range for outer dimension {n}"
            )));
        }
        let inner: usize = rest.iter().product();
        let bytes = self.dtype.row_bytes(inner)?;
        Ok(Tensor {
            dtype: self.dtype,
            shape: rest.to_vec(),
            data: self.data.slice(i * bytes, bytes),
        })
    }

    /// Check the shape, naming the tensor on mismatch.
    pub fn expect_shape(&self, name: &str, expected: &[usize]) -> Result<()> {
        if self.shape != expected {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected: expected.to_vec(),
                found: self.shape.clone(),
            });
        }
        Ok(())
    }
}

/// All weights of a model under canonical names (see [`crate::names`]).
#[derive(Default, Clone)]
pub struct WeightStore {
    pub tensors: BTreeMap<String, Tensor>,
}

impl WeightStore {
    pub fn insert(&mut self, name: impl Into<String>, t: Tensor) {
        self.tensors.insert(name.into(), t);
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| ModelError::MissingTensor(name.to_string()))
    }

    pub fn get_opt(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Get a tensor and check its shape.
    pub fn get_shaped(&self, name: &str, shape: &[usize]) -> Result<&Tensor> {
        let t = self.get(name)?;
        t.expect_shape(name, shape)?;
        Ok(t)
    }

    /// Get a 1-D (or any) tensor as f32 values, checking the element count.
    pub fn get_f32(&self, name: &str, len: usize) -> Result<Vec<f32>> {
        let t = self.get(name)?;
        if t.numel() != len {
            return Err(ModelError::Shape {
                name: name.to_string(),
                expected: vec![len],
                found: t.shape.clone(),
            });
        }
        t.to_f32()
    }
}
